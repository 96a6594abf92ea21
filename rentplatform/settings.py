"""Settings for the host platform and the integrations.

Everything comes from the environment with embedded defaults, so a fresh checkout runs on
SQLite with django-q2's ORM broker and console email, and production switches by setting
DATABASE_URL / REDIS_URL / SECRET_KEY. See docs/configuration.md.

The defaults are the production ones where it matters: DEBUG is off unless the environment
turns it on (``make serve`` and the demo do; pytest-django turns it off for the tests), so a
resident never sees a debug page; the HTTPS settings ``manage.py check --deploy`` asks for are
switched on together by ``HTTPS=1`` (docs/configuration.md, "Production").
"""

from __future__ import annotations

import os
from pathlib import Path

import dj_database_url
import django

from rentplatform.mail_settings import mail_settings

BASE_DIR = Path(__file__).resolve().parent.parent
VAR_DIR = Path(os.environ.get("RENTPLATFORM_VAR_DIR", BASE_DIR / "var"))
VAR_DIR.mkdir(parents=True, exist_ok=True)


def _env_bool(name: str, default: bool) -> bool:
    value = os.environ.get(name)
    if value is None:
        return default
    return value.strip().lower() in {"1", "true", "yes", "on"}


# The development key starts "django-insecure-" so that `manage.py check --deploy` flags a
# production that forgot to set its own (security.W009).
SECRET_KEY = os.environ.get(
    "SECRET_KEY", "django-insecure-dev-only-key-change-me-in-production-0123456789abcdef"
)
DEBUG = _env_bool("DEBUG", False)
ALLOWED_HOSTS = [
    h for h in os.environ.get("ALLOWED_HOSTS", "localhost,127.0.0.1,testserver").split(",") if h
]
CSRF_TRUSTED_ORIGINS = [o for o in os.environ.get("CSRF_TRUSTED_ORIGINS", "").split(",") if o]

# HTTPS. One switch turns on what a site served over HTTPS needs (and check --deploy asks
# for); each setting can still be set on its own. Off by default: the demo and a development
# checkout serve plain HTTP on loopback.
HTTPS = _env_bool("HTTPS", False)
SECURE_SSL_REDIRECT = _env_bool("SECURE_SSL_REDIRECT", HTTPS)
SESSION_COOKIE_SECURE = _env_bool("SESSION_COOKIE_SECURE", HTTPS)
CSRF_COOKIE_SECURE = _env_bool("CSRF_COOKIE_SECURE", HTTPS)
SECURE_HSTS_SECONDS = int(os.environ.get("SECURE_HSTS_SECONDS", 31536000 if HTTPS else 0))
SECURE_HSTS_INCLUDE_SUBDOMAINS = _env_bool("SECURE_HSTS_INCLUDE_SUBDOMAINS", HTTPS)
# The preload directive only matters once the domain is submitted to the browsers' list
# (hstspreload.org); set SECURE_HSTS_PRELOAD=0 to leave it out (check --deploy then warns W021).
SECURE_HSTS_PRELOAD = _env_bool("SECURE_HSTS_PRELOAD", HTTPS)
if _env_bool("BEHIND_PROXY", False):
    # TLS ends at the proxy, which must set X-Forwarded-Proto (and strip the client's own).
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")

INSTALLED_APPS = [
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "rest_framework",
    "drf_spectacular",
    "drf_spectacular_sidecar",  # the docs UI's assets, served locally (no CDN)
    "django_q",
    "import_export",
    "rentplatform",
    "integrations",
    "integrations_amsi",
    # After the integrations: their admin templates (the dashboard on the admin home, the
    # banner on every admin page) override the admin's own (docs/configuration.md).
    "django.contrib.admin",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

ROOT_URLCONF = "rentplatform.urls"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

WSGI_APPLICATION = "rentplatform.wsgi.application"

DATABASES = {
    "default": dj_database_url.parse(
        os.environ.get("DATABASE_URL", f"sqlite:///{VAR_DIR / 'db.sqlite3'}"),
        # Kept for a minute, checked before reuse: django-q2 closes "old" connections around
        # every broker call and task, and with 0 each payment opened two new ones
        # (docs/performance.md, bench/worker.py).
        conn_max_age=int(os.environ.get("DB_CONN_MAX_AGE", "60")),
        conn_health_checks=True,
    )
}
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # The ORM broker, the workers and the web process write the same file: wait for the lock
    # rather than fail (timeout), take the write lock when a transaction starts (IMMEDIATE: a
    # read transaction upgraded to a write would fail at once with "database is locked"
    # whatever the timeout), and use WAL so readers never block the writer.
    # rentplatform/sqlite: Django's backend, trying a statement that meets the write lock
    # outside a transaction (BEGIN IMMEDIATE, an autocommit write) again every 0.1 to 1 ms
    # instead of SQLite's 1, 2, 5, 10 ... ms sleeps (docs/performance.md).
    DATABASES["default"]["ENGINE"] = "rentplatform.sqlite"
    DATABASES["default"].setdefault("OPTIONS", {}).update(
        {
            "timeout": 30,
            "transaction_mode": "IMMEDIATE",
            "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
        }
    )
    DATABASES["default"]["TEST"] = {"NAME": os.environ.get("TEST_SQLITE_NAME") or None}

if DATABASES["default"]["ENGINE"] == "django.db.backends.postgresql" and _env_bool(
    "DB_PREPARED_STATEMENTS", True
):
    # Parameters bound on the server, and a statement run 5 times on a connection prepared
    # there (psycopg's threshold): the posting path's statements are then parsed and planned
    # once per connection instead of on every payment (the claim's read planned in 0.6 ms;
    # docs/performance.md). Behind a transaction-pooling PgBouncer older than 1.21, or one
    # with max_prepared_statements = 0, set DB_PREPARED_STATEMENTS=0 (docs/deployment.md).
    # Server-side binding allows 65,535 parameters a statement: bulk writes go 500 rows at a
    # time (rentplatform/bulk.py) and long id lists are compared in Python (importing.py).
    DATABASES["default"].setdefault("OPTIONS", {}).update(
        {"server_side_binding": True, "prepare_threshold": 5}
    )

DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
]

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATIC_ROOT = VAR_DIR / "static"

