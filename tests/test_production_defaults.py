"""`make run` serves like production unless DEBUG=1: no debug pages, the real 404/500 pages in the
app's style, static files still served (whitenoise) and, once collected, versioned."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from django.http import HttpRequest
from django.test import Client
from django.urls import path

from marketing_hub import run

ROOT = Path(__file__).resolve().parent.parent


def _broken_view(request: HttpRequest):
    raise RuntimeError("a bug in a view")


urlpatterns = [path("broken/", _broken_view)]


def _settings_values(names: str, **env: str) -> list[str]:
    """Settings as a fresh process reads them from ``env`` (DEBUG unset unless given)."""
    full_env = {k: v for k, v in os.environ.items() if k not in {"DEBUG", "MH_PRODUCTION", "MH_SHOW_DEMO_LOGINS"}}
    full_env.update({"DJANGO_SETTINGS_MODULE": "marketing_hub.settings", "MH_TESTING": "0", **env})
    code = f"import django; django.setup(); from django.conf import settings as s; print(repr({names}))"
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=full_env, capture_output=True, text=True,
                            timeout=120)
    assert result.returncode == 0, result.stderr
    return result.stdout.strip().splitlines()[-1:]


def test_debug_is_off_unless_asked_for():
    # when settings load without DEBUG, then DEBUG is off and static files are versioned
    assert _settings_values("(s.DEBUG, s.STORAGES['staticfiles']['BACKEND'])") == [
        "(False, 'marketing_hub.staticfiles.ForgivingManifestStaticFilesStorage')"]
    # when a developer asks for it, then DEBUG is on with the source files under their plain names
    assert _settings_values("(s.DEBUG, s.STORAGES['staticfiles']['BACKEND'])", DEBUG="1") == [
        "(True, 'django.contrib.staticfiles.storage.StaticFilesStorage')"]


def test_make_run_serves_with_gunicorn_unless_debug(monkeypatch):
    # given no DEBUG in the environment
    monkeypatch.delenv("DEBUG", raising=False)
    # then the web server is gunicorn
    assert run.web_command("8000")[1:3] == ["-m", "gunicorn"]
    # given DEBUG=1, then Django's runserver
    monkeypatch.setenv("DEBUG", "1")
    assert "runserver" in run.web_command("8000")


@pytest.mark.django_db
def test_an_unknown_address_gets_the_apps_404_page(admin_client):
    # when a signed-in user opens an address that does not exist
    response = admin_client.get("/no-such-page/")
    # then the app's own page answers, styled, without Django's list of URL patterns
    body = response.content.decode()
    assert response.status_code == 404
    assert "There is nothing at this address." in body
    assert 'href="/static/css/app.css"' in body
    assert "URLconf" not in body and "urlpatterns" not in body


@pytest.mark.django_db
@pytest.mark.urls(__name__)
def test_an_error_in_a_view_gets_the_apps_500_page():
    # given a view that raises
    client = Client(raise_request_exception=False)
    # when it is opened
    response = client.get("/broken/")
    # then the app's error page answers, styled, with no traceback
    body = response.content.decode()
    assert response.status_code == 500
    assert "Something went wrong" in body
    assert 'href="/static/css/app.css"' in body
    assert "RuntimeError" not in body and "a bug in a view" not in body


@pytest.mark.django_db
def test_static_files_are_served_without_debug(client, settings):
    # given DEBUG off (as in every test) / when the browser asks for the scripts the pages use
    assert settings.DEBUG is False
    for url in ("/static/js/charts.js", "/static/js/htmx.min.js", "/static/vendor/plotly-finance-4.1.0.min.js"):
        response = client.get(url)
        # then whitenoise serves them
        assert response.status_code == 200, url
        assert b"".join(response.streaming_content)
