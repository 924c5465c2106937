"""Django settings, read from environment variables only (see core/env.py and README)."""

from __future__ import annotations

from pathlib import Path

import dj_database_url
from csp.constants import NONCE, NONE, SELF

from core.env import env_bool, env_choice, env_int, env_list, env_str, env_str_map

BASE_DIR = Path(__file__).resolve().parent.parent

DEBUG = env_bool("PORTAL_DEBUG", False)
SECRET_KEY = env_str("PORTAL_SECRET_KEY")
ALLOWED_HOSTS = env_list("PORTAL_ALLOWED_HOSTS", ["127.0.0.1", "localhost"])
CSRF_TRUSTED_ORIGINS = env_list("PORTAL_CSRF_TRUSTED_ORIGINS", [])
PORTAL_BACKEND = env_choice("PORTAL_BACKEND", "local", ("local", "kubernetes"))
REDIS_URL = env_str("REDIS_URL")


def _redis_db(url: str, db: int) -> str:
    """The same server on another database number: flushing the cache never touches queues."""
    base, _, _ = url.partition("?")
    head, sep, tail = base.rpartition("/")
    return f"{head}/{db}" if sep and tail.isdigit() else f"{base.rstrip('/')}/{db}"


# Behind TLS (any real deployment): secure cookies, HSTS and redirects.
HTTPS = env_bool("PORTAL_HTTPS", False)
SECURE_SSL_REDIRECT = HTTPS
SESSION_COOKIE_SECURE = HTTPS
CSRF_COOKIE_SECURE = HTTPS
SECURE_HSTS_SECONDS = env_int("PORTAL_HSTS_SECONDS", 31536000 if HTTPS else 0, minimum=0)
SECURE_HSTS_INCLUDE_SUBDOMAINS = HTTPS
SECURE_HSTS_PRELOAD = HTTPS
SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https") if HTTPS else None
SECURE_REDIRECT_EXEMPT = [r"^healthz$", r"^readyz$"]
SECURE_CONTENT_TYPE_NOSNIFF = True
SECURE_REFERRER_POLICY = "same-origin"
X_FRAME_OPTIONS = "DENY"
SESSION_COOKIE_HTTPONLY = True
# Content-Security-Policy on every answer (csp.middleware.CSPMiddleware, first in MIDDLEWARE; README
# "Configuration"): the portal's own scripts, styles, images, fetches and websockets only ('self'
# is ws:/wss: of the same origin too), no inline script, no plugins, no framing. The nonce appears
# only in answers whose template reads request.csp_nonce: the function workspace, because
# CodeMirror (style-mod) can only style its editor with a <style> element, which it gives the nonce
# (static/src/editor.js); every other answer, and so the 404s that must not differ, has none.
# data: images are Pico's and Swagger UI's inline SVG icons, in their stylesheets.
CONTENT_SECURITY_POLICY = {
    "DIRECTIVES": {
        "default-src": [SELF],
        "script-src": [SELF],
        "style-src": [SELF, NONCE],
        "img-src": [SELF, "data:"],
        "connect-src": [SELF],
        "object-src": [NONE],
        "base-uri": [NONE],
        "frame-ancestors": [NONE],
        "form-action": [SELF],
    },
}

SHARED_APPS = [
    "django_tenants",
    "portal",
    "tenants",
    "audit",
    "django.contrib.contenttypes",
    "django.contrib.auth",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "django_htmx",
    "rest_framework",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "channels",
]
TENANT_APPS = [
    "django.contrib.contenttypes",
    "functions",
    "releases",
]
INSTALLED_APPS = SHARED_APPS + [app for app in TENANT_APPS if app not in SHARED_APPS]

TENANT_MODEL = "tenants.Tenant"
TENANT_DOMAIN_MODEL = "tenants.Domain"
TENANT_SUBFOLDER_PREFIX = "t"
PUBLIC_SCHEMA_URLCONF = "portal.urls_public"
ROOT_URLCONF = "portal.urls_tenant"
# How many tenants' URLconfs (and so URL resolvers) a process keeps (portal.middleware.TenantUrlConfs).
TENANT_URLCONF_CACHE_SIZE = 512
DATABASE_ROUTERS = ["django_tenants.routers.TenantSyncRouter"]
# A new tenant's schema is a copy of this one, which migrate_schemas keeps current; and
# migrate_schemas skips the tenants that have every migration recorded (tenants/schemas.py).
TENANT_BASE_SCHEMA = "tenant_template"  # tenants' schemas are "t_<slug>": never this name
GET_EXECUTOR_FUNCTION = "tenants.schemas.get_executor"
# `SET search_path` once per connection and schema switch, not before every query (it was half of
# every page's statements). Safe here: django-tenants forgets the set path on every schema switch,
# rollback, savepoint rollback and close, which are what revert it in PostgreSQL.
TENANT_LIMIT_SET_CALLS = True
AUTH_USER_MODEL = "portal.User"

