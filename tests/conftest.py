"""Shared fixtures: personas, logged-in clients, API clients, a real Celery worker, Chromium."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest
from django.test import Client

from core.roles import ADMIN, MARKETER, SALES
from tests.factories import UserFactory

# Playwright's sync API runs an event loop in the test thread; Django's ORM refuses to run
# inside one unless told it is safe (it is: the loop only drives the browser).
os.environ.setdefault("DJANGO_ALLOW_ASYNC_UNSAFE", "true")

PROJECT_ROOT = Path(__file__).resolve().parent.parent
CHROMIUM = os.environ.get("CHROMIUM_PATH", "/usr/bin/chromium")
PASSWORD = "test-password-123"


# --- personas -----------------------------------------------------------------------------------
@pytest.fixture(autouse=True)
def default_language():
    """Every test starts and ends in the default language (English), whatever a test activated."""
    from django.utils import translation

    translation.deactivate()
    yield
    translation.deactivate()


@pytest.fixture(autouse=True)
def export_dir(tmp_path_factory, settings, monkeypatch) -> Path:
    """Files jobs write for download (CSV exports) go to a directory of the test's own: this
    process's setting, and the environment of a worker the test starts."""
    directory = tmp_path_factory.mktemp("exports")
    settings.MH_EXPORT_DIR = directory
    monkeypatch.setenv("MH_EXPORT_DIR", str(directory))
    return directory


@pytest.fixture
def marketer(db):
    return UserFactory(username="marketer", role=MARKETER)


@pytest.fixture
def sales(db):
    return UserFactory(username="sales", role=SALES)


@pytest.fixture
def admin(db):
    return UserFactory(username="admin", role=ADMIN)


@pytest.fixture
def outsider(db):
    return UserFactory(username="outsider")


def _client_for(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


@pytest.fixture
def marketer_client(marketer):
    return _client_for(marketer)


@pytest.fixture
def sales_client(sales):
    return _client_for(sales)


@pytest.fixture
def admin_client(admin):
    return _client_for(admin)


@pytest.fixture
def outsider_client(outsider):
    return _client_for(outsider)


@pytest.fixture
def persona_client(request, db):
    """Parametrise with the role name ("Marketer", "Sales", "Admin", "outsider", "anonymous")."""
    role = request.param
    if role == "anonymous":
        return Client()
    user = UserFactory(username=f"p_{role.lower()}", role=None if role == "outsider" else role)
    return _client_for(user)


# --- API ----------------------------------------------------------------------------------------
class ApiClient:
    """A test client that sends the bearer key and JSON bodies."""

    def __init__(self, raw_key: str | None) -> None:
        self.client = Client()
        self.headers = {"Authorization": f"Bearer {raw_key}"} if raw_key else {}

    def _call(self, method: str, path: str, json=None, **extra):
        import json as jsonlib

        kwargs = {"headers": {**self.headers, **extra.pop("headers", {})}}
        if json is not None:
            kwargs["data"] = jsonlib.dumps(json)
            kwargs["content_type"] = "application/json"
        return getattr(self.client, method)(path, **kwargs, **extra)

    def get(self, path, **extra):
        return self._call("get", path, **extra)

    def post(self, path, json=None, **extra):
        return self._call("post", path, json=json, **extra)

    def put(self, path, json=None, **extra):
        return self._call("put", path, json=json, **extra)

    def patch(self, path, json=None, **extra):
        return self._call("patch", path, json=json, **extra)

    def delete(self, path, **extra):
        return self._call("delete", path, **extra)


@pytest.fixture
def admin_api(db) -> ApiClient:
    from core.models import ApiKey

    _, raw_key = ApiKey.issue(name="test admin", scope=ApiKey.SCOPE_ADMIN)
    return ApiClient(raw_key)


@pytest.fixture
def ingest_api(db) -> ApiClient:
    from core.models import ApiKey

    _, raw_key = ApiKey.issue(name="test ingest", scope=ApiKey.SCOPE_INGEST)
    return ApiClient(raw_key)


# --- a real Celery worker -----------------------------------------------------------------------
class WorkerProcess:
    """A `celery worker` subprocess on the test database, on a queue of its own."""

    def __init__(self, database_url: str, queue: str) -> None:
        self.database_url = database_url
        self.queue = queue
        self.process: subprocess.Popen | None = None
        self.log_path = PROJECT_ROOT / ".run" / f"test-worker-{queue}.log"

    def environment(self) -> dict[str, str]:
        from django.conf import settings

        env = {**os.environ, "DATABASE_URL": self.database_url, "CELERY_BROKER_URL": settings.CELERY_BROKER_URL}
        env["MH_CELERY_QUEUE"] = self.queue
        env.pop("DJANGO_ALLOW_ASYNC_UNSAFE", None)
        return env

    def start(self) -> None:
        self.log_path.parent.mkdir(exist_ok=True)
        log = open(self.log_path, "ab")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "celery", "-A", "marketing_hub", "worker", "--pool=solo", "--loglevel=INFO",
             "-Q", self.queue, "-n", f"{self.queue}@%h", "--without-gossip", "--without-mingle", "--without-heartbeat"],
            cwd=PROJECT_ROOT, env=self.environment(), stdout=log, stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"celery worker exited early; see {self.log_path}")
            if b"ready." in self.log_path.read_bytes():
                return
            time.sleep(0.2)
        # (the fixture's teardown never runs for a worker that failed to start: stop it here, or it
        # keeps polling its broker after the test run)
        self.kill()
        raise RuntimeError(f"celery worker did not become ready; see {self.log_path}")

    def kill(self) -> None:
        """SIGKILL, as a crashed machine would."""
        if self.process and self.process.poll() is None:
            self.process.kill()
            self.process.wait(10)

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(15)
            except subprocess.TimeoutExpired:
                self.process.kill()


