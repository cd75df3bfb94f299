"""TraceFoundry settings: one module, driven by environment variables only.

Every variable is documented in deploy/.env.example. The embedded default (no variables set) is a
development setup: DEBUG on, SQLite in the checkout, in-memory channel layer, payload blobs on the
filesystem. Production (DEBUG=0) refuses to start without SECRET_KEY and ALLOWED_HOSTS.
"""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path

import dj_database_url
from django.core.exceptions import ImproperlyConfigured

from tracefoundry.env import env_bool, env_choice, env_float, env_int, env_list, env_str

BASE_DIR = Path(__file__).resolve().parent.parent

DEBUG = env_bool("DEBUG", True)

SECRET_KEY = env_str("SECRET_KEY")
ALLOWED_HOSTS = env_list("ALLOWED_HOSTS")
if not DEBUG:
    if not SECRET_KEY:
        raise ImproperlyConfigured("SECRET_KEY must be set when DEBUG is off")
    if not ALLOWED_HOSTS:
        raise ImproperlyConfigured("ALLOWED_HOSTS must be set when DEBUG is off")
else:
    SECRET_KEY = SECRET_KEY or "django-insecure-tracefoundry-development-only"
    ALLOWED_HOSTS = ALLOWED_HOSTS or ["127.0.0.1", "localhost", "[::1]", "testserver"]

CSRF_TRUSTED_ORIGINS = env_list("CSRF_TRUSTED_ORIGINS")

INSTALLED_APPS = [
    "daphne",
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "rest_framework",
    "django_filters",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "channels",
    "axes",
    "tracefoundry",
    "runs",
    "payloads",
    "traces",
    "bundles",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "tracefoundry.static_files.StaticFilesMiddleware",  # WhiteNoise, callable from async code
    "tracefoundry.api.errors.ApiErrorMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "axes.middleware.AxesMiddleware",  # turns a lockout on the login pages into a 429 page
]

ROOT_URLCONF = "tracefoundry.urls"
ASGI_APPLICATION = "tracefoundry.asgi.application"
WSGI_APPLICATION = None

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
                "tracefoundry.context_processors.role",
            ],
        },
    },
]

# --- Database -------------------------------------------------------------------------------
DATABASE_URL = env_str("DATABASE_URL", f"sqlite:///{BASE_DIR / 'tracefoundry.sqlite3'}")
_db = dj_database_url.parse(DATABASE_URL, conn_max_age=env_int("DB_CONN_MAX_AGE", 60, minimum=0))
if _db["ENGINE"] == "django.db.backends.sqlite3":
    # WAL lets readers run beside the single writer; IMMEDIATE transactions take the write lock
    # up front so two writers queue on the busy timeout instead of failing to upgrade a lock.
    _db["ENGINE"] = "tracefoundry.db.sqlite3"  # Django's backend plus connection reuse
    _db["CONN_MAX_AGE"] = 0
    _db["OPTIONS"] = {
        "transaction_mode": "IMMEDIATE",
        "timeout": 30,
        "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
    }
    _db["TEST"] = {"NAME": env_str("SQLITE_TEST_NAME") or None}
elif env_bool("DB_POOL", True):
    # Django's ASGI handler runs each request on a fresh thread, and a connection belongs to a
    # thread, so persistent connections are never reused there: a pool is.
    _db["CONN_MAX_AGE"] = 0
    _db.setdefault("OPTIONS", {})["pool"] = {
        "min_size": 1,
        "max_size": env_int("DB_POOL_MAX_SIZE", 10, minimum=1),
        # How long a request waits for a connection before it is answered 503 + Retry-After.
        "timeout": env_int("DB_POOL_TIMEOUT", 5, minimum=1),
    }
    # With a pool, Django turns this into psycopg_pool's ``check``: a pooled connection is
    # checked before it is handed out, so after the database restarts the first request gets a
    # live connection, not one the restart killed.
    _db["CONN_HEALTH_CHECKS"] = True
    # An unreachable database host fails a connection attempt in seconds, not minutes.
    _db["OPTIONS"].setdefault("connect_timeout", env_int("DB_CONNECT_TIMEOUT", 3, minimum=1))
