"""``manage.py async_dispatcher``: run asynchronous invocations on the kubernetes backend.

Fission's router has no queue, so on Kubernetes the portal keeps the queue (its Redis) and this
process calls the functions through Fission's router, with the local runtime's semantics
(dataplane/backends/k8s_async.py). Run exactly one: a starting dispatcher claims the events
another one is calling. SIGTERM or SIGINT stop it; calls still running then stay queued and are
made again by the next start (delivery is at least once).
"""

from __future__ import annotations

import asyncio
import signal
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser

from dataplane.backends import k8s_async, kube_adapter


class Command(BaseCommand):
    help = "Run the portal's asynchronous invocations through Fission's router (kubernetes backend only)."
    requires_system_checks: list[str] = []  # no database: the queue is in Redis, the functions in the cluster

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--backoff-ms", type=int, default=1000, help="Before a first retry (the second waits twice that)."
        )
        parser.add_argument(
            "--concurrency", type=int, default=16, help="Events called at once (half at most per namespace)."
        )

    def handle(self, *args: Any, **options: Any) -> None:
        if settings.PORTAL_BACKEND != "kubernetes":
            raise CommandError("only for PORTAL_BACKEND=kubernetes: the local runtime runs its own events")
        if options["backoff_ms"] < 0 or options["concurrency"] < 1:
            raise CommandError("--backoff-ms must be >= 0 and --concurrency >= 1")
        asyncio.run(self._serve(options["backoff_ms"] / 1000, options["concurrency"]))

    async def _serve(self, backoff: float, concurrency: int) -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, stop.set)
        router = settings.KUBERNETES_ROUTER_URL
        await k8s_async.serve(kube_adapter(), router, stop, backoff=backoff, concurrency=concurrency)
