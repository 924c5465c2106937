from django.urls import re_path

from functions.consumers import FunctionEventsConsumer
from metrics.consumers import LiveConsumer
from tenants.consumers import TenantEventsConsumer

websocket_urlpatterns = [
    re_path(r"^t/(?P<tenant>[a-z0-9-]+)/ws/events/$", TenantEventsConsumer.as_asgi()),
    re_path(r"^t/(?P<tenant>[a-z0-9-]+)/ws/live/$", LiveConsumer.as_asgi()),
    re_path(
        r"^t/(?P<tenant>[a-z0-9-]+)/ws/functions/(?P<name>[a-z0-9-]+)/$", FunctionEventsConsumer.as_asgi()
    ),
]