else:
    _db["CONN_HEALTH_CHECKS"] = True
DATABASES = {"default": _db}
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# --- Redis: channel layer and cache -----------------------------------------------------------
REDIS_URL = env_str("REDIS_URL")
if REDIS_URL:
    CHANNEL_LAYERS = {
        "default": {
            # Pub/Sub: an event reaches each web process once and is fanned out to its sockets
            # there, instead of one Redis list pop per socket (channels_redis.core), which tops
            # out at a few thousand socket messages a second. Delivery is best-effort either
            # way: the consumers read anything they missed back from the database.
            "BACKEND": "channels_redis.pubsub.RedisPubSubChannelLayer",
            "CONFIG": {
                "hosts": [{"address": REDIS_URL, "socket_connect_timeout": 5}],
                # Deployments sharing one Redis must not hear each other's groups.
                "prefix": env_str("CHANNEL_LAYER_PREFIX", "tracefoundry"),
            },
        }
    }
    CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.redis.RedisCache",
            "LOCATION": REDIS_URL,
            "KEY_PREFIX": env_str("CACHE_KEY_PREFIX", "tracefoundry"),
            # One pool per process, not one per request (see tracefoundry/cache.py).
            "OPTIONS": {
                "pool_class": "tracefoundry.cache.SharedConnectionPool",
                # A Redis that is down or unreachable must cost a request milliseconds, not the
                # OS's connect timeout: throttles then fail open (tracefoundry/throttling.py).
                "socket_connect_timeout": 0.5,
                "socket_timeout": 1.0,
            },
        }
    }
else:
    CHANNEL_LAYERS = {"default": {"BACKEND": "channels.layers.InMemoryChannelLayer"}}
    CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}

# --- Auth ------------------------------------------------------------------------------------
# django-axes counts failed password logins per username + client IP (the login page, the admin
# login and HTTP Basic on the API, which all go through django.contrib.auth.authenticate) and
# refuses that pair for a while after too many: a 429 page on the login pages, and on the API a
# 401 `locked_out` JSON error with Retry-After (refused credentials, not throttling).
AUTHENTICATION_BACKENDS = [
    "tracefoundry.lockout.LockoutBackend",
    "django.contrib.auth.backends.ModelBackend",
]
AXES_HANDLER = "axes.handlers.database.AxesDatabaseHandler"  # shared by every process
AXES_LOCKOUT_PARAMETERS = [["username", "ip_address"]]
AXES_FAILURE_LIMIT = env_int("TRACEFOUNDRY_LOGIN_FAILURE_LIMIT", 10, minimum=1)
AXES_COOLOFF_TIME = timedelta(minutes=env_int("TRACEFOUNDRY_LOGIN_COOLOFF_MINUTES", 15, minimum=1))
AXES_RESET_ON_SUCCESS = False  # a reset per request would cost every Basic-auth call a write
AXES_DISABLE_ACCESS_LOG = True
AXES_VERBOSE = False  # no "AXES: BEGIN" banner on every manage.py command
# REMOTE_ADDR only: daphne's --proxy-headers sets it from the proxy's X-Forwarded-For, and a
# client must not pick its own address by sending that header itself.
AXES_CLIENT_IP_CALLABLE = "tracefoundry.lockout.client_ip"
AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]
LOGIN_URL = "/accounts/login/"
LOGIN_REDIRECT_URL = "/runs/"
LOGOUT_REDIRECT_URL = "/accounts/login/"