MIDDLEWARE = [
    "csp.middleware.CSPMiddleware",  # first: every answer gets the policy, errors too
    "portal.middleware.HealthMiddleware",
    "portal.metrics.RequestMetricsMiddleware",
    "portal.middleware.NulInUrlMiddleware",
    "portal.middleware.TenantPathMiddleware",
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "audit.context.AuditMiddleware",
    # After sign-in, so that an oversized form's 413 is the portal's framed page (see its docstring).
    "core.middleware.BodySizeLimitMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "tenants.passwords.PasswordChangeRequiredMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    # After every middleware that changes an answer: an unknown tenant's and a hidden one's
    # pass through the same ones (portal/tests/test_hidden_tenants.py).
    "portal.middleware.UnknownTenantMiddleware",
    "django_htmx.middleware.HtmxMiddleware",
]

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
                "portal.context_processors.navigation",
            ],
        },
    },
]

ASGI_APPLICATION = "portal.asgi.application"

DATABASES = {
    "default": {
        **dj_database_url.parse(env_str("DATABASE_URL"), conn_health_checks=True),
        "ENGINE": "django_tenants.postgresql_backend",
    }
}
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

CACHES = {
    "default": {
        "BACKEND": "django.core.cache.backends.redis.RedisCache",
        "LOCATION": _redis_db(REDIS_URL, 1),
        "KEY_PREFIX": "portal",
        # One key space per tenant schema: a tenant's cached value is never served to another.
        "KEY_FUNCTION": "django_tenants.cache.make_key",
        "REVERSE_KEY_FUNCTION": "django_tenants.cache.reverse_key",
    }
}
CHANNEL_LAYERS = {
    "default": {
        "BACKEND": "channels_redis.core.RedisChannelLayer",
        "CONFIG": {"hosts": [_redis_db(REDIS_URL, 2)], "prefix": "portal-asgi"},
    }
}

# Leases of the live metrics polls (metrics/hub.py): beside the channel layer's keys.
LIVE_REDIS_URL = _redis_db(REDIS_URL, 2)

SESSION_ENGINE = "django.contrib.sessions.backends.db"
LOGIN_URL = "/login/"  # paths, not names: tenant pages use another URLconf
LOGIN_REDIRECT_URL = "/"
LOGOUT_REDIRECT_URL = "/login/"
LOGIN_RATE = env_str("PORTAL_LOGIN_RATE", "10/m")  # per username
LOGIN_IP_RATE = env_str("PORTAL_LOGIN_IP_RATE", "60/m")  # per client address
RATELIMIT_USE_CACHE = "default"
RATELIMIT_VIEW = "portal.views.rate_limited"

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = False
USE_TZ = True

STATIC_URL = "/static/"
STATICFILES_DIRS = [("dist", BASE_DIR / "static" / "dist")]  # static/src holds sources only
STATIC_ROOT = Path(env_str("PORTAL_STATIC_ROOT", str(BASE_DIR / ".build" / "staticfiles")))
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "whitenoise.storage.CompressedManifestStaticFilesStorage"},
}
STATICFILES_FINDERS = [
    "django.contrib.staticfiles.finders.FileSystemFinder",
    "django.contrib.staticfiles.finders.AppDirectoriesFinder",
]
# Served at the site's root by WhiteNoise: /favicon.svg (linked by every page) and /favicon.ico
# (what browsers and tools ask for unprompted), so neither is a 404.
WHITENOISE_ROOT = BASE_DIR / "static" / "root"

# Request body limits, refused with 413 while the body is read, before sign-in (core/asgi_limits.py):
# MAX_REQUEST_BYTES on the routes that take code or object contents (an upload, a draft's files, a
# test call's body, a Secret or ConfigMap: its LARGE_BODY_ROUTES), MAX_FORM_BYTES on every other.
MAX_REQUEST_BYTES = env_int("PORTAL_MAX_REQUEST_BYTES", 10 * 1024 * 1024, minimum=1024)
MAX_FORM_BYTES = env_int(
    "PORTAL_MAX_FORM_BYTES", min(1024 * 1024, MAX_REQUEST_BYTES), minimum=1024, maximum=MAX_REQUEST_BYTES
)
DATA_UPLOAD_MAX_MEMORY_SIZE = MAX_REQUEST_BYTES

REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "tenants.auth.BearerTokenAuthentication",
        "tenants.auth.SessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    "DEFAULT_RENDERER_CLASSES": ["rest_framework.renderers.JSONRenderer"],
    "DEFAULT_PARSER_CLASSES": ["core.api.parsers.JSONParser"],
    "DEFAULT_PAGINATION_CLASS": "core.api.pagination.Pagination",
    "PAGE_SIZE": 50,
    "EXCEPTION_HANDLER": "core.api.errors.exception_handler",
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "UNAUTHENTICATED_USER": "django.contrib.auth.models.AnonymousUser",
}
SPECTACULAR_SETTINGS = {
    "TITLE": "faas-portal API",
    "DESCRIPTION": "Multi-tenant control portal for serverless Python functions (Fission-compatible).",
    "VERSION": "1.0.0",
    "SERVE_INCLUDE_SCHEMA": False,
    "SERVE_URLCONF": "portal.urls_schema",
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    "COMPONENT_SPLIT_REQUEST": True,
    "POSTPROCESSING_HOOKS": [
        "drf_spectacular.hooks.postprocess_schema_enums",  # the default, kept
        "core.api.schema.blank_matches_once",
    ],
    "ENUM_NAME_OVERRIDES": {
        "RoleEnum": "tenants.roles.Role",
        "TenantRoleEnum": "tenants.api.serializers.TENANT_ROLE_CHOICES",
        "HttpMethodEnum": "functions.services.triggers.METHODS",
        "DeploymentStateEnum": "functions.models.DeploymentState",
        "BuildStateEnum": "functions.models.BuildState",
        "TenantStateEnum": "tenants.models.TenantState",
    },
}

CELERY_BROKER_URL = REDIS_URL
CELERY_TASK_SERIALIZER = "json"
CELERY_ACCEPT_CONTENT = ["json"]
CELERY_TASK_IGNORE_RESULT = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_TASK_ALWAYS_EAGER = False
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
CELERY_BROKER_TRANSPORT_OPTIONS = {"visibility_timeout": 3600}
CELERY_BEAT_SCHEDULE_FILENAME = env_str(
    "PORTAL_BEAT_SCHEDULE", str(BASE_DIR / ".data" / "celerybeat-schedule")
)
CELERY_BEAT_SCHEDULE = {
    "tenants-resume-stuck-provisioning": {
        "task": "tenants.resume_stuck",
        "schedule": 60.0,
    },
    "functions-resume-stuck-deployments": {
        "task": "functions.resume_stuck_deployments",
        "schedule": 15.0,
    },
    "releases-drive-rollouts": {
        "task": "releases.drive",
        "schedule": 10.0,
    },
    "audit-prune": {
        "task": "audit.prune",
        "schedule": 3600.0,
    },
}
# Audit records older than this are removed (hourly, and by `manage.py audit prune`); 0 keeps them.
AUDIT_RETENTION_DAYS = env_int("PORTAL_AUDIT_RETENTION_DAYS", 400, minimum=0)
# How long the data plane keeps a function's captured failed requests for replay (1 h to 30 days).
REPLAY_RETENTION_HOURS = env_int("PORTAL_REPLAY_RETENTION_HOURS", 72, minimum=1, maximum=720)

MEDIA_ROOT = Path(env_str("PORTAL_MEDIA_ROOT", str(BASE_DIR / ".data" / "media")))

