"""sesamweb settings: everything from the environment, with embedded defaults.

Embedded default: SQLite, the django-q2 ORM broker, an in-process progress relay and a
local data directory. DATABASE_URL=postgres://... and REDIS_URL=redis://... switch to
PostgreSQL, the Redis broker and the Redis channel layer (design.md section 8).
"""
import os
import secrets
from pathlib import Path

import dj_database_url

BASE_DIR = Path(__file__).resolve().parent.parent
DATA_DIR = Path(os.environ.get("SESAM_DATA_DIR", BASE_DIR / "var")).resolve()
# Private: it holds the database, the generated secrets and maybe local data stores.
DATA_DIR.mkdir(mode=0o700, parents=True, exist_ok=True)


def _env_bool(name, default=False):
    value = os.environ.get(name)
    if value is None:
        return default
    return value.strip().lower() in {"1", "true", "yes", "on"}


def _persistent_secret(name, filename):
    """Read a secret from the environment, else from (or into) a file in DATA_DIR.

    The demo needs no configuration: a random secret is generated on first run and kept
    (mode 0600) so that sessions and encrypted credentials survive a restart.
    """
    value = os.environ.get(name)
    if value:
        return value
    path = DATA_DIR / filename
    if not path.exists():
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as handle:
            handle.write(secrets.token_urlsafe(48))
    return path.read_text().strip()


SECRET_KEY = os.environ.get("DJANGO_SECRET_KEY") or _persistent_secret("DJANGO_SECRET_KEY", "django-secret.key")
# Key that encrypts pool passwords and data store keys at rest (never the Django key).
SESAM_SECRET_KEY = _persistent_secret("SESAM_SECRET_KEY", "sesam-secret.key")
# Key of the audit log's HMAC chain and checkpoints. Unset: derived from SESAM_SECRET_KEY
# with HKDF (sesamweb/audit/keys.py), so the one secrets file (or variable) kept outside
# the database covers both. Changing it later makes the existing rows fail verification.
SESAM_AUDIT_KEY = os.environ.get("SESAM_AUDIT_KEY", "")

# Remote device servers (backups/devices/). On a device server's worker node `manage.py
# device_server run NAME` sets SESAM_DEVICE_SERVER for its workers: they then read only the
# secrets sealed for the private key in SESAM_DEVICE_KEY_FILE (no SESAM_SECRET_KEY there).
SESAM_DEVICE_SERVER = os.environ.get("SESAM_DEVICE_SERVER", "")
SESAM_DEVICE_KEY_FILE = os.environ.get("SESAM_DEVICE_KEY_FILE", "")
SESAM_DEVICE_HEARTBEAT_SECONDS = float(os.environ.get("SESAM_DEVICE_HEARTBEAT_SECONDS", 15))
# A device server is down when its last heartbeat is older than this; its stores' backups
# wait for it this long, then fail with the reason.
SESAM_DEVICE_DOWN_AFTER_SECONDS = float(os.environ.get("SESAM_DEVICE_DOWN_AFTER_SECONDS", 90))
SESAM_DEVICE_WAIT_SECONDS = float(os.environ.get("SESAM_DEVICE_WAIT_SECONDS", 1800))
SESAM_DEVICE_TOKEN_HOURS = float(os.environ.get("SESAM_DEVICE_TOKEN_HOURS", 24))
# How long `device_server run` lets its cluster finish running tasks when it is stopped.
SESAM_DEVICE_STOP_SECONDS = float(os.environ.get("SESAM_DEVICE_STOP_SECONDS", 120))

DEBUG = _env_bool("DJANGO_DEBUG", False)
ALLOWED_HOSTS = [h.strip() for h in os.environ.get("ALLOWED_HOSTS", "localhost,127.0.0.1,[::1]").split(",") if h.strip()]
CSRF_TRUSTED_ORIGINS = [o.strip() for o in os.environ.get("CSRF_TRUSTED_ORIGINS", "").split(",") if o.strip()]

INSTALLED_APPS = [
    "daphne",
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "django.contrib.humanize",
    "rest_framework",
    "django_filters",
    "drf_spectacular",
    "drf_spectacular_sidecar",  # Swagger UI shipped with the project, no CDN
    "django_q",
    "channels",
    "sesamweb.accounts",
    "sesamweb.audit",
    "sesamweb.live",
    "sesamweb.dashboard",
    "sesamweb.notify",
    "xenpools",
    "backups",
]

