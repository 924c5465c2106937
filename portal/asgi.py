"""ASGI entry point: Django for HTTP (behind the request body limit), Channels for websockets."""

from __future__ import annotations

import os

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "portal.settings")
django_asgi_app = get_asgi_application()

from channels.auth import AuthMiddlewareStack  # noqa: E402 - needs apps loaded
from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402

from core.asgi_limits import RequestBodyLimit  # noqa: E402
from portal.routing import websocket_urlpatterns  # noqa: E402
from tenants.ws import WebsocketGate  # noqa: E402

application = ProtocolTypeRouter(
    {
        # Outside Django: its handler reads the whole body before any of its middleware runs.
        "http": RequestBodyLimit(django_asgi_app),
        "websocket": AuthMiddlewareStack(WebsocketGate(URLRouter(websocket_urlpatterns))),
    }
)