LOGIN_URL = "portal:login"
LOGIN_REDIRECT_URL = "portal:home"
LOGOUT_REDIRECT_URL = "portal:login"

# Mail (the Batch Deposit Reports): EMAIL_BACKEND, EMAIL_FILE_PATH and the mail server's EMAIL_*
# variables from the environment, as the EMAIL_* settings on Django 5.2 and 6.0 and as the
# "default" mailer (MAILERS) on Django 6.1 and later (rentplatform/mail_settings.py).
globals().update(mail_settings(os.environ, VAR_DIR, django.VERSION))
DEFAULT_FROM_EMAIL = os.environ.get("DEFAULT_FROM_EMAIL", "integrations@rentplatform.invalid")

# The API (docs/api.md). Basic comes first: DRF answers a request without credentials with the
# first class's WWW-Authenticate challenge, so 401 (session authentication alone gives 403).
# Errors take one shape ({"code", "detail", "fields"?}); every list is paginated.
REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "rest_framework.authentication.BasicAuthentication",
        "rest_framework.authentication.SessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    "COERCE_DECIMAL_TO_STRING": True,
    "EXCEPTION_HANDLER": "rentplatform.api.errors.exception_handler",
    "DEFAULT_PAGINATION_CLASS": "rest_framework.pagination.PageNumberPagination",
    "PAGE_SIZE": 50,
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
}
SPECTACULAR_SETTINGS = {
    "TITLE": "Rent platform API",
    "DESCRIPTION": (
        "Residents' leases and payments (pay, void, with Idempotency-Key) and the accounting "
        "integrations (postings, sync runs, sync now, lease links). Errors: "
        '{"code", "detail", "fields"?}. See docs/api.md.'
    ),
    "VERSION": "1.0.0",
    "SERVE_INCLUDE_SCHEMA": False,
    "SCHEMA_PATH_PREFIX": "/api/",
    "COMPONENT_SPLIT_REQUEST": True,
    # Swagger UI from drf-spectacular-sidecar's static files: the docs work offline.
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
}

# django-q2. Timings nest so a posting can never run twice at once (docs/configuration.md):
#   one attempt = at most a check and a write (2 x 20 s SOAP timeout) + an inline retry wait
#   (5 s) = 45 s  <  task timeout (90 s)  <  claim (105 s)  <  broker retry (120 s);
#   bounded attempts, after which the outbox marks "needs attention".
REDIS_URL = os.environ.get("REDIS_URL", "")
Q_CLUSTER = {
    "name": os.environ.get("Q_CLUSTER_NAME", "rentplatform"),
    "workers": int(os.environ.get("Q_WORKERS", "2")),
    # Overridable for tests and benchmarks that start short-lived clusters; keep retry > timeout
    # and both above the SOAP timeout and below/above the claim as docs/configuration.md says.
    "timeout": int(os.environ.get("Q_TIMEOUT", "90")),
    "retry": int(os.environ.get("Q_RETRY", "120")),
    "max_attempts": 3,
    "ack_failures": True,
    # Successful tasks are not stored: the outbox's postings and attempts are the record, and
    # with a positive limit django-q2's monitor reads every stored success on each task to
    # prune one (docs/performance.md). Failures are still stored.
    "save_limit": -1,
    "queue_limit": 50,
    "catch_up": False,
    "poll": 0.2,
    "label": "Task queue",
}
if REDIS_URL:
    Q_CLUSTER["redis"] = REDIS_URL
else:
    Q_CLUSTER["orm"] = "default"
if _env_bool("Q_SYNC", False):
    Q_CLUSTER["sync"] = True

# The integrations' own settings, read at call time through integrations.conf.
INTEGRATIONS = {
    # Fernet key(s) for credentials at rest; the first encrypts, all decrypt (rotation).
    # Default: derived from SECRET_KEY, so a dev checkout works with nothing set.
    "CREDENTIALS_KEYS": [
        k for k in os.environ.get("INTEGRATIONS_CREDENTIALS_KEYS", "").split(",") if k
    ],
    "MAX_ATTEMPTS": 8,
    "RETRY_BACKOFF_SECONDS": [5, 15, 60, 300, 900, 1800, 3600],
    "DELTA_SYNC_MINUTES": int(os.environ.get("INTEGRATIONS_DELTA_SYNC_MINUTES", "5")),
    # Provider classes offered besides those their apps register, by dotted path: none in
    # production; the tests and the demo name the fake provider
    # (INTEGRATIONS_PROVIDERS=integrations.providers.fake.FakeProvider).
    "PROVIDERS": [p for p in os.environ.get("INTEGRATIONS_PROVIDERS", "").split(",") if p],
}

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "filters": {"mask_secrets": {"()": "integrations.logging.MaskSecretsFilter"}},
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s: %(message)s"}},
    "handlers": {
        "console": {
            "class": "logging.StreamHandler",
            "formatter": "plain",
            "filters": ["mask_secrets"],
        }
    },
    "root": {"handlers": ["console"], "level": os.environ.get("LOG_LEVEL", "WARNING")},
    "loggers": {
        "integrations": {"level": os.environ.get("INTEGRATIONS_LOG_LEVEL", "INFO")},
        "integrations_amsi": {"level": os.environ.get("INTEGRATIONS_LOG_LEVEL", "INFO")},
    },
}