# The local runtime (PORTAL_BACKEND=local): its control API, router and token.
RUNTIME_URL = env_str("RUNTIME_URL", "http://127.0.0.1:8889")
RUNTIME_ROUTER_URL = env_str("RUNTIME_ROUTER_URL", "http://127.0.0.1:8888")
# Where callers reach functions, as pages show it (a function's URLs and their copy buttons):
# empty means the data plane's router (RUNTIME_ROUTER_URL, or KUBERNETES_ROUTER_URL on Kubernetes),
# set it when callers come through an ingress or a load balancer.
PUBLIC_ROUTER_URL = env_str("PORTAL_PUBLIC_ROUTER_URL", "")
RUNTIME_TOKEN = env_str("RUNTIME_TOKEN", "")
# Where the data plane fetches package archives from the portal (Fission's fetcher does too).
PORTAL_INTERNAL_URL = env_str("PORTAL_INTERNAL_URL", "http://127.0.0.1:8000")
BUILD_TIMEOUT_S = env_int("PORTAL_BUILD_TIMEOUT_S", 300, minimum=10)
# The Python versions of environments (functions/runtimes.py): each version's Fission images
# (JSON objects over these defaults, e.g. '{"3.12": "registry.example/python-env-3.12:1.35"}'), and
# where `make setup` builds one virtualenv per version (python3.12/bin/python...) with the
# packages of Fission's image: builds and the syntax check use it.
PYTHON_RUNTIME_IMAGES = env_str_map("PYTHON_RUNTIME_IMAGES", {
    "3.13": "ghcr.io/fission/python-env:latest",
    "3.12": "ghcr.io/fission/python-env-3.12:latest",
    "3.11": "ghcr.io/fission/python-env-3.11:latest",
})  # fmt: skip
PYTHON_BUILDER_IMAGES = env_str_map("PYTHON_BUILDER_IMAGES", {
    "3.13": "ghcr.io/fission/python-builder:latest",
    "3.12": "ghcr.io/fission/python-builder-3.12:latest",
    "3.11": "ghcr.io/fission/python-builder-3.11:latest",
})  # fmt: skip
# The same variable as the runtime's (runtime/config.py): one place on a machine for both.
PYTHON_RUNTIMES_DIR = Path(env_str("RUNTIME_PYTHON_RUNTIMES_DIR", str(BASE_DIR / ".build" / "runtimes")))
# Builds run pip in a sandbox (functions/build_sandbox.py) as this unprivileged uid; off only on a
# machine that builds nobody else's code.
BUILD_SANDBOX = env_bool("PORTAL_BUILD_SANDBOX", True)
BUILD_UID = env_int("PORTAL_BUILD_UID", 199_999, minimum=1000)

# Tenant namespaces on Kubernetes are "<prefix>-<slug>".
TENANT_NAMESPACE_PREFIX = env_str("PORTAL_NAMESPACE_PREFIX", "faas")

# The kubernetes backend (PORTAL_BACKEND=kubernetes; docs/kubernetes.md). Without KUBECONFIG the
# portal uses its pod's service account (in-cluster configuration).
KUBECONFIG = env_str("KUBECONFIG", "")
KUBERNETES_CONTEXT = env_str("KUBERNETES_CONTEXT", "")
KUBERNETES_TIMEOUT_S = env_int("KUBERNETES_TIMEOUT_S", 10, minimum=1)
KUBERNETES_ROUTER_URL = env_str("KUBERNETES_ROUTER_URL", "http://router.fission.svc.cluster.local")
FISSION_NAMESPACE = env_str("FISSION_NAMESPACE", "fission")
FISSION_ROUTER_NAMESPACE = env_str("FISSION_ROUTER_NAMESPACE", "fission")
KUBERNETES_DNS_NAMESPACE = env_str("KUBERNETES_DNS_NAMESPACE", "kube-system")
KUBERNETES_API_SERVER_CIDRS = env_list("KUBERNETES_API_SERVER_CIDRS", [])
# Where the portal itself runs, so that Fission's fetcher in tenant namespaces may download archives.
PORTAL_K8S_NAMESPACE = env_str("PORTAL_K8S_NAMESPACE", "")
PORTAL_K8S_PORT = env_int("PORTAL_K8S_PORT", 8000, minimum=1)

# Metrics (metrics/): the Prometheus that scrapes the router (the runtime's /metrics, or Fission's).
# Empty: metrics pages say so and the metrics API answers 503.
PROMETHEUS_URL = env_str("PROMETHEUS_URL", "")
# Basic auth for it (make run's asks for it); no username: none sent. The password may be a file.
PROMETHEUS_USERNAME = env_str("PROMETHEUS_USERNAME", "")
PROMETHEUS_PASSWORD = env_str("PROMETHEUS_PASSWORD", "")
PROMETHEUS_TIMEOUT_S = env_int("PROMETHEUS_TIMEOUT_S", 5, minimum=1)
# The bearer token Prometheus scrapes the portal's own /metrics with; empty: no /metrics at all.
PORTAL_METRICS_TOKEN = env_str("PORTAL_METRICS_TOKEN", "")
# The scrape job of the router (Fission's, or the runtime): only its series count. Empty: any.
METRICS_JOB = env_str("METRICS_JOB", "")
# How often Prometheus scrapes: charts never step finer than this.
METRICS_SCRAPE_INTERVAL_S = env_int("METRICS_SCRAPE_INTERVAL_S", 5, minimum=1)

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s %(message)s"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "root": {"handlers": ["console"], "level": env_str("PORTAL_LOG_LEVEL", "INFO")},
    "loggers": {"django.db.backends": {"level": "WARNING"}},
}
