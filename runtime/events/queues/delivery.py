"""One message's trip through its function, as Fission's KEDA connectors make it
(fission/keda-connectors: ``common/util.go`` ``HandleHTTPRequest`` and each connector's ``main.go``).

The call. The message body is POSTed to the function (target "/", through ``call_function`` like
every other caller) with the headers the connector of its broker sets:

- NATS JetStream: ``Topic``, ``RespTopic``, ``ErrorTopic``, ``Content-Type``, ``Source-Name``; then
  the message's own headers, which replace those of the same name (``maps.Copy`` in the connector);
- RabbitMQ and Redis: ``KEDA-Topic``, ``KEDA-Response-Topic``, ``KEDA-Error-Topic``,
  ``Content-Type``, ``KEDA-Source-Name``;

with the values ``spec.topic``, ``spec.respTopic``, ``spec.errorTopic`` (sent empty when unset, as
Fission does), ``spec.contentType`` and the trigger's name (Fission's ``SOURCE_NAME``). On the wire
the names are as Go's ``Header.Add`` writes them (``Resptopic``, ``Keda-Topic``). No connector sends
the retry count, so neither does this. ``call_function`` adds ``X-Fission-Request-ID`` and the
function's ``X-Fission-Function-*`` headers, as Fission's router does; ``X-Fission-*`` headers of a
NATS message are dropped.

Request ids: one new id per message, shared by all its attempts, so that a message's retries and
everything its function printed for them are found under one id (the runtime log, the tenant's log
stream, the trigger's ``lastRequestId``).

Attempts: a non-2xx answer is retried, 1 + ``maxRetries`` calls in all (the connector's ``attempt <=
MaxRetries`` loop), with a short exponential backoff (50 ms doubling, at most 1 s; the connector
retries at once). A 429 (the function's or the namespace's concurrency, or the function itself
asking to slow down) is back-pressure, not a failure: it is retried with the same backoff without
using up an attempt and never sends the message to the error topic.

Outcome: a 2xx answer's body goes to ``respTopic`` (when set); after the last failed attempt, the
error goes to ``errorTopic`` (when set) as the JSON the connectors publish there, Go's
``json.Marshal`` of ``FunctionErrorDetails``: the request (``Message``: the body, ``HTTPEndpoint``:
the function's ``/fission-function/...`` path as Fission's router names it, ``Headers``) and the
response (``ResponseBody``, ``StatusCode``, ``ErrorString``: "request returned failure: <code>.
http_endpoint: <endpoint>, source: <trigger>").
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import re
import time
from dataclasses import dataclass

from runtime import metrics
from runtime.executor import Executor
from runtime.http import Response, request_id_or_new
from runtime.invoke import call_function
from runtime.logs import LogCollector
from runtime.objects import MessageQueueTrigger

from .base import Status

log = logging.getLogger(__name__)
# The header names each connector sets: topic, response topic, error topic, content type, source.
NATS_HEADERS = ("Topic", "RespTopic", "ErrorTopic", "Content-Type", "Source-Name")
KEDA_HEADERS = ("KEDA-Topic", "KEDA-Response-Topic", "KEDA-Error-Topic", "Content-Type", "KEDA-Source-Name")
RETRY_BASE_S = 0.05
RETRY_CAP_S = 1.0
_TOKEN = re.compile(r"^[!#$%&'*+.^_`|~0-9A-Za-z-]+$")
_BREAK = re.compile(r"[\r\n\x00]")
_GO_ESCAPES = {"<": "\\u003c", ">": "\\u003e", "&": "\\u0026", "\u2028": "\\u2028", "\u2029": "\\u2029"}


class Stopped(Exception):
    """The consumer stopped while the message waited to be retried: it is given back unsettled."""


@dataclass(frozen=True)
class Outcome:
    """What becomes of a message: ``body`` goes to ``topic`` ("" for none), then it is acknowledged."""

    ok: bool
    topic: str
    body: bytes
    request_id: str
    attempts: int
    status: int


def backoff(attempt: int) -> float:
    return float(min(RETRY_CAP_S, RETRY_BASE_S * 2 ** (attempt - 1)))


def canonical(name: str) -> str:
    """Go's ``CanonicalMIMEHeaderKey``: ``KEDA-Topic`` -> ``Keda-Topic``."""
    return "-".join(part[:1].upper() + part[1:].lower() for part in name.split("-"))


def function_path(namespace: str, function: str) -> str:
    """Fission's ``UrlForFunction``: the router's internal path of a function."""
    return (
        f"/fission-function/{function}"
        if namespace == "default"
        else f"/fission-function/{namespace}/{function}"
    )


def connector_headers(names: tuple[str, ...], trigger: MessageQueueTrigger,
                      message_headers: dict[str, str]) -> dict[str, str]:  # fmt: skip
    """The connector's header map (names as the connector writes them), the message's own last."""
    topic, response, error, content_type, source = names
    headers = {
        topic: trigger.topic, response: trigger.resp_topic, error: trigger.error_topic,
        content_type: trigger.content_type, source: trigger.meta.name,
    }  # fmt: skip
    for name, value in message_headers.items():
        # A name or value HTTP cannot carry is dropped, as a caller's X-Fission-* is.
        if _TOKEN.match(name) and not name.lower().startswith("x-fission-") and not _BREAK.search(value):
            headers[name] = value
    return headers


