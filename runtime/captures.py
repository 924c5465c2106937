"""Capture of failed requests, for replay (docs/replay-data-plane.md).

A trigger opts in with the annotation ``CAPTURE_ANNOTATION`` (``faas-portal.io/capture``), whose
JSON value ``CapturePolicy.from_annotation`` reads::

    {"function": "orders", "codes": [500, "4xx"], "max_requests": 50, "max_body_bytes": 65536,
     "retention_s": 259200}

When the router's answer to a call on that trigger has a status the policy matches (asynchronous,
queued calls are not captured), the request and its answer go, redacted (``redact_headers``,
``redact_target``, ``redact_body``: the rule is ``is_secret``), to the Redis stream
``captures_stream(namespace, function)``: one per portal function of a namespace, trimmed to its
newest ``max_requests`` entries exactly and to ``retention_s`` by age (on every write; the key
itself expires ``retention_s`` after the last one). Entry fields (all strings): ``time`` (epoch
seconds the call reached the router), ``expires`` (epoch seconds past which a reader ignores it),
``fission_function`` (the version that served it, ``f-v2``), ``trigger_path``, ``method``,
``path`` (path and query as the function saw them), ``headers`` (JSON ``[[name, value], ...]``),
``body`` (base64, at most ``max_body_bytes``), ``body_truncated`` ("1"/"0"), ``status``,
``response_headers``, ``response_body``, ``response_truncated``, ``duration_ms``, ``request_id``.

Capturing never slows a call nor fails one: redacted entries wait in a queue bounded by count and
by bytes (beyond it they are dropped, and counted) for a background writer, which retries Redis a
few times and then gives up on the batch.
"""

from __future__ import annotations

import base64
import json
import logging
import re
import time
from dataclasses import dataclass
from typing import Any, cast
from urllib.parse import unquote_plus

from runtime.streams import StreamWriter

log = logging.getLogger(__name__)
CAPTURE_ANNOTATION = "faas-portal.io/capture"
STREAM_PREFIX = "runtime:captures:"
REDACTED = "[redacted]"
QUEUE_LIMIT = 1000  # entries waiting for Redis, all namespaces together
QUEUE_BYTES = 64 * 1024 * 1024  # and the bytes of their bodies
MAX_CODES = 50
PARSE_LIMIT = 2 * 1024 * 1024  # form and JSON bodies larger than this are not parsed (see redact_body)
MAX_RETENTION_S = 30 * 24 * 3600
_DNS_LABEL = re.compile(r"[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?")
_CLASS = re.compile(r"[1-5]xx")
_CODE = re.compile(r"[1-5][0-9]{2}")
# Headers that are secrets whatever their name says, and words that make any name one.
SECRET_HEADERS = frozenset({
    "authorization", "proxy-authorization", "cookie", "set-cookie", "x-api-key", "x-auth-token",
    "x-csrf-token", "x-xsrf-token",
})  # fmt: skip
SECRET_WORDS = ("token", "secret", "pass", "pwd", "key", "session", "signature", "credential",
                "auth")  # fmt: skip
# Headers naming the function and the request: the replay's call sets its own.
_CALL_HEADERS = (b"x-fission-request-id", b"x-fission-function-")
_FULL_URL = b"x-fission-full-url"


def captures_stream(namespace: str, function: str) -> str:
    """The stream of the captured requests of portal function ``function`` of ``namespace``."""
    return f"{STREAM_PREFIX}{namespace}:{function}"


@dataclass(frozen=True)
class CapturePolicy:
    """Which answers of a trigger's calls are captured and how many are kept, how large, how long.

    ``codes``: statuses (100-599) or classes ("1xx".."5xx"); ``max_requests`` 1-1000;
    ``max_body_bytes`` 0-1 MiB (each of the request's and the answer's bodies); ``retention_s``
    60 s to 30 days. Raises ValueError naming the field that is out of bounds."""

    function: str
    codes: tuple[int | str, ...] = ("5xx",)
    max_requests: int = 50
    max_body_bytes: int = 65536
    retention_s: int = 259200

    def __post_init__(self) -> None:
        if not isinstance(self.function, str) or not _DNS_LABEL.fullmatch(self.function):
            raise ValueError("function must be a portal function's name (a DNS-1123 label)")
        object.__setattr__(self, "codes", _codes(self.codes))
        for name, low, high in (("max_requests", 1, 1000), ("max_body_bytes", 0, 1024 * 1024),
                                ("retention_s", 60, MAX_RETENTION_S)):  # fmt: skip
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or not low <= value <= high:
                raise ValueError(f"{name} must be a whole number from {low} to {high}")

    def matches(self, status: int) -> bool:
        return any(status == code if isinstance(code, int) else status // 100 == int(code[0])
                   for code in self.codes)  # fmt: skip

    def to_annotation(self) -> str:
        """The annotation's value (compact JSON), which ``from_annotation`` reads back."""
        fields = {"function": self.function, "codes": list(self.codes), "max_requests": self.max_requests,
                  "max_body_bytes": self.max_body_bytes, "retention_s": self.retention_s}  # fmt: skip
        return json.dumps(fields, separators=(",", ":"))

    @classmethod
    def from_annotation(cls, value: str) -> CapturePolicy:
        """The policy an annotation's value states; ValueError when it states none."""
        try:
            raw = json.loads(value)
        except (TypeError, ValueError):
            raise ValueError("the capture annotation is not JSON") from None
        if not isinstance(raw, dict) or set(raw) - {"function", "codes", "max_requests", "max_body_bytes",
                                                    "retention_s"}:  # fmt: skip
            raise ValueError("the capture annotation must be an object of the policy's fields only")
        if "function" not in raw:
            raise ValueError("the capture annotation must name the function")
        if "codes" in raw and not isinstance(raw["codes"], list):
            raise ValueError("codes must be a list")
        return cls(**{**raw, **({"codes": tuple(raw["codes"])} if "codes" in raw else {})})