# --- I18N, static ----------------------------------------------------------------------------
LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "/static/"
STATIC_ROOT: Path | None = Path(env_str("STATIC_ROOT", str(BASE_DIR / "staticfiles")))
if DEBUG and not STATIC_ROOT.exists():
    STATIC_ROOT = None  # development serves from the finders; nothing was collected
STATICFILES_DIRS = [BASE_DIR / "static"]
WHITENOISE_USE_FINDERS = DEBUG

# --- Payload storage -------------------------------------------------------------------------
# filesystem (default): blobs under TRACEFOUNDRY_PAYLOAD_DIR. s3: any S3-compatible object store
# (AWS S3, MinIO, Ceph, R2…) through django-storages. S3 credentials are never settings: boto3
# reads AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY (and AWS_SESSION_TOKEN) from the environment,
# or its default chain (instance/task role, ~/.aws) when they are unset.
TRACEFOUNDRY_PAYLOAD_STORAGE = env_choice(
    "TRACEFOUNDRY_PAYLOAD_STORAGE", "filesystem", ("filesystem", "s3")
)
TRACEFOUNDRY_PAYLOAD_DIR = Path(env_str("TRACEFOUNDRY_PAYLOAD_DIR", str(BASE_DIR / "payloads")))
if TRACEFOUNDRY_PAYLOAD_STORAGE == "s3":
    _s3_bucket = env_str("TRACEFOUNDRY_S3_BUCKET")
    if not _s3_bucket:
        raise ImproperlyConfigured(
            "TRACEFOUNDRY_S3_BUCKET must be set when TRACEFOUNDRY_PAYLOAD_STORAGE=s3"
        )
    _s3_endpoint = env_str("TRACEFOUNDRY_S3_ENDPOINT_URL") or None
    _payload_storage = {
        "BACKEND": "storages.backends.s3.S3Storage",
        "OPTIONS": {
            "bucket_name": _s3_bucket,
            "endpoint_url": _s3_endpoint,
            "region_name": env_str("TRACEFOUNDRY_S3_REGION") or None,
            "location": env_str("TRACEFOUNDRY_S3_PREFIX", "payloads").strip("/"),
            # Self-hosted stores (MinIO) want the bucket in the path, not in the host name.
            "addressing_style": env_choice(
                "TRACEFOUNDRY_S3_ADDRESSING_STYLE", "path" if _s3_endpoint else "auto",
                ("auto", "path", "virtual"),
            ),
            # Keys are content addresses: a key always holds the same bytes, so overwriting is
            # harmless and no "_abc123" suffixes are ever invented.
            "file_overwrite": True,
            # Private objects, read back only by the server (never linked to): bucket default ACL.
            "default_acl": None,
        },
    }
else:
    _payload_storage = {
        "BACKEND": "django.core.files.storage.FileSystemStorage",
        # As on S3: a key always holds the same bytes, so writing it again is harmless.
        "OPTIONS": {"location": str(TRACEFOUNDRY_PAYLOAD_DIR), "allow_overwrite": True},
    }
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {
        "BACKEND": (
            "django.contrib.staticfiles.storage.StaticFilesStorage"
            if DEBUG
            else "whitenoise.storage.CompressedManifestStaticFilesStorage"
        )
    },
    "payloads": _payload_storage,
}
# Retention (`manage.py cleanup`): finished runs and traces, and payload blobs, are deleted this
# many days after they ended / were last used.
TRACEFOUNDRY_RETENTION_DAYS = env_int("TRACEFOUNDRY_RETENTION_DAYS", 7, minimum=1)
TRACEFOUNDRY_PAYLOAD_RETENTION_DAYS = env_int("TRACEFOUNDRY_PAYLOAD_RETENTION_DAYS", 3, minimum=1)

# --- Product behaviour -----------------------------------------------------------------------
TRACEFOUNDRY_REDACTION_POLICY = env_choice(
    "TRACEFOUNDRY_REDACTION", "standard", ("standard", "strict", "off")
)
try:
    TRACEFOUNDRY_REDACTION_EXTRA_PATTERNS = json.loads(
        env_str("TRACEFOUNDRY_REDACTION_EXTRA_PATTERNS", "{}")
    )