MIDDLEWARE = [
    "sesamweb.tls.TlsMiddleware",  # first: decides what is TLS for everything below
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "sesamweb.audit.middleware.AuditContextMiddleware",
    "sesamweb.accounts.middleware.ForcePasswordChangeMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

ROOT_URLCONF = "sesamweb.urls"
ASGI_APPLICATION = "sesamweb.asgi.application"
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
                "sesamweb.accounts.context_processors.roles",
                "sesamweb.dashboard.navigation.navigation",
            ],
            # Sizes in decimal units everywhere: this `filesizeformat` replaces Django's.
            "builtins": ["sesamweb.units"],
        },
    },
]

# --- database -------------------------------------------------------------------------
def _create_private_file(path):
    """Create `path` with mode 0600 if it does not exist (SQLite would create it 0644; it
    gives its -wal and -shm files the database file's mode)."""
    try:
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
    except (FileExistsError, FileNotFoundError):
        pass


DATABASE_URL = os.environ.get("DATABASE_URL", "")
if DATABASE_URL:
    DATABASES = {"default": dj_database_url.parse(DATABASE_URL, conn_max_age=60)}
else:
    SQLITE_PATH = os.environ.get("SESAM_SQLITE_PATH", str(DATA_DIR / "sesamweb.sqlite3"))
    _create_private_file(SQLITE_PATH)
    DATABASES = {
        "default": {
            "ENGINE": "django.db.backends.sqlite3",
            "NAME": SQLITE_PATH,
            # The web server, the workers and the event follower all write (design.md 4).
            "OPTIONS": {
                "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
                "transaction_mode": "IMMEDIATE",
                "timeout": 20,
            },
        }
    }
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# --- broker, channel layer --------------------------------------------------------------
REDIS_URL = os.environ.get("REDIS_URL", "")
# Backups run for hours: the task timeout covers the longest job, and retry is larger so
# django-q2 never re-delivers a task that is still running (the VM task lease guards too).
SESAM_TASK_TIMEOUT = int(os.environ.get("SESAM_TASK_TIMEOUT", 24 * 3600))
# Stream slots (backups/streams.py): a worker renews its slots every third of this; a dead
# worker's slots come back after it.
SESAM_STREAM_LEASE_SECONDS = float(os.environ.get("SESAM_STREAM_LEASE_SECONDS", 60))
Q_CLUSTER = {
    "name": os.environ.get("SESAM_CLUSTER", "sesamweb"),
    "workers": int(os.environ.get("SESAM_WORKERS", 2)),
    "timeout": SESAM_TASK_TIMEOUT,
    "retry": SESAM_TASK_TIMEOUT + 600,
    "max_attempts": 1,
    "ack_failures": True,
    "catch_up": False,
    "poll": 0.5,
    "save_limit": 1000,
    "label": "Tasks",
    # A remote device server runs `manage.py device_server run NAME`, which starts qcluster
    # with Q_CLUSTER_NAME=device-NAME and the same "name" (tasks are signed with it): it then
    # serves only its stores' queue and fires only its own schedule rows (its stores'
    # maintenance, its watchdog). A local named cluster is `Q_CLUSTER_NAME=X manage.py
    # qcluster` (docs/scale-out.md). django-q2 needs this key to be present.
    "ALT_CLUSTERS": {},
}
if REDIS_URL:
    Q_CLUSTER["redis"] = REDIS_URL
    CHANNEL_LAYERS = {
        "default": {
            "BACKEND": "channels_redis.core.RedisChannelLayer",
            "CONFIG": {"hosts": [REDIS_URL]},
        }
    }
else:
    Q_CLUSTER["orm"] = "default"
    CHANNEL_LAYERS = {"default": {"BACKEND": "channels.layers.InMemoryChannelLayer"}}

