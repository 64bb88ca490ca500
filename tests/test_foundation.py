"""The skeleton: settings from the environment, API keys and auth, health, OpenAPI."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from django.core.management import call_command

from core.models import ApiKey

ROOT = Path(__file__).resolve().parent.parent


def _run_django(code: str, **env: str) -> subprocess.CompletedProcess:
    full_env = {**os.environ, "DJANGO_SETTINGS_MODULE": "marketing_hub.settings", **env}
    return subprocess.run(
        [sys.executable, "-c", f"import django; django.setup(); {code}"],
        cwd=ROOT, env=full_env, capture_output=True, text=True, timeout=120,
    )


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"DEBUG": "maybe"}, "DEBUG must be true/false"),
        ({"PORT": "eighty"}, "PORT must be a whole number"),
        ({"PORT": "70000"}, "PORT must be between 1 and 65535"),
        ({"DATABASE_URL": "mysql://root@localhost/x"}, "DATABASE_URL must point to PostgreSQL"),
        ({"CELERY_BROKER_URL": "ftp://nowhere"}, "CELERY_BROKER_URL must be"),
        ({"MH_PRODUCTION": "1", "SECRET_KEY": ""}, "SECRET_KEY must be set in production"),
        ({"MH_PRODUCTION": "1", "SECRET_KEY": "short"}, "at least 50 characters"),
    ],
)
def test_bad_environment_fails_loudly(env, message):
    # given a bad value in the environment / when settings load
    result = _run_django("print('loaded')", **env)
    # then the process stops with a message naming the variable
    assert result.returncode != 0
    assert message in result.stderr


def test_production_settings_pass_check_deploy():
    # given production settings
    result = subprocess.run(
        [sys.executable, "manage.py", "check", "--deploy", "--fail-level", "WARNING"],
        cwd=ROOT, capture_output=True, text=True, timeout=120,
        env={**{k: v for k, v in os.environ.items() if k != "DJANGO_ALLOW_ASYNC_UNSAFE"}, "MH_PRODUCTION": "1", "SECRET_KEY": "k" * 20 + "-production-secret-for-the-deploy-check-0123456789",
             "ALLOWED_HOSTS": "hub.example.com"},
    )
    # then Django's deployment checklist has nothing to say
    assert result.returncode == 0, result.stdout + result.stderr
    assert "no issues" in result.stdout


def test_create_api_key_prints_the_key_last_and_stores_only_its_hash(db, capsys):
    # when
    call_command("create_api_key", "Shop website", "--scope", "ingest")
    # then the key is alone on the last line, and only its hash is stored
    raw_key = capsys.readouterr().out.strip().splitlines()[-1]
    stored = ApiKey.objects.get(name="Shop website")
    assert stored.scope == "ingest"
    assert stored.key_hash == ApiKey.hash_key(raw_key)
    assert raw_key not in {stored.key_hash, stored.prefix}


def test_api_rejects_missing_unknown_and_revoked_keys(db, client, admin_api):
    assert client.get("/api/v1/whoami").status_code == 401
    assert client.get("/api/v1/whoami", headers={"Authorization": "Bearer nope"}).status_code == 401
    api_key, raw_key = ApiKey.issue(name="old", scope="admin")
    assert client.get("/api/v1/whoami", headers={"Authorization": f"Bearer {raw_key}"}).status_code == 200
    ApiKey.objects.filter(pk=api_key.pk).update(revoked_at="2026-01-01T00:00:00Z")
    response = client.get("/api/v1/whoami", headers={"Authorization": f"Bearer {raw_key}"})
    assert response.status_code == 401
    assert "detail" in response.json()


def test_ingest_key_is_refused_where_admin_scope_is_needed(db, ingest_api, admin_api):
    # when an ingest key calls an admin-only path / then 403; an admin key passes
    assert ingest_api.get("/api/v1/keys").status_code == 403
    response = admin_api.get("/api/v1/keys")
    assert response.status_code == 200
    assert response.json()["count"] == 2  # both fixtures' keys, listed without the secret


def test_openapi_schema_is_served(db, client):
    response = client.get("/api/v1/openapi.json")
    assert response.status_code == 200
    schema = response.json()
    assert schema["openapi"].startswith("3.")
    assert "/api/v1/whoami" in schema["paths"]


def test_healthz_reports_database_and_broker(db, client):
    response = client.get("/healthz")
    body = response.json()
    assert body["database"] == "ok"
    assert body["broker"] == "ok"
    assert response.status_code == 200


def test_login_is_throttled_after_repeated_failures(db, client, marketer):
    # given five wrong passwords
    for _ in range(5):
        client.post("/login/", {"username": "marketer", "password": "wrong"})
    # when the right one follows
    response = client.post("/login/", {"username": "marketer", "password": "test-password-123"})
    # then the account is locked out for now
    assert response.status_code in (403, 429)
    assert "_auth_user_id" not in client.session


def test_security_headers_on_pages(admin_client):
    response = admin_client.get("/")
    assert "script-src 'self'" in response["Content-Security-Policy"]
    assert response["X-Frame-Options"] == "DENY"