except json.JSONDecodeError as exc:
    raise ImproperlyConfigured(
        f"TRACEFOUNDRY_REDACTION_EXTRA_PATTERNS is not a JSON object: {exc}"
    ) from None


def _tf_int(name: str, default: int, minimum: int) -> int:
    return env_int(f"TRACEFOUNDRY_{name}", default, minimum=minimum)


TRACEFOUNDRY_INLINE_STRING_LIMIT = _tf_int("INLINE_STRING_LIMIT", 8 * 1024, 256)
TRACEFOUNDRY_EVENT_PAYLOAD_LIMIT = _tf_int("EVENT_PAYLOAD_LIMIT", 64 * 1024, 1024)
TRACEFOUNDRY_RUN_EVENT_LIMIT = _tf_int("RUN_EVENT_LIMIT", 100_000, 10)
TRACEFOUNDRY_EVENT_BATCH_LIMIT = _tf_int("EVENT_BATCH_LIMIT", 1000, 1)
TRACEFOUNDRY_MAX_REQUEST_BYTES = _tf_int("MAX_REQUEST_BYTES", 32 * 1024 * 1024, 1024)
TRACEFOUNDRY_LATE_EVENT_GRACE_SECONDS = _tf_int("LATE_EVENT_GRACE_SECONDS", 30, 0)
TRACEFOUNDRY_RETRY_BASE_SECONDS = _tf_int("RETRY_BASE_SECONDS", 2, 0)
TRACEFOUNDRY_RETRY_MAX_SECONDS = _tf_int("RETRY_MAX_SECONDS", 600, 0)
TRACEFOUNDRY_DEFAULT_MAX_ATTEMPTS = _tf_int("DEFAULT_MAX_ATTEMPTS", 3, 1)
# Queue and workers (runs/services/queue.py, runs/worker.py).
TRACEFOUNDRY_HEARTBEAT_SECONDS = _tf_int("HEARTBEAT_SECONDS", 10, 1)
TRACEFOUNDRY_STALL_TIMEOUT_SECONDS = _tf_int("STALL_TIMEOUT_SECONDS", 60, 1)
TRACEFOUNDRY_REAPER_INTERVAL_SECONDS = _tf_int("REAPER_INTERVAL_SECONDS", 15, 1)
TRACEFOUNDRY_WORKER_POLL_MS = _tf_int("WORKER_POLL_MS", 1000, 10)
TRACEFOUNDRY_WORKER_SHUTDOWN_GRACE_SECONDS = _tf_int("WORKER_SHUTDOWN_GRACE_SECONDS", 8, 0)
# A span per run a worker executes (and the spans of the SDK helpers its jobs use), written
# straight into the database by the worker process (tracefoundry/sdk_bridge.py).
TRACEFOUNDRY_WORKER_SPANS = env_bool("TRACEFOUNDRY_WORKER_SPANS", True)
TRACEFOUNDRY_API_KEY_CACHE_SECONDS = _tf_int("API_KEY_CACHE_SECONDS", 5, 0)
TRACEFOUNDRY_OTLP_MAX_BYTES = _tf_int("OTLP_MAX_BYTES", 20 * 1024 * 1024, 1024)
TRACEFOUNDRY_OTLP_MAX_IN_FLIGHT = _tf_int("OTLP_MAX_IN_FLIGHT", 8, 1)
# Bundle import and dry replay (bundles/validation.py): an uploaded zip with more entries, more
# uncompressed bytes, or an entry (or the whole) compressed more than this ratio is refused before
# a byte of it is read out. The ratio is checked on entries over 64 KiB only (a small entry cannot
# be a bomb, and a tiny JSON file may well compress 100:1); repetitive agent text reaches ~300:1,
# a deflated run of zeros ~1000:1.
TRACEFOUNDRY_BUNDLE_MAX_ENTRIES = _tf_int("BUNDLE_MAX_ENTRIES", 20_000, 1)
TRACEFOUNDRY_BUNDLE_MAX_BYTES = _tf_int("BUNDLE_MAX_BYTES", 512 * 1024 * 1024, 1024)
TRACEFOUNDRY_BUNDLE_MAX_RATIO = _tf_int("BUNDLE_MAX_RATIO", 500, 2)
# Bodies outside /api/ and /otlp/ (forms, admin, health): the web server (tracefoundry.server)
# answers 413 above this before reading them.
TRACEFOUNDRY_PAGE_MAX_BYTES = _tf_int("PAGE_MAX_BYTES", 1024 * 1024, 1024)
TRACEFOUNDRY_TRACE_ALLOWLIST = Path(
    env_str("TRACEFOUNDRY_TRACE_ALLOWLIST", str(BASE_DIR / "deploy" / "trace-allowlist.yaml"))
)
TRACEFOUNDRY_SPAN_INLINE_LIMIT = _tf_int("SPAN_INLINE_LIMIT", 8 * 1024, 256)
TRACEFOUNDRY_MODEL_PRICES = Path(
    env_str("TRACEFOUNDRY_MODEL_PRICES", str(BASE_DIR / "deploy" / "model-prices.yaml"))
)
# Live streams: events a WebSocket client may leave unacknowledged, and how long it may stay
# behind before it is told to resync from the database.
TRACEFOUNDRY_WS_WINDOW = _tf_int("WS_WINDOW", 1000, 10)
TRACEFOUNDRY_WS_ACK_TIMEOUT = env_float("TRACEFOUNDRY_WS_ACK_TIMEOUT", 10.0)
TRACEFOUNDRY_SSE_KEEPALIVE_SECONDS = env_float("TRACEFOUNDRY_SSE_KEEPALIVE_SECONDS", 15.0)
# How often each process that serves live streams looks in the database for events committed by
# other processes (workers, the CLI, other web processes): the only way they reach its clients
# with the in-memory channel layer, and what heals streams that missed messages while Redis was
# down (runs/follow.py). One cheap query per interval, only while somebody follows a stream.
TRACEFOUNDRY_LIVE_POLL_MS = _tf_int("LIVE_POLL_MS", 500, 50)
TRACEFOUNDRY_THROTTLE_RATES = {
    "enqueue": env_str("TRACEFOUNDRY_THROTTLE_ENQUEUE", "1200/min"),
    "cancel": env_str("TRACEFOUNDRY_THROTTLE_CANCEL", "600/min"),
    "ingest": env_str("TRACEFOUNDRY_THROTTLE_INGEST", "6000/min"),
}
# Bodies are parsed by DRF, which enforces TRACEFOUNDRY_MAX_REQUEST_BYTES itself (413).
DATA_UPLOAD_MAX_MEMORY_SIZE = TRACEFOUNDRY_MAX_REQUEST_BYTES

