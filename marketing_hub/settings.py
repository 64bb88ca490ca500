"""Settings, read from the environment once and checked loudly.

Environment: DATABASE_URL, CELERY_BROKER_URL, SECRET_KEY, DEBUG, ALLOWED_HOSTS, PORT, MH_PRODUCTION.
Without DATABASE_URL an embedded PostgreSQL (``marketing_hub.embedded_db``) is started; without
CELERY_BROKER_URL the broker is that same database through kombu's SQLAlchemy transport.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

from django.core.exceptions import ImproperlyConfigured

BASE_DIR = Path(__file__).resolve().parent.parent


def env_bool(name: str, default: bool) -> bool:
    raw = os.environ.get(name)
    if raw is None or raw == "":
        return default
    value = raw.strip().lower()
    if value in {"1", "true", "yes", "on"}:
        return True
    if value in {"0", "false", "no", "off"}:
        return False
    raise ImproperlyConfigured(f"{name} must be true/false (1/0, yes/no, on/off), got {raw!r}")


def env_int(name: str, default: int) -> int:
    raw = os.environ.get(name)
    if raw is None or raw == "":
        return default
    try:
        return int(raw)
    except ValueError:
        raise ImproperlyConfigured(f"{name} must be a whole number, got {raw!r}") from None


def env_list(name: str, default: list[str]) -> list[str]:
    raw = os.environ.get(name)
    if raw is None or raw.strip() == "":
        return default
    return [item.strip() for item in raw.split(",") if item.strip()]


PRODUCTION = env_bool("MH_PRODUCTION", False)
# Off unless asked for (DEBUG=1, development): `make run` serves like production, with the real
# 404/500 pages and without Django's debug pages listing every URL and setting.
DEBUG = env_bool("DEBUG", False)
# pytest-django loads settings before any conftest runs, so the test run is recognised here.
TESTING = env_bool("MH_TESTING", "pytest" in sys.modules)

SECRET_KEY = os.environ.get("SECRET_KEY", "")
if not SECRET_KEY:
    if PRODUCTION:
        raise ImproperlyConfigured("SECRET_KEY must be set in production (MH_PRODUCTION=1)")
    SECRET_KEY = "dev-only-insecure-key-0f3c9b7e2a5d4c1b8e6f0a9d3c7b5e1f-not-for-production"
elif PRODUCTION and len(SECRET_KEY) < 50:
    raise ImproperlyConfigured("SECRET_KEY must be at least 50 characters long in production")

ALLOWED_HOSTS = env_list("ALLOWED_HOSTS", [] if PRODUCTION else ["127.0.0.1", "localhost", "testserver"])
if PRODUCTION and not ALLOWED_HOSTS:
    raise ImproperlyConfigured("ALLOWED_HOSTS must be set in production (comma-separated host names)")
PORT = env_int("PORT", 8000)
if not 1 <= PORT <= 65535:
    raise ImproperlyConfigured(f"PORT must be between 1 and 65535, got {PORT}")

INSTALLED_APPS = [
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "django.contrib.humanize",
    "django.contrib.postgres",
    "django_htmx",
    "template_partials",
    "django_filters",
    "axes",
    "csp",
    "pgtrigger",
    "pghistory",
    "ninja",
    "corsheaders",
    # The areas, lowest layer first (``contacts_changed`` receivers run in this order).
    "core",
    "contacts",
    "leads",
    "loyalty",
    "segments",
    "automation",
    "webhooks",
    "tracking",
    "demo",
    "marketing_hub",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    # PostgreSQL unavailable → 503 + Retry-After on every path (outside all that reads the database).
    "marketing_hub.middleware.DatabaseUnavailableMiddleware",
    # CORS only for the tracking intake at /v1/ (browser sources' origins, see tracking/cors.py).
    "corsheaders.middleware.CorsMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    # The browser's Accept-Language picks the language until the user saves one (UserLanguageMiddleware).
    "django.middleware.locale.LocaleMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    # The signed-in user's saved language wins over the browser's; /api/ and /v1/ are always English.
    "marketing_hub.middleware.UserLanguageMiddleware",
    "marketing_hub.middleware.LoginRequiredMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "django_htmx.middleware.HtmxMiddleware",
    "csp.middleware.CSPMiddleware",
    "pghistory.middleware.HistoryMiddleware",
    "axes.middleware.AxesMiddleware",
]

ROOT_URLCONF = "marketing_hub.urls"
CORS_URLS_REGEX = r"^/v1/"
WSGI_APPLICATION = "marketing_hub.wsgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
                "marketing_hub.context_processors.navigation",
            ],
            "builtins": ["template_partials.templatetags.partials"],
        },
    }
]

# --- Database -------------------------------------------------------------------------------
DATABASE_URL = os.environ.get("DATABASE_URL", "").strip()
if DATABASE_URL:
    import dj_database_url

    try:
        _db = dj_database_url.parse(DATABASE_URL, conn_max_age=60)
    except Exception as exc:  # dj_database_url raises several kinds
        raise ImproperlyConfigured(f"DATABASE_URL is not a valid database URL: {exc}") from exc
    if _db["ENGINE"] != "django.db.backends.postgresql":
        raise ImproperlyConfigured("DATABASE_URL must point to PostgreSQL (postgres:// or postgresql://)")
    DATABASES = {"default": _db}
    EMBEDDED_DATABASE = False
else:
    from marketing_hub import embedded_db

    DATABASES = {
        "default": {
            "ENGINE": "django.db.backends.postgresql",
            "NAME": embedded_db.DATABASE_NAME,
            "USER": "postgres",
            "PASSWORD": "",
            "HOST": embedded_db.socket_dir(),
            "CONN_MAX_AGE": 60,
        }
    }
    EMBEDDED_DATABASE = True
DATABASES["default"].setdefault("OPTIONS", {})
# An acknowledged write (an event answered 202, a contact upsert, an import, an edit) must survive a
# crash of the server, whatever its own default: every session commits synchronously; only work
# recomputable from stored state opts out per transaction (SET LOCAL synchronous_commit = off).
_db_options = DATABASES["default"]["OPTIONS"]
_db_options["options"] = f"{_db_options.get('options', '')} -c synchronous_commit=on".strip()
# The benchmark (bench/run.py) and its worker/web processes use a separate database on the same
# server: MH_DATABASE_NAME overrides the database name of the embedded server or DATABASE_URL.
if os.environ.get("MH_DATABASE_NAME", "").strip():
    DATABASES["default"]["NAME"] = os.environ["MH_DATABASE_NAME"].strip()
# Several people (and agents) may run the suite at once on one embedded server: each picks a name.
if os.environ.get("MH_TEST_DB_NAME"):
    DATABASES["default"]["TEST"] = {"NAME": os.environ["MH_TEST_DB_NAME"]}
DATABASES["default"]["CONN_HEALTH_CHECKS"] = True
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# --- Celery ---------------------------------------------------------------------------------
CELERY_BROKER_URL = os.environ.get("CELERY_BROKER_URL", "").strip()
if not CELERY_BROKER_URL:
    _dbs = DATABASES["default"]
    if EMBEDDED_DATABASE:
        CELERY_BROKER_URL = f"mhsqla+postgresql+psycopg://postgres@/{_dbs['NAME']}?host={_dbs['HOST']}"
    else:
        CELERY_BROKER_URL = "mhsqla+" + DATABASE_URL.replace("postgres://", "postgresql://", 1).replace(
            "postgresql://", "postgresql+psycopg://", 1
        )
    CELERY_BROKER_IS_DATABASE = True
else:
    _scheme = CELERY_BROKER_URL.split("://", 1)[0]
    if _scheme not in {"redis", "rediss", "amqp", "amqps", "pyamqp"} and not _scheme.startswith(("sqla+", "mhsqla+")):
        raise ImproperlyConfigured(
            f"CELERY_BROKER_URL must be a redis://, amqp:// or sqla+postgresql:// URL, got {CELERY_BROKER_URL!r}"
        )
    CELERY_BROKER_IS_DATABASE = _scheme.startswith(("sqla+", "mhsqla+"))
CELERY_TASK_IGNORE_RESULT = True
CELERY_RESULT_BACKEND = None
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_TASK_TIME_LIMIT = 30 * 60
CELERY_TASK_SOFT_TIME_LIMIT = 29 * 60
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
CELERY_BROKER_TRANSPORT_OPTIONS = {"polling_interval": 0.2} if CELERY_BROKER_IS_DATABASE else {"visibility_timeout": 3600}
CELERY_WORKER_HIJACK_ROOT_LOGGER = False
CELERY_TIMEZONE = "UTC"
# Tests run each real worker on a queue of its own (see tests/conftest.py).
CELERY_TASK_DEFAULT_QUEUE = os.environ.get("MH_CELERY_QUEUE", "celery")

# --- Auth and security ----------------------------------------------------------------------
AUTHENTICATION_BACKENDS = ["axes.backends.AxesStandaloneBackend", "django.contrib.auth.backends.ModelBackend"]
PASSWORD_HASHERS = [
    "django.contrib.auth.hashers.Argon2PasswordHasher",
    "django.contrib.auth.hashers.PBKDF2PasswordHasher",
]
if TESTING:
    PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
]
LOGIN_URL = "login"
LOGIN_REDIRECT_URL = "dashboard"
LOGOUT_REDIRECT_URL = "login"

AXES_FAILURE_LIMIT = 5
AXES_COOLOFF_TIME = 0.25  # hours
# Per IP across usernames too: spraying a few passwords over many usernames locks the address.
AXES_LOCKOUT_PARAMETERS = ["ip_address", ["username", "ip_address"]]
AXES_RESET_ON_SUCCESS = True
AXES_ENABLED = env_bool("AXES_ENABLED", True)

SESSION_COOKIE_HTTPONLY = True
SESSION_COOKIE_SAMESITE = "Lax"
CSRF_COOKIE_SAMESITE = "Lax"
SESSION_COOKIE_SECURE = PRODUCTION
CSRF_COOKIE_SECURE = PRODUCTION
SECURE_SSL_REDIRECT = PRODUCTION and env_bool("SECURE_SSL_REDIRECT", True)
SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https") if PRODUCTION else None
SECURE_HSTS_SECONDS = 31536000 if PRODUCTION else 0
SECURE_HSTS_INCLUDE_SUBDOMAINS = PRODUCTION
SECURE_HSTS_PRELOAD = PRODUCTION
SECURE_CONTENT_TYPE_NOSNIFF = True
SECURE_REFERRER_POLICY = "same-origin"
X_FRAME_OPTIONS = "DENY"
CSRF_TRUSTED_ORIGINS = env_list("CSRF_TRUSTED_ORIGINS", [])

from csp.constants import NONE, SELF  # noqa: E402

CONTENT_SECURITY_POLICY = {
    "DIRECTIVES": {
        "default-src": [SELF],
        "script-src": [SELF],
        # Plotly sets inline styles on the SVG it draws; htmx's indicator styles are in app.css.
        "style-src": [SELF, "'unsafe-inline'"],
        "img-src": [SELF, "data:"],
        "font-src": [SELF, "data:"],
        "connect-src": [SELF],
        "object-src": [NONE],
        "base-uri": [SELF],
        "frame-ancestors": [NONE],
        "form-action": [SELF],
    }
}

# --- Static files ---------------------------------------------------------------------------
STATIC_URL = "/static/"
STATIC_ROOT = BASE_DIR / "staticfiles"
# Plotly comes vendored as a partial bundle (static/vendor/plotly-finance-*.min.js, made from the npm
# package by marketing_hub/plotly_vendoring.py: no outside address left in it), not from the
# Python package's 4.8 MB full build.
STATICFILES_DIRS = [BASE_DIR / "static"]
# Without DEBUG (production and `make run`, which runs collectstatic) static files have content
# hashes in their names, so whitenoise serves them compressed with a year's cache; DEBUG and the
# tests use the source files under their plain names (no stale collected copy).
VERSIONED_STATIC = PRODUCTION or not (DEBUG or TESTING)
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {
        "BACKEND": "marketing_hub.staticfiles.ForgivingManifestStaticFilesStorage"
        if VERSIONED_STATIC
        else "django.contrib.staticfiles.storage.StaticFilesStorage"
    },
}
# Versioned: serve what collectstatic gathered; until it has run, the source folders (pages keep
# working, see marketing_hub/staticfiles.py).
WHITENOISE_USE_FINDERS = not VERSIONED_STATIC or not (STATIC_ROOT / "staticfiles.json").exists()
MEDIA_ROOT = BASE_DIR / "media"
DATA_UPLOAD_MAX_MEMORY_SIZE = 10 * 1024 * 1024
FILE_UPLOAD_MAX_MEMORY_SIZE = 10 * 1024 * 1024

LANGUAGE_CODE = "en"
# English is the source language (msgids); Polish comes from each app's locale/pl catalogue and, for
# the shared templates/ at the root, from LOCALE_PATHS. Language names are their own (autonyms).
LANGUAGES = [("en", "English"), ("pl", "Polski")]
LOCALE_PATHS = [BASE_DIR / "locale"]
# Dates and numbers follow the language (templates use DATE_FORMAT / SHORT_DATETIME_FORMAT); English
# keeps the day-month-year, 24-hour style of the app (marketing_hub/formats/en/formats.py).
FORMAT_MODULE_PATH = ["marketing_hub.formats"]
TIME_ZONE = "Europe/Warsaw"
USE_I18N = True
USE_TZ = True

MESSAGE_STORAGE = "django.contrib.messages.storage.session.SessionStorage"

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"console": {"class": "logging.StreamHandler"}},
    "root": {"handlers": ["console"], "level": "WARNING"},
    "loggers": {"marketing_hub": {"level": "INFO"}, "automation": {"level": "INFO"}},
}

NINJA_PAGINATION_PER_PAGE = 50

# Event ingestion: requests per minute per API key (0 switches the limit off; per process unless
# the cache is shared) and the largest accepted body.
INGEST_RATE_LIMIT_PER_MINUTE = env_int("INGEST_RATE_LIMIT_PER_MINUTE", 3000)
INGEST_MAX_BODY_BYTES = env_int("INGEST_MAX_BODY_BYTES", 5 * 1024 * 1024)
# The body limit of every other API operation (413 above it).
API_MAX_BODY_BYTES = 2 * 1024 * 1024

# The rules engine runs one batch per partition of the contacts at a time (contact id modulo this
# number; see automation/engine.py). Every worker must use the same value; a worker needs at
# least this many processes (``--concurrency``) to use them all.
MH_ENGINE_PARTITIONS = env_int("MH_ENGINE_PARTITIONS", 2)
if not 1 <= MH_ENGINE_PARTITIONS <= 64:
    raise ImproperlyConfigured(f"MH_ENGINE_PARTITIONS must be between 1 and 64, got {MH_ENGINE_PARTITIONS}")

# The login page lists the demo logins in DEBUG, or with this on (`make run` outside production, a
# public demo).
SHOW_DEMO_LOGINS = env_bool("MH_SHOW_DEMO_LOGINS", False)

# Segments. A live count (builder, API preview) that takes longer than this is cancelled; the page
# says so and the worker counts the saved segment instead.
SEGMENT_PREVIEW_TIMEOUT_MS = 8000
# The worker's full refresh of a saved segment: bounded too, more generously.
SEGMENT_REFRESH_TIMEOUT_MS = 10 * 60 * 1000
# With more saved segments than this, the rules engine's per-batch membership refresh skips the
# time-relative ones (the schedule refreshes those fully anyway) to keep ingestion fast.
SEGMENT_INCREMENTAL_MAX_SEGMENTS = 50
# Full refresh cadence in minutes: time-relative segments drift with the clock; the others only
# miss changes that bypass the rules engine (manual tag edits, imports, consent changes).
SEGMENT_REFRESH_MINUTES_TIME_RELATIVE = 15
SEGMENT_REFRESH_MINUTES_OTHER = 60

# /healthz/deep answers 503 (and admins see a warning on the dashboard) when the worker's heartbeat
# or the oldest pending event has not moved for this many seconds (see core.health).
MH_STALL_SECONDS = env_int("MH_STALL_SECONDS", 120)
if MH_STALL_SECONDS < 30:
    raise ImproperlyConfigured(f"MH_STALL_SECONDS must be at least 30 (the heartbeat runs every 15 s), got {MH_STALL_SECONDS}")

# The Tags page counts live while the planner estimates at most this many contact-tags (a count
# well under a second); above it, it reads a snapshot the worker recounts every 5 minutes.
MH_TAG_STATS_LIVE_MAX_ROWS = env_int("MH_TAG_STATS_LIVE_MAX_ROWS", 300_000)

# Tracking: messages of visitors who never identify are deleted after this many days without one.
MH_ANONYMOUS_RETENTION_DAYS = env_int("MH_ANONYMOUS_RETENTION_DAYS", 90)

# Files jobs write for download (the contact CSV export): the worker writes them and the web
# process serves them, so with workers on other machines this is a directory they share. Beside the
# embedded database's .pgdata/ by default; kept this many days, then removed (core.jobs.files).
MH_EXPORT_DIR = Path(os.environ.get("MH_EXPORT_DIR", "").strip() or BASE_DIR / ".exports")
MH_EXPORT_RETENTION_DAYS = env_int("MH_EXPORT_RETENTION_DAYS", 7)
if MH_EXPORT_RETENTION_DAYS < 1:
    raise ImproperlyConfigured(f"MH_EXPORT_RETENTION_DAYS must be at least 1, got {MH_EXPORT_RETENTION_DAYS}")

# Outbound webhooks: CIDRs a webhook URL may resolve to although they are loopback, private or
# link-local (refused otherwise: the server must not be turned against its own network).
MH_WEBHOOK_ALLOWED_NETS = env_list("MH_WEBHOOK_ALLOWED_NETS", [])
# Seconds before each retry of a failed delivery (the contract's schedule); tests shorten it.
MH_WEBHOOK_RETRY_DELAYS = env_list("MH_WEBHOOK_RETRY_DELAYS", ["5", "300", "1800", "7200", "18000", "36000", "36000"])
# How long a claimed delivery is reserved for its attempt (a killed worker's delivery is sent
# again, with the same webhook-id, once this has passed); well above the 10 s request timeout.
MH_WEBHOOK_LEASE_SECONDS = env_int("MH_WEBHOOK_LEASE_SECONDS", 60)
try:
    import ipaddress as _ipaddress

    [_ipaddress.ip_network(net, strict=False) for net in MH_WEBHOOK_ALLOWED_NETS]
    MH_WEBHOOK_RETRY_DELAYS = [max(0.0, float(delay)) for delay in MH_WEBHOOK_RETRY_DELAYS]
except ValueError as _exc:
    raise ImproperlyConfigured(f"MH_WEBHOOK_ALLOWED_NETS (CIDRs) or MH_WEBHOOK_RETRY_DELAYS (seconds): {_exc}") from None

# --- Email (hot-lead alerts) ------------------------------------------------------------------
# EMAIL_URL (smtp://user:password@host:587 with STARTTLS via smtp+tls://, implicit TLS via
# smtps://, or console://) or the usual EMAIL_HOST / EMAIL_PORT / EMAIL_HOST_USER /
# EMAIL_HOST_PASSWORD / EMAIL_USE_TLS / EMAIL_USE_SSL; with neither, mail is printed by the
# console backend (the worker's log), so nothing leaves a development machine by accident.
_SMTP_BACKEND = "django.core.mail.backends.smtp.EmailBackend"
EMAIL_URL = os.environ.get("EMAIL_URL", "").strip()
EMAIL_HOST = os.environ.get("EMAIL_HOST", "").strip() or "localhost"
EMAIL_PORT = env_int("EMAIL_PORT", 25)
EMAIL_HOST_USER = os.environ.get("EMAIL_HOST_USER", "")
EMAIL_HOST_PASSWORD = os.environ.get("EMAIL_HOST_PASSWORD", "")
EMAIL_USE_TLS = env_bool("EMAIL_USE_TLS", False)
EMAIL_USE_SSL = env_bool("EMAIL_USE_SSL", False)
EMAIL_TIMEOUT = env_int("EMAIL_TIMEOUT", 10)
if EMAIL_URL:
    from urllib.parse import unquote, urlsplit

    _email = urlsplit(EMAIL_URL)
    if _email.scheme == "console":
        EMAIL_BACKEND = "django.core.mail.backends.console.EmailBackend"
    elif _email.scheme in {"smtp", "smtp+tls", "smtps", "smtp+ssl"}:
        if not _email.hostname:
            raise ImproperlyConfigured(f"EMAIL_URL needs a host, e.g. smtp://user:password@mail.example.com:587, got {EMAIL_URL!r}")
        EMAIL_BACKEND = _SMTP_BACKEND
        EMAIL_HOST = _email.hostname
        EMAIL_USE_TLS = _email.scheme == "smtp+tls"
        EMAIL_USE_SSL = _email.scheme in {"smtps", "smtp+ssl"}
        try:
            EMAIL_PORT = _email.port or (465 if EMAIL_USE_SSL else 587 if EMAIL_USE_TLS else 25)
        except ValueError:
            raise ImproperlyConfigured(f"EMAIL_URL has an invalid port: {EMAIL_URL!r}") from None
        EMAIL_HOST_USER = unquote(_email.username or "")
        EMAIL_HOST_PASSWORD = unquote(_email.password or "")
    else:
        raise ImproperlyConfigured(
            f"EMAIL_URL must start with smtp://, smtp+tls://, smtps:// or console://, got {_email.scheme or EMAIL_URL!r}://"
        )
else:
    EMAIL_BACKEND = os.environ.get("EMAIL_BACKEND", "").strip() or (
        _SMTP_BACKEND if os.environ.get("EMAIL_HOST", "").strip() else "django.core.mail.backends.console.EmailBackend"
    )
if EMAIL_USE_TLS and EMAIL_USE_SSL:
    raise ImproperlyConfigured("EMAIL_USE_TLS and EMAIL_USE_SSL are exclusive: STARTTLS on 587 or implicit TLS on 465")
DEFAULT_FROM_EMAIL = os.environ.get("DEFAULT_FROM_EMAIL", "").strip() or "Marketing Hub <alerts@localhost>"
# Links in emails (a lead's card, the unsubscribe link) need the address people reach the app at.
MH_SITE_URL = (os.environ.get("MH_SITE_URL", "").strip() or f"http://127.0.0.1:{PORT}").rstrip("/")
if not MH_SITE_URL.startswith(("http://", "https://")):
    raise ImproperlyConfigured(f"MH_SITE_URL must be an http(s):// address, got {MH_SITE_URL!r}")