def _codes(codes: Any) -> tuple[int | str, ...]:
    if isinstance(codes, str | bytes) or not isinstance(codes, list | tuple) or not codes:
        raise ValueError('codes must be a non-empty list of statuses (500) or classes ("5xx")')
    if len(codes) > MAX_CODES:
        raise ValueError(f"codes may hold at most {MAX_CODES} entries")
    found: list[int | str] = []
    for code in codes:
        if isinstance(code, str) and _CLASS.fullmatch(code.lower()):
            code = code.lower()
        elif isinstance(code, str) and _CODE.fullmatch(code):
            code = int(code)
        elif not isinstance(code, int) or isinstance(code, bool) or not 100 <= code <= 599:
            raise ValueError(f"codes: {code!r} is not a status from 100 to 599 nor a class from 1xx to 5xx")
        if code not in found:
            found.append(code)
    return tuple(found)


# --- redaction: the one rule, applied before anything is queued --------------------------------


def is_secret(name: str) -> bool:
    """Whether a header, query parameter, form field or JSON key of this name holds a secret,
    whose value is then stored as ``REDACTED``. The rule (case-insensitive):

    - the headers Authorization, Proxy-Authorization, Cookie, Set-Cookie, X-Api-Key,
      X-Auth-Token, X-Csrf-Token and X-Xsrf-Token;
    - any name containing token, secret, pass, pwd, key, session, signature, credential or auth
      (so also X-Amz-Security-Token, password, passphrase, client_secret, api_key, private_key,
      x-functions-key, sessionid, oauth_state), an underscore counting as a hyphen; a name that
      merely contains one of them (monkey) is redacted too: over-redacting is the safe side.

    Any other header whose value is a URL (Referer, Location) has its query redacted as the
    path's.

    The same rule covers request and response headers, the query string (of the path and of
    X-Fission-Full-Url), and the fields of an ``application/x-www-form-urlencoded`` or JSON body.
    """
    lower = name.lower().replace("_", "-")
    return lower in SECRET_HEADERS or any(word in lower for word in SECRET_WORDS)


def redact_headers(headers: list[tuple[bytes, bytes]]) -> list[list[str]]:
    """``[[name, value], ...]`` (Latin-1 text) with secret values ``REDACTED``; the headers that
    name the function and the request (``X-Fission-Request-Id``, ``X-Fission-Function-*``) are
    left out: a replay's call sets its own. The route's ``X-Fission-Params-*`` stay (they are
    part of what the function saw and cannot be worked out again); ``X-Fission-Full-Url``'s query
    is redacted as the path's."""
    kept = []
    for raw_name, raw_value in headers:
        lower = raw_name.lower()
        if lower.startswith(_CALL_HEADERS):
            continue
        name, value = raw_name.decode("latin-1"), raw_value.decode("latin-1")
        if is_secret(name):
            value = REDACTED
        elif lower == _FULL_URL or value.startswith(("http://", "https://", "/")):
            value = redact_target(value)
        kept.append([name, value])
    return kept


def redact_target(target: str) -> str:
    """A path and query with the value of each secret query parameter ``REDACTED`` (the rest as
    it came, byte for byte)."""
    path, mark, query = target.partition("?")
    return path + mark + _redact_form(query) if mark else target


def _redact_form(query: str) -> str:
    parts = []
    for part in query.split("&"):
        name = part.partition("=")[0]
        parts.append(name + "=" + REDACTED if is_secret(unquote_plus(name)) else part)
    return "&".join(parts)


def redact_body(headers: list[tuple[bytes, bytes]], body: bytes) -> bytes:
    """A multipart body is not kept (b""): its parts are not parsed on the router's loop.
    A form or JSON body (by its Content-Type) with the values of its secret fields (at any
    depth of the JSON) ``REDACTED``; any other body, or one that does not parse, as it came. A form
    or JSON body of more than ``PARSE_LIMIT`` bytes is cut to that, or to nothing when it mentions
    any secret's name."""
    kind = next((v for k, v in headers if k.lower() == b"content-type"), b"").split(b";")[0].strip().lower()
    if kind.startswith(b"multipart/"):
        return b""  # its parts are not parsed here: not kept at all (the entry says it was cut)
    form = kind == b"application/x-www-form-urlencoded"
    if (form or kind == b"application/json" or kind.endswith(b"+json")) and len(body) > PARSE_LIMIT:
        # Too large to parse on the router's loop: its head is kept only if it names no secret.
        head = body[:PARSE_LIMIT]
        return b"" if _mentions_secret(head.decode("latin-1")) else head
    if form:
        return _redact_form(body.decode("latin-1")).encode("latin-1")
    if kind == b"application/json" or kind.endswith(b"+json"):
        try:
            document = json.loads(body)
        except ValueError:
            return body
        redacted = _redact_json(document)
        return body if redacted == document else json.dumps(redacted).encode()
    return body