def _test_database_url() -> str:
    from urllib.parse import quote

    from django.db import connection

    db = connection.settings_dict
    host = db.get("HOST") or "localhost"
    if host.startswith("/"):
        return f"postgresql://{db.get('USER') or 'postgres'}@{quote(host, safe='')}/{db['NAME']}"
    password = f":{quote(db['PASSWORD'])}" if db.get("PASSWORD") else ""
    port = f":{db['PORT']}" if db.get("PORT") else ""
    return f"postgresql://{db.get('USER') or 'postgres'}{password}@{host}{port}/{db['NAME']}"


@pytest.fixture
def celery_worker_process(transactional_db):
    """Start a real worker on the test database; tasks this test enqueues go to its own queue.

    Function-scoped because transactional tests flush the database between tests. Use with
    ``@pytest.mark.integration``.
    """
    from marketing_hub.celery import app

    queue = f"test-{uuid.uuid4().hex[:10]}"
    previous_queue = app.conf.task_default_queue
    app.conf.task_default_queue = queue
    worker = WorkerProcess(_test_database_url(), queue)
    worker.start()
    try:
        yield worker
    finally:
        worker.stop()
        app.conf.task_default_queue = previous_queue


def wait_for(predicate, timeout: float = 30.0, interval: float = 0.2, message: str = "condition"):
    """Poll ``predicate`` until it returns a truthy value; fail the test after ``timeout``."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    pytest.fail(f"timed out after {timeout}s waiting for {message}")


# --- browser ------------------------------------------------------------------------------------
SHOTS = os.environ.get("MH_SHOTS")


def shot(page, name: str, *, widths: tuple[int, ...] = ()) -> None:
    """Full-page screenshots for people reviewing the UI, in ``MH_SHOTS`` (e.g. /tmp/shots) when it
    is set, else nothing; with ``widths``, one per viewport width (the page's own width restored)."""
    if not SHOTS:
        return
    Path(SHOTS).mkdir(parents=True, exist_ok=True)
    if not widths:
        page.screenshot(path=f"{SHOTS}/{name}.png", full_page=True)
        return
    size = page.viewport_size
    for width in widths:
        page.set_viewport_size({"width": width, "height": 900})
        page.screenshot(path=f"{SHOTS}/{name}-{width}.png", full_page=True)
    if size:
        page.set_viewport_size(size)


def chromium_available() -> bool:
    return Path(CHROMIUM).exists() or shutil.which("chromium") is not None


def pytest_collection_modifyitems(config, items):
    if chromium_available():
        return
    if os.environ.get("REQUIRE_BROWSER") == "1":
        raise pytest.UsageError(f"REQUIRE_BROWSER=1 but Chromium was not found at {CHROMIUM}")
    skip = pytest.mark.skip(reason=f"Chromium not found at {CHROMIUM} (install Debian's chromium)")
    for item in items:
        if "browser" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(scope="session")
def browser_type_launch_args(browser_type_launch_args):
    return {
        **browser_type_launch_args,
        "executable_path": CHROMIUM,
        "args": ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--no-first-run", "--disable-sync", "--disable-dev-shm-usage"],
    }


@pytest.fixture
def login_page(live_server, page):
    """``login_page(user)`` signs ``user`` in through the real login form; returns the page."""

    def login(user, password: str = PASSWORD):
        page.goto(f"{live_server.url}/login/")
        page.fill("input[name=username]", user.username)
        page.fill("input[name=password]", password)
        page.click("button[type=submit]")
        page.wait_for_url(lambda url: "/login/" not in url)
        return page

    return login