def error_details(body: bytes, endpoint: str, headers: dict[str, str], response: Response | None,
                  source: str) -> bytes:  # fmt: skip
    """What the connectors publish to the error topic, as Go's ``json.Marshal`` writes it."""
    if response is None:
        status, response_body = 500, ""
        error = ("every function invocation retry failed; final retry gave empty response. "
                 f"http_endpoint: {endpoint}, source: {source}")  # fmt: skip
    else:
        status, response_body = response.status, response.body.decode("utf-8", "replace")
        error = f"request returned failure: {status}. http_endpoint: {endpoint}, source: {source}"
    details = {
        "FunctionHTTPRequest": {
            "Message": body.decode("utf-8", "replace"), "HTTPEndpoint": endpoint,
            "Headers": {name: [headers[name]] for name in sorted(headers)},
        },
        "FunctionHTTPResponse": {"ResponseBody": response_body, "StatusCode": status, "ErrorString": error},
    }  # fmt: skip
    text = json.dumps(details, ensure_ascii=False, separators=(",", ":"))
    for char, escape in _GO_ESCAPES.items():
        text = text.replace(char, escape)
    return text.encode()


class Delivery:
    """Calls a trigger's function for its messages (module docstring), recording what happens in
    the trigger's ``Status`` and metrics."""

    def __init__(self, executor: Executor, trigger: MessageQueueTrigger, names: tuple[str, ...],
                 status: Status, stopping: asyncio.Event,
                 logs: LogCollector | None = None) -> None:  # fmt: skip
        self.executor = executor
        self.trigger = trigger
        self.names = names
        self.status = status
        self.stopping = stopping
        self.logs = logs
        self.endpoint = function_path(trigger.meta.namespace, trigger.function)

    def event(self, outcome: str) -> None:
        trigger = self.trigger
        metrics.observe_event(trigger.meta.namespace, "mq", trigger.meta.name, trigger.function, outcome)

    async def process(self, body: bytes, message_headers: dict[str, str]) -> Outcome:
        """Call the function until it answers 2xx or every attempt failed. Raises Stopped when
        the consumer stops while the message waits for its next attempt."""
        request_id = request_id_or_new(None)
        self.status.last_request_id = request_id.decode()
        headers = connector_headers(self.names, self.trigger, message_headers)
        wire = [(canonical(name).encode(), value.encode()) for name, value in headers.items()]
        attempts = waits = 0
        while True:
            response = await self._call(wire, body, request_id)
            status = 0 if response is None else response.status
            if response is not None and 200 <= status < 300:
                return self._answered(response, request_id, attempts + 1)
            if status == 429:
                waits += 1
                if waits == 1:  # shown, so that a function that always says so explains a stalled trigger
                    self.status.error(f"message {request_id.decode()}: the function answered 429; waiting")
                await self._retry(request_id, f"429 from the function (attempt {attempts + 1} waits)", waits)
                continue
            attempts += 1
            if attempts > self.trigger.max_retries:
                return self._failed(body, headers, response, request_id, attempts)
            await self._retry(request_id, f"attempt {attempts} answered {status or 'nothing'}", attempts)

    async def _call(self, wire: list[tuple[bytes, bytes]], body: bytes, request_id: bytes) -> Response | None:
        namespace, function = self.trigger.meta.namespace, self.trigger.function
        started = time.perf_counter()
        try:
            response = await call_function(
                self.executor, namespace, function, "POST", b"/", wire, body, request_id
            )
        except Exception:  # call_function answers every refusal: this is a bug, and must not lose the message
            log.exception("mq %s/%s: calling %s failed", namespace, self.trigger.meta.name, function)
            return None
        seconds = time.perf_counter() - started
        metrics.observe_call(
            namespace, function, f"/fission-function/{function}", "POST", response.status, seconds
        )
        return response

    async def _retry(self, request_id: bytes, why: str, attempt: int) -> None:
        trigger = self.trigger
        log.debug("mq %s/%s: message %s: %s, retrying", trigger.meta.namespace, trigger.meta.name,
                  request_id.decode(), why)  # fmt: skip
        self.event("retried")
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.stopping.wait(), backoff(attempt))
        if self.stopping.is_set():
            raise Stopped()

    def _answered(self, response: Response, request_id: bytes, attempts: int) -> Outcome:
        return Outcome(
            True, self.trigger.resp_topic, response.body, request_id.decode(), attempts, response.status
        )

    def _failed(self, body: bytes, headers: dict[str, str], response: Response | None, request_id: bytes,
                attempts: int) -> Outcome:  # fmt: skip
        trigger, rid = self.trigger, request_id.decode()
        status = 0 if response is None else response.status
        where = f"for error topic {trigger.error_topic!r}" if trigger.error_topic else "no error topic set"
        message = f"message {rid} failed after {attempts} attempts (last answer {status or 'none'}): {where}"
        self.status.error(message)
        log.info("mq %s/%s: %s", trigger.meta.namespace, trigger.meta.name, message)
        self._note(rid, f"message-queue trigger {trigger.meta.name}: {message}")
        error = error_details(body, self.endpoint, headers, response, trigger.meta.name)
        return Outcome(False, trigger.error_topic, error, rid, attempts, status)

    def _note(self, request_id: str, message: str) -> None:
        """A line in the tenant's log stream under the message's request id."""
        deployable = self.executor.deployables.get((self.trigger.meta.namespace, self.trigger.function))
        if self.logs is not None and deployable is not None:
            meta = deployable.function.meta
            self.logs.note((meta.namespace, meta.name, meta.uid), request_id, message)

    def settled(self, outcome: Outcome) -> None:
        """The outcome is stored and the message acknowledged: count it (once, though a message
        whose outcome could not be stored is processed again)."""
        self.status.messages += 1
        if outcome.ok:
            self.event("delivered")
            return
        self.status.failures += 1
        self.event("failed")
        if outcome.topic:
            self.event("error_topic")