# --- auth -------------------------------------------------------------------------------
AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator", "OPTIONS": {"min_length": 10}},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
]
LOGIN_URL = "login"
LOGIN_REDIRECT_URL = "dashboard"
LOGOUT_REDIRECT_URL = "login"
SESSION_COOKIE_HTTPONLY = True
SESSION_COOKIE_SAMESITE = "Lax"
# Over TLS every cookie is Secure anyway (sesamweb/tls.py); this forces it on plain HTTP too.
SESSION_COOKIE_SECURE = _env_bool("SESAM_SECURE_COOKIES", False)
CSRF_COOKIE_SECURE = SESSION_COOKIE_SECURE
# Failed sign-ins (per user name and address) and unknown API tokens (per address): after
# MAX_FAILURES, each further attempt waits DELAY_SECONDS, doubling up to LOCKOUT_SECONDS.
SESAM_LOGIN_MAX_FAILURES = int(os.environ.get("SESAM_LOGIN_MAX_FAILURES", 5))
SESAM_LOGIN_DELAY_SECONDS = int(os.environ.get("SESAM_LOGIN_DELAY_SECONDS", 30))
SESAM_LOGIN_LOCKOUT_SECONDS = int(os.environ.get("SESAM_LOGIN_LOCKOUT_SECONDS", 900))
# Reverse proxies (addresses or networks, comma-separated) whose X-Forwarded-For names the
# client; without them the header is ignored (sesamweb/client_address.py).
SESAM_TRUSTED_PROXIES = [p.strip() for p in os.environ.get("SESAM_TRUSTED_PROXIES", "").split(",") if p.strip()]
# Such a proxy terminating TLS says so with X-Forwarded-Proto: https (sesamweb/tls.py drops the
# header from anyone else). HSTS is sent on TLS requests only.
SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https") if SESAM_TRUSTED_PROXIES else None
SECURE_HSTS_SECONDS = int(os.environ.get("SESAM_HSTS_SECONDS", 365 * 24 * 3600))

REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        # Token first: its "WWW-Authenticate: Token" makes unauthenticated API calls 401.
        "sesamweb.accounts.authentication.ApiTokenAuthentication",
        "rest_framework.authentication.SessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["sesamweb.accounts.permissions.RolePermission"],
    "DEFAULT_FILTER_BACKENDS": [
        "django_filters.rest_framework.DjangoFilterBackend",
        "rest_framework.filters.OrderingFilter",
        "sesamweb.api_filters.SearchFilter",
    ],
    "DEFAULT_PAGINATION_CLASS": "sesamweb.pagination.ApiPagination",
    "PAGE_SIZE": 100,
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
}
# The largest ?limit= an API list honours (larger ones get this many).
SESAM_API_MAX_PAGE_SIZE = int(os.environ.get("SESAM_API_MAX_PAGE_SIZE", 1000))
SPECTACULAR_SETTINGS = {
    "TITLE": "sesamweb API",
    "DESCRIPTION": "Agent-less backup and restore of XenServer / XCP-ng virtual machines.",
    "VERSION": "1.0.0",
    "SERVE_INCLUDE_SCHEMA": False,
    # The schema maps every endpoint: only for signed-in users with a role (token or session).
    "SERVE_PERMISSIONS": ["sesamweb.accounts.permissions.RolePermission"],
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    # Choice sets that several serializers use share one named schema (and no naming warning).
    "ENUM_NAME_OVERRIDES": {
        "BackupKindEnum": "backups.choices.BackupKind",
        "ScheduleKindEnum": "backups.jobs.choices.ScheduleKind",
        "PowerStateEnum": "xenpools.choices.PowerState",
        "RunStatusEnum": "backups.choices.RunStatus",
        "TriggerEnum": "backups.choices.Trigger",
        "CleanupTriggerEnum": "backups.choices.CleanupTrigger",
        "CleanupStatusEnum": "backups.choices.CleanupStatus",
        "NotifyChannelKindEnum": "sesamweb.notify.choices.ChannelKind",
        "NotifyDeliveryStatusEnum": "sesamweb.notify.choices.DeliveryStatus",
        "NotifySeverityEnum": "sesamweb.notify.choices.Severity",
    },
    "POSTPROCESSING_HOOKS": [
        "drf_spectacular.hooks.postprocess_schema_enums",
        "sesamweb.api_schema.declare_error_responses",
    ],
}

# --- static, i18n -----------------------------------------------------------------------
STATIC_URL = "/static/"
STATICFILES_DIRS = [BASE_DIR / "static"]
STATIC_ROOT = DATA_DIR / "staticfiles"
STATIC_ROOT.mkdir(parents=True, exist_ok=True)  # WhiteNoise warns on every start while it is missing
WHITENOISE_USE_FINDERS = True
LANGUAGE_CODE = "en-us"
TIME_ZONE = os.environ.get("TZ", "UTC")
USE_I18N = True
USE_TZ = True