# --- DRF ---------------------------------------------------------------------------------------
REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "tracefoundry.authentication.ApiKeyAuthentication",
        "tracefoundry.lockout.LockoutBasicAuthentication",
        "rest_framework.authentication.SessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    "DEFAULT_PARSER_CLASSES": ["tracefoundry.api.parsers.LimitedJSONParser"],
    "DEFAULT_RENDERER_CLASSES": [
        "tracefoundry.api.renderers.FastJSONRenderer",
        "rest_framework.renderers.BrowsableAPIRenderer",
    ],
    "DEFAULT_FILTER_BACKENDS": ["django_filters.rest_framework.DjangoFilterBackend"],
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "EXCEPTION_HANDLER": "tracefoundry.api.errors.exception_handler",
    "UNAUTHENTICATED_USER": "django.contrib.auth.models.AnonymousUser",
    "TEST_REQUEST_DEFAULT_FORMAT": "json",
}

# The OpenAPI schema and Swagger UI are public in development; in production (DEBUG=0) they need
# a login (session, Basic or API key) unless TRACEFOUNDRY_PUBLIC_API_DOCS=1.
TRACEFOUNDRY_PUBLIC_API_DOCS = env_bool("TRACEFOUNDRY_PUBLIC_API_DOCS", DEBUG)
SPECTACULAR_SETTINGS = {
    "TITLE": "TraceFoundry API",
    "DESCRIPTION": (
        "Runs, steps, the append-only run event stream, traces, spans and payloads of "
        'TraceFoundry. Every error is `{"error": {"code", "message", "details"}}`. Spans are '
        "ingested at `POST /otlp/v1/traces`, which follows the OTLP/HTTP specification "
        "(protobuf or JSON `ExportTraceServiceRequest`, an API key with the `ingest` scope) "
        "and is therefore not described here."
    ),
    "VERSION": "1.0.0",
    "SERVE_INCLUDE_SCHEMA": False,
    "SERVE_PERMISSIONS": ["tracefoundry.api.permissions.ApiDocsAccess"],
    "SCHEMA_PATH_PREFIX": "/api/v1",
    "COMPONENT_SPLIT_REQUEST": True,
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    "POSTPROCESSING_HOOKS": [
        "drf_spectacular.hooks.postprocess_schema_enums",
        "runs.api.schema_hooks.document_event_rules",
        "tracefoundry.api.schema.forbid_nul_in_inputs",
    ],
    "ENUM_NAME_OVERRIDES": {
        "RunStateEnum": "runs.models.RunState",
        "StepStateEnum": "runs.models.StepState",
        "EventLevelEnum": "runs.models.EventLevel",
    },
}

