"""The HTTP client the data-plane backends share: one connection pool per process.

A new ``httpx.Client`` per request cost about 20 ms here (each builds an SSL context), more than
the call it makes; a pooled one also keeps connections to the runtime and router alive. It keeps
no cookies: it carries many tenants' calls, and a function's ``Set-Cookie`` must never ride
along on the next call, whoever makes it.
"""

from __future__ import annotations

import os
import threading
from http.cookiejar import CookieJar, DefaultCookiePolicy

import httpx

_clients: dict[int, httpx.Client] = {}
_lock = threading.Lock()


class _NoCookies(DefaultCookiePolicy):
    def set_ok(self, cookie: object, request: object) -> bool:
        return False

    def return_ok(self, cookie: object, request: object) -> bool:
        return False


def shared_client() -> httpx.Client:
    """This process's client (a forked worker makes its own; threads share it: httpx clients
    are thread-safe)."""
    pid = os.getpid()
    client = _clients.get(pid)
    if client is None:
        with _lock:
            client = _clients.get(pid)
            if client is None:
                client = _clients[pid] = httpx.Client(cookies=CookieJar(policy=_NoCookies()))
    return client
