"""Who may open the project-level pages. Each app keeps its own file beside this one."""

from core.roles import ADMIN, MARKETER, SALES

ACCESS = {
    "dashboard": {"roles": {MARKETER, SALES, ADMIN}},
    "settings": {"roles": {ADMIN}},
    "api_keys": {"roles": {ADMIN}},
    "api_key_revoke": {"roles": {ADMIN}, "method": "post", "kwargs": lambda: {"key_id": 999999}},
    "users": {"roles": {ADMIN}},
}

# Reachable without signing in, by design.
PUBLIC = {"login", "logout", "healthz"}