# --- mail, syslog -----------------------------------------------------------------------
EMAIL_HOST = os.environ.get("EMAIL_HOST", "localhost")
EMAIL_PORT = int(os.environ.get("EMAIL_PORT", 25))
EMAIL_HOST_USER = os.environ.get("EMAIL_HOST_USER", "")
EMAIL_HOST_PASSWORD = os.environ.get("EMAIL_HOST_PASSWORD", "")
EMAIL_USE_TLS = _env_bool("EMAIL_USE_TLS", False)
DEFAULT_FROM_EMAIL = os.environ.get("DEFAULT_FROM_EMAIL", "sesamweb@localhost")
# Audit events and checkpoints to syslog (sesamweb/audit/syslog.py): host:port, udp/tcp/tls.
SESAM_SYSLOG_ADDRESS = os.environ.get("SESAM_SYSLOG_ADDRESS", "")
SESAM_SYSLOG_PROTOCOL = os.environ.get("SESAM_SYSLOG_PROTOCOL", "udp").lower()
SESAM_SYSLOG_CA_FILE = os.environ.get("SESAM_SYSLOG_CA_FILE", "")  # tls: the collector's CA (PEM)
SESAM_SYSLOG_TIMEOUT = float(os.environ.get("SESAM_SYSLOG_TIMEOUT", 2))  # seconds; a slow collector is logged
# Signed checkpoints of the audit chain's head, written outside the database (the data
# directory, each local data store, syslog) after every N events or when the last one is
# older than M minutes: what shows that the newest rows were deleted.
SESAM_AUDIT_CHECKPOINT_EVERY = int(os.environ.get("SESAM_AUDIT_CHECKPOINT_EVERY", 100))
SESAM_AUDIT_CHECKPOINT_MINUTES = float(os.environ.get("SESAM_AUDIT_CHECKPOINT_MINUTES", 60))
SESAM_AUDIT_CHECKPOINT_DIR = Path(os.environ.get("SESAM_AUDIT_CHECKPOINT_DIR", DATA_DIR))
# "Verify chain" on the audit page checks up to this many events in the request; a longer
# log is checked by a worker that records the result in the log (sesamweb/audit/verification.py).
SESAM_AUDIT_VERIFY_INLINE_MAX = int(os.environ.get("SESAM_AUDIT_VERIFY_INLINE_MAX", 100_000))

# --- notifications (sesamweb/notify, README "Notifications") -----------------------------
# Links in messages point here (the address people open the console at).
SESAM_BASE_URL = os.environ.get("SESAM_BASE_URL", "http://localhost:8000")
SESAM_NOTIFY_TIMEOUT = float(os.environ.get("SESAM_NOTIFY_TIMEOUT", 10))           # seconds per attempt
SESAM_NOTIFY_MAX_ATTEMPTS = int(os.environ.get("SESAM_NOTIFY_MAX_ATTEMPTS", 8))
SESAM_NOTIFY_RETRY_BASE_SECONDS = float(os.environ.get("SESAM_NOTIFY_RETRY_BASE_SECONDS", 30))
SESAM_NOTIFY_RETRY_MAX_SECONDS = float(os.environ.get("SESAM_NOTIFY_RETRY_MAX_SECONDS", 3600))
# A worker that died mid-send: its "sending" delivery is tried again after this long.
SESAM_NOTIFY_LEASE_SECONDS = int(os.environ.get("SESAM_NOTIFY_LEASE_SECONDS", 300))
SESAM_NOTIFY_FAILING_AFTER = int(os.environ.get("SESAM_NOTIFY_FAILING_AFTER", 3))  # failures in a row
SESAM_NOTIFY_DIGEST_HOUR = int(os.environ.get("SESAM_NOTIFY_DIGEST_HOUR", 7))      # local time
SESAM_NOTIFY_KEEP_DAYS = int(os.environ.get("SESAM_NOTIFY_KEEP_DAYS", 90))         # events and deliveries
# store.nearly_full: reported once when a local store's file system is this full, again only
# after it went below (percent - hysteresis).
SESAM_STORE_NEARLY_FULL_PERCENT = float(os.environ.get("SESAM_STORE_NEARLY_FULL_PERCENT", 90))
SESAM_STORE_NEARLY_FULL_HYSTERESIS = float(os.environ.get("SESAM_STORE_NEARLY_FULL_HYSTERESIS", 5))

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s: %(message)s"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "root": {"handlers": ["console"], "level": os.environ.get("SESAM_LOG_LEVEL", "INFO")},
    "loggers": {"django.channels.server": {"level": "WARNING"}},
}
