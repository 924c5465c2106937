"""One way into a function for every source of calls: the router's HTTP requests, time triggers,
message-queue messages and asynchronous invocations all call ``call_function`` (the router first
tries ``call_now``, its warm path).

It admits the call against the namespace's concurrency quota, finds the deployed function, adds
the headers Fission's router sends about the function and the request, and turns the executor's
refusals into the answers a caller of Fission's router gets (429, 502), so an event source sees
exactly what an HTTP caller would.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable

from runtime.executor import Executor, TooManyRequests, Unavailable
from runtime.http import REQUEST_ID_HEADER, UNAVAILABLE, Response
from runtime.objects import Meta
from runtime.quota import QuotaExhausted

log = logging.getLogger(__name__)
TEXT = [(b"content-type", b"text/plain; charset=utf-8")]
# Fission's names, as Go's net/http writes them (each word capitalised, the rest lower case).
FUNCTION_UID = b"X-Fission-Function-Uid"
FUNCTION_NAME = b"X-Fission-Function-Name"
FUNCTION_NAMESPACE = b"X-Fission-Function-Namespace"
FUNCTION_RESOURCE_VERSION = b"X-Fission-Function-Resourceversion"

Headers = list[tuple[bytes, bytes]]
CONCURRENCY_EXHAUSTED = b"too many requests: the namespace's concurrency quota is exhausted\n"


def function_headers(meta: Meta, request_id: bytes) -> Headers:
    return [(REQUEST_ID_HEADER, request_id), *_about(meta)]


@functools.lru_cache(maxsize=4096)
def _about(meta: Meta) -> Headers:
    """The headers naming the function, made once per version of it (not per call)."""
    return [
        (FUNCTION_UID, meta.uid.encode()),
        (FUNCTION_NAME, meta.name.encode()),
        (FUNCTION_NAMESPACE, meta.namespace.encode()),
        (FUNCTION_RESOURCE_VERSION, meta.resource_version.encode()),
    ]


async def call_function(executor: Executor, namespace: str, function: str, method: str, target: bytes,
                        headers: Headers, body: bytes, request_id: bytes) -> Response:  # fmt: skip
    """Call ``namespace/function`` with ``target`` (path and query) as the function sees it.

    ``headers`` must hold no ``X-Fission-*`` header of a caller: this adds the function's and the
    request id. Never raises for the function's or the quota's sake: a refusal is an answer."""
    quotas = executor.quotas
    if not quotas.enter(namespace):
        return Response(429, TEXT, CONCURRENCY_EXHAUSTED)
    try:
        deployable = executor.deployables.get((namespace, function))
        if deployable is None:
            log.warning("%s/%s unavailable: the function is not deployed", namespace, function)
            return Response(502, TEXT, UNAVAILABLE)
        headers = headers + function_headers(deployable.function.meta, request_id)
        return await executor.call(
            (namespace, function), method, target, headers, body, request_id=request_id.decode()
        )
    except QuotaExhausted as exc:
        message = f"too many requests: the namespace's {exc.resource} quota is exhausted\n"
        return Response(429, TEXT, message.encode())
    except TooManyRequests:
        return Response(429, TEXT, b"too many requests: the function is at its concurrency limit\n")
    except Unavailable as exc:
        log.warning("%s/%s unavailable: %s", namespace, function, exc)
        return Response(502, TEXT, UNAVAILABLE)
    finally:
        quotas.leave(namespace)


def call_now(executor: Executor, namespace: str, function: str, method: str, target: bytes, headers: Headers,
             body: bytes, request_id: bytes, done: Callable[[Response], None]) -> bool:  # fmt: skip
    """``call_function``'s warm path (``Executor.call_now``), with no task and no future: True
    when the call is answered at once or sent to a free worker, ``done`` getting the answer
    ``call_function`` would return; False, having changed nothing, when it needs more (the
    function is not deployed, or no worker of it is free with a connection open): then
    ``call_function``."""
    deployable = executor.deployables.get((namespace, function))
    if deployable is None:
        return False
    quotas = executor.quotas
    if not quotas.enter(namespace):
        done(Response(429, TEXT, CONCURRENCY_EXHAUSTED))
        return True

    def answered(response: Response) -> None:
        quotas.leave(namespace)
        done(response)

    headers = headers + function_headers(deployable.function.meta, request_id)
    if executor.call_now(deployable, method, target, headers, body, answered):
        return True
    quotas.leave(namespace)
    return False