def _mentions_secret(text: str) -> bool:
    """Whether ``is_secret`` could hold for any name within ``text``."""
    lower = text.lower().replace("_", "-")
    return any(word in lower for word in (*SECRET_WORDS, "cookie"))


def _redact_json(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: REDACTED if is_secret(str(k)) else _redact_json(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_redact_json(item) for item in value]
    return value


# --- the recorder ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Captured:
    """One call to capture, as the router saw it (nothing redacted yet)."""

    namespace: str
    policy: CapturePolicy
    fission_function: str
    trigger_path: str
    method: str
    target: bytes  # path and query as the function saw them
    headers: list[tuple[bytes, bytes]]  # as sent to the function
    body: bytes
    status: int
    response_headers: list[tuple[bytes, bytes]]
    response_body: bytes
    started: float  # epoch seconds
    duration_ms: float
    request_id: str


def _dropped(sent: bytes, kept: bytes) -> bool:
    """A body not kept at all (a multipart one, or too large to check): replay cannot send it."""
    return bool(sent) and not kept


def entry(call: Captured) -> dict[str, str]:
    """The stream entry of a call: redacted, bodies cut to the policy's size."""
    limit = call.policy.max_body_bytes
    body = redact_body(call.headers, call.body)
    response_body = redact_body(call.response_headers, call.response_body)
    response_headers = [(k, v) for k, v in call.response_headers if not k.lower().startswith(b"x-fission-")]
    return {
        "time": f"{call.started:.6f}",
        "expires": f"{time.time() + call.policy.retention_s:.3f}",
        "fission_function": call.fission_function,
        "trigger_path": call.trigger_path,
        "method": call.method,
        "path": redact_target(call.target.decode("latin-1")),
        "headers": json.dumps(redact_headers(call.headers)),
        "body": base64.b64encode(body[:limit]).decode(),
        "body_truncated": "1"
        if len(body) > limit or len(call.body) > PARSE_LIMIT or _dropped(call.body, body)
        else "0",
        "status": str(call.status),
        "response_headers": json.dumps(redact_headers(response_headers)),
        "response_body": base64.b64encode(response_body[:limit]).decode(),
        "response_truncated": "1"
        if len(response_body) > limit or len(call.response_body) > PARSE_LIMIT
        else "0",
        "duration_ms": f"{call.duration_ms:.3f}",
        "request_id": call.request_id,
    }


Pending = tuple[str, CapturePolicy, dict[str, str]]  # stream, policy, entry


class CaptureRecorder(StreamWriter[Pending]):
    batch_size = 100
    what = "captured requests"

    def __init__(self, redis_url: str | None, *, queue_limit: int = QUEUE_LIMIT,
                 queue_bytes: int = QUEUE_BYTES) -> None:  # fmt: skip
        super().__init__(redis_url)
        self.queue_limit, self.queue_bytes = queue_limit, queue_bytes
        self.queued_bytes = 0

    def record(self, call: Captured) -> None:
        """Queue the call's redacted entry (never blocks nor raises; dropped, and counted, when the
        queue is full or there is no Redis)."""
        if self.client is None:
            return
        if self.queue.qsize() >= self.queue_limit or self.queued_bytes >= self.queue_bytes:
            self.dropped += 1
            if self.dropped % 100 == 1:
                log.warning("capture queue full: %d captured requests dropped so far", self.dropped)
            return
        try:
            fields = entry(call)
        except Exception:  # a capture must never fail the call it records
            log.exception("could not capture a request of %s/%s", call.namespace, call.fission_function)
            return
        self.queued_bytes += _size(fields)
        self.queue.put_nowait((captures_stream(call.namespace, call.policy.function), call.policy, fields))

    def _add(self, pipe: Any, batch: list[Pending]) -> None:
        latest = {stream: policy for stream, policy, _ in batch}  # a stream's newest policy trims it
        for stream, policy, fields in batch:
            pipe.xadd(stream, cast(dict[Any, Any], fields), maxlen=policy.max_requests, approximate=False)
        now = time.time()
        for stream, policy in latest.items():
            pipe.xtrim(stream, minid=int((now - policy.retention_s) * 1000), approximate=False)
            pipe.expire(stream, policy.retention_s)

    def _left(self, batch: list[Pending]) -> None:
        self.queued_bytes -= sum(_size(fields) for _, _, fields in batch)


def _size(fields: dict[str, str]) -> int:
    return (
        len(fields["body"])
        + len(fields["response_body"])
        + len(fields["headers"])
        + len(fields["response_headers"])
    )
