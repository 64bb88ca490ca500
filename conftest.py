"""Loaded before Django is set up: test-only environment switches."""

import os

os.environ.setdefault("MH_TESTING", "1")
# Playwright's sync API runs an event loop in the test thread; Django's ORM refuses to run inside
# one unless told it is safe (it is: that loop only drives the browser).
os.environ.setdefault("DJANGO_ALLOW_ASYNC_UNSAFE", "true")
