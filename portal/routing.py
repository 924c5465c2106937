from django.urls import re_path

from functions.consumers import FunctionEventsConsumer
from metrics.consumers import LiveConsumer
from tenants.consumers import PlatformAuditConsumer, TenantAuditConsumer, TenantEventsConsumer

websocket_urlpatterns = [
    re_path(r"^t/(?P<tenant>[a-z0-9-]+)/ws/events/$", TenantEventsConsumer.as_asgi()),
    re_path(r"^t/(?P<tenant>[a-z0-9-]+)/ws/live/$", LiveConsumer.as_asgi()),
    re_path(r"^t/(?P<tenant>[a-z0-9-]+)/ws/audit/$", TenantAuditConsumer.as_asgi()),
    # Outside any tenant: the gate (tenants/ws.py) resolves no tenant, the consumer checks the
    # platform admin itself.
    re_path(r"^ws/platform/audit/$", PlatformAuditConsumer.as_asgi()),
    re_path(
        r"^t/(?P<tenant>[a-z0-9-]+)/ws/functions/(?P<name>[a-z0-9-]+)/$", FunctionEventsConsumer.as_asgi()
    ),
]