# --- Production hardening (manage.py check --deploy passes with DEBUG=0) ----------------------
# X-Forwarded-Proto says "this came over HTTPS" only when a proxy we run sets it; without one,
# any client could send it.
TRACEFOUNDRY_BEHIND_PROXY = env_bool("TRACEFOUNDRY_BEHIND_PROXY", False)
if TRACEFOUNDRY_BEHIND_PROXY:
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
if not DEBUG:
    SECURE_SSL_REDIRECT = env_bool("SECURE_SSL_REDIRECT", True)
    SECURE_HSTS_SECONDS = env_int("SECURE_HSTS_SECONDS", 31536000, minimum=0)
    SECURE_HSTS_INCLUDE_SUBDOMAINS = env_bool("SECURE_HSTS_INCLUDE_SUBDOMAINS", True)
    SECURE_HSTS_PRELOAD = env_bool("SECURE_HSTS_PRELOAD", False)
    SESSION_COOKIE_SECURE = env_bool("SESSION_COOKIE_SECURE", True)
    CSRF_COOKIE_SECURE = env_bool("CSRF_COOKIE_SECURE", True)
    SECURE_REDIRECT_EXEMPT = [r"^healthz$", r"^readyz$"]
    if not SECURE_HSTS_PRELOAD:
        # Preloading is a commitment an operator opts into (HSTS_PRELOAD=1), not a default.
        SILENCED_SYSTEM_CHECKS = ["security.W021"]

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {
        # Redacts every line (payloads.log_redaction): secrets never reach the log.
        "plain": {
            "class": "payloads.log_redaction.RedactingFormatter",
            "format": "%(asctime)s %(levelname)s %(name)s %(message)s",
        },
    },
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "root": {"handlers": ["console"], "level": env_str("LOG_LEVEL", "INFO").upper()},
    "loggers": {
        # Replace Django's own console handler so each line is printed once, by the root.
        "django": {"handlers": [], "level": "INFO", "propagate": True},
        "django.db.backends": {"level": "INFO"},
    },
}
