from django.urls import re_path

from tenants.consumers import TenantEventsConsumer

websocket_urlpatterns = [
    re_path(r"^t/(?P<tenant>[a-z0-9-]+)/ws/events/$", TenantEventsConsumer.as_asgi()),
]
