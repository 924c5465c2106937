"""The logs page as a person reads it: lines grouped by request in the order written (a
traceback top to bottom), stderr marked, whole request ids that link to their request, prefix
search, "since" and "until" as moments with their offset, quick ranges, and bad values a 400 in
words; every search kept to the tenant's own lines, on the page and on the live socket."""

from __future__ import annotations

import re
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta, timezone
from html import unescape
from typing import Any
from urllib.parse import quote

import pytest
import redis
from asgiref.sync import sync_to_async
from channels.testing.websocket import WebsocketCommunicator
from django.conf import settings
from django.utils import timezone as django_timezone
from django_tenants.utils import schema_context

from dataplane.backends.base import LogQuery, LogRecord
from functions.models import Function
from metrics.logs import group_by_request
from portal.asgi import application
from runtime.logs import stream_name
from tenants.models import Tenant

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("no_prometheus")]

TRACEBACK = [
    "Traceback (most recent call last):",
    '  File "/userfunc/main.py", line 4, in main',
    '    raise ValueError("it broke")',
    "ValueError: it broke",
]


class Store:
    """The runtime's log streams, written as its collector does (runtime/logs.py), each record
    appended at its own time (the stream id), so time bounds select as they do for real ones."""

    def __init__(self) -> None:
        self.client = redis.Redis.from_url(settings.REDIS_URL)
        self.last: dict[str, tuple[int, int]] = {}  # per stream: the last id's (ms, sequence)

    def line(self, namespace: str, request_id: str, message: str, *, at: float,
             function: str = "hello-v1", stream: str = "stdout") -> None:  # fmt: skip
        fields = {"time": f"{at:.6f}", "namespace": namespace, "function": function,
                  "request_id": request_id, "stream": stream, "message": message}  # fmt: skip
        last_ms, last_seq = self.last.get(namespace, (0, -1))
        ms = max(int(at * 1000), last_ms)
        seq = last_seq + 1 if ms == last_ms else 0
        self.last[namespace] = (ms, seq)
        self.client.xadd(stream_name(namespace), fields, id=f"{ms}-{seq}")  # type: ignore[arg-type]

    def request(self, namespace: str, request_id: str, *, at: float, function: str = "hello-v1") -> None:
        """A call that prints two lines and raises: the traceback goes to stderr."""
        self.line(namespace, request_id, "first line", at=at, function=function)
        self.line(namespace, request_id, "second line", at=at + 0.001, function=function)
        for n, text in enumerate(TRACEBACK):
            self.line(
                namespace, request_id, text, at=at + 0.002 + n / 10_000, function=function, stream="stderr"
            )


def _age(world: Any) -> None:
    """Both tenants and acme's function ``hello`` two days old: nothing older than its tenant
    (or its function) is searched, and these tests write lines of the last hours."""
    two_days_ago = django_timezone.now() - timedelta(days=2)
    Tenant.objects.filter(pk__in=[world.acme.pk, world.globex.pk]).update(created_at=two_days_ago)
    with schema_context(world.acme.schema_name):
        Function.objects.filter(name="hello").update(created_at=two_days_ago)


@pytest.fixture
def store(world: Any, hello: Any) -> Iterator[Store]:
    """Empty log streams for acme and globex."""
    _age(world)
    found = Store()
    for namespace in ("faas-acme", "faas-globex"):
        found.client.delete(stream_name(namespace))
    yield found
    for namespace in ("faas-acme", "faas-globex"):
        found.client.delete(stream_name(namespace))
    found.client.close()


def _rid() -> str:
    return uuid.uuid4().hex  # what the router gives a call: 32 hex digits


def _groups(html: str) -> list[dict[str, Any]]:
    """Each group of the results: its request id, its lines' texts and streams in page order."""
    results = html.split("data-log-results", 1)[1]
    groups = []
    for chunk in results.split("<tr data-log-group ")[1:]:
        rid = re.search(r'data-request-id="([^"]*)"', chunk)
        lines = re.findall(r'<li class="log-line stream-(\w+)" data-stream="\w+">(.*?)</li>', chunk, re.S)
        texts = [unescape(re.findall(r"<code>(.*)</code>", body, re.S)[0]) for _, body in lines]
        groups.append({"id": rid.group(1) if rid else "", "lines": texts, "streams": [s for s, _ in lines],
                       "html": chunk})  # fmt: skip
    return groups


def _results(page: Any) -> str:
    """The search results (the filters echo what was typed)."""
    assert page.status_code == 200
    results: str = page.content.decode().split("<h2>Search results", 1)[1]
    assert "data-log-results" in results
    return results


# -- grouping ------------------------------------------------------------------------------------


def _record(rid: str, message: str, at: float, function: str = "hello", n: int = 0) -> dict[str, Any]:
    return {"id": f"{int(at * 1000)}-{n}", "time": at, "function": function, "version": "v1",
            "request_id": rid, "stream": "stdout", "message": message}  # fmt: skip


def test_groups_put_the_newest_request_first_and_each_requests_lines_in_the_order_written() -> None:
    oldest_first = [
        _record("a", "a1", 1.0), _record("b", "b1", 2.0), _record("a", "a2", 3.0),
        _record("", "raw 1", 4.0), _record("", "raw 2", 5.0), _record("b", "b2", 6.0),
        _record("", "raw 3", 7.0), _record("a", "a3", 7.0, n=1), _record("a", "a4", 7.0, n=2),
    ]  # fmt: skip
    groups = group_by_request(oldest_first[::-1])  # a search gives them newest first
    assert [(g.request_id, [line["message"] for line in g.lines]) for g in groups] == [
        ("a", ["a1", "a2", "a3", "a4"]),  # same time: as stored
        ("", ["raw 3"]),
        ("b", ["b1", "b2"]),
        ("", ["raw 1", "raw 2"]),  # lines outside a request, one after another, stay together
    ]
    assert groups[0].started == 1.0


def test_one_request_id_in_two_functions_is_two_groups() -> None:
    records = [_record("a", "in g", 2.0, function="g"), _record("a", "in f", 1.0, function="f")]
    assert [(g.function, len(g.lines)) for g in group_by_request(records)] == [("g", 1), ("f", 1)]


def test_a_request_prefix_matches_the_ids_that_start_with_it() -> None:
    record = LogRecord(time=1.0, namespace="n", function="f-v1", request_id="3f2a9c01", stream="stdout",
                       message="m", id="1-0")  # fmt: skip
    assert LogQuery(request_prefix="3f2a").matches(record)
    assert LogQuery(request_prefix="3f2a9c01").matches(record)
    assert not LogQuery(request_prefix="3f2b").matches(record)
    assert not LogQuery(request_id="3f2a").matches(record)  # the exact filter stays exact


# -- the page ------------------------------------------------------------------------------------


def test_a_failed_call_reads_as_one_group_top_to_bottom_with_stderr_marked(
    world: Any, client: Any, store: Store
) -> None:
    NOW = time.time()
    first, second = _rid(), _rid()
    store.request("faas-acme", first, at=NOW - 60)
    store.request("faas-acme", second, at=NOW - 30)
    client.force_login(world.vera)
    page = client.get("/t/acme/logs/?function=hello")
    assert page.status_code == 200
    groups = _groups(page.content.decode())
    assert [g["id"] for g in groups] == [second, first]  # the newest request first
    for group in groups:
        assert group["lines"] == ["first line", "second line", *TRACEBACK]
        assert group["streams"] == ["stdout", "stdout"] + ["stderr"] * 4
        assert group["html"].count('<span class="badge stream-badge">stderr</span>') == 4
    # the whole id, linking to that request's lines
    assert f'<a href="?request={second}" class="request-id" data-request-link' in groups[0]["html"]
    assert f"<code>{second}</code>" in groups[0]["html"]


def test_the_request_link_and_a_prefix_find_that_request_only(world: Any, client: Any, store: Store) -> None:
    NOW = time.time()
    wanted, other = "3f2a9c01" + uuid.uuid4().hex[8:], "77" + uuid.uuid4().hex[2:]
    store.request("faas-acme", wanted, at=NOW - 60)
    store.request("faas-acme", other, at=NOW - 30)
    client.force_login(world.vera)
    for query in (f"request={wanted}", "request=3f2a9c01", "request=3f2a", f"request_id={wanted}"):
        page = client.get(f"/t/acme/logs/?{query}")
        assert page.status_code == 200, query
        assert [g["id"] for g in _groups(page.content.decode())] == [wanted], query
    assert b'value="3f2a9c01"' in client.get("/t/acme/logs/?request=3f2a9c01").content  # kept in the field
    nothing = client.get("/t/acme/logs/?request=3f2b").content.decode()
    assert _groups(nothing) == []
    assert "No lines match." in nothing


def test_a_request_cut_by_the_page_end_is_shown_whole(world: Any, client: Any, store: Store) -> None:
    NOW = time.time()
    long_one, busy = _rid(), _rid()
    for n in range(5):
        store.line("faas-acme", long_one, f"step {n}", at=NOW - 100 + n)
    for n in range(99):
        store.line("faas-acme", busy, f"busy {n}", at=NOW - 90 + n / 100)
    store.line("faas-acme", long_one, "step 5", at=NOW - 10)  # the page holds only this one of its lines
    client.force_login(world.vera)
    page = client.get("/t/acme/logs/").content.decode()
    groups = {g["id"]: g["lines"] for g in _groups(page)}
    assert groups[long_one] == [f"step {n}" for n in range(6)]
    assert len(groups[busy]) == 99
    assert "data-next-page" in page  # and the older page continues after the page's own lines


def _iso(moment: float, offset_hours: float = 0) -> str:
    zone = timezone(timedelta(hours=offset_hours))
    return datetime.fromtimestamp(moment, tz=UTC).astimezone(zone).isoformat(timespec="seconds")


def test_since_and_until_are_moments_with_their_offset(world: Any, client: Any, store: Store) -> None:
    NOW = time.time()
    old, new = _rid(), _rid()
    store.request("faas-acme", old, at=NOW - 7200)
    store.request("faas-acme", new, at=NOW - 60)
    client.force_login(world.vera)

    def found(query: str) -> list[str]:
        page = client.get(f"/t/acme/logs/?{query}")
        assert page.status_code == 200, (query, page.content[:2000])
        return [g["id"] for g in _groups(page.content.decode())]

    assert found(f"until={quote(_iso(NOW - 3600))}") == [old]
    assert found(f"until={quote(_iso(NOW - 3600, offset_hours=5.5))}") == [old]  # the same moment
    assert found(f"since={quote(_iso(NOW - 3600, offset_hours=-7))}") == [new]
    assert found(
        "since=" + datetime.fromtimestamp(NOW - 3600, tz=UTC).strftime("%Y-%m-%dT%H:%M:%S.000Z")
    ) == [new]
    # without an offset (a picker without its script) it is UTC
    assert found("since=" + datetime.fromtimestamp(NOW - 3600, tz=UTC).strftime("%Y-%m-%dT%H:%M")) == [new]
    assert found("last=15m") == [new]
    assert found("last=24h") == [new, old]


def test_the_pickers_show_the_chosen_moments(world: Any, client: Any, store: Store) -> None:
    client.force_login(world.vera)
    html = client.get("/t/acme/logs/?since=2026-03-01T10:30:00%2B02:00").content.decode()
    assert re.search(r'<input type="datetime-local" name="since" step="1" value="2026-03-01T08:30:00"'
                     r' data-moment data-utc="2026-03-01T08:30:00Z"', html)  # fmt: skip
    quick = client.get("/t/acme/logs/?last=1h").content.decode()
    since = re.search(r'name="since" step="1" value="([^"]+)"', quick)
    assert since is not None
    shown = datetime.fromisoformat(since.group(1)).replace(tzinfo=UTC).timestamp()
    assert abs(shown - (time.time() - 3600)) < 60
    assert 'data-quick-range="1h"' in quick
    assert 'aria-pressed="true" data-quick-range="1h"' in quick


@pytest.mark.parametrize(
    ("query", "words"),
    [
        ("since=not-a-time", "Since must be a date and time"),
        ("since=0001-01-01T00:00%2B05:00", "Since must be a date and time"),  # no UTC date
        ("until=9999-12-31T23:59:59-05:00", "Until must be a date and time"),
        ("until=2026-02-30T10:00", "Until must be a date and time"),
        ("since=2026-12-01T10:00%2B25:00", "Since must be a date and time"),
        ("since=1969-12-31T23:00:00Z", "since must be 1970-01-01T00:00:00Z or later."),
        ("since=2026-12-02T10:00Z&until=2026-12-01T10:00Z", "until must be after since."),
        ("last=7d", "Select a valid choice"),
        ("request=" + "x" * 129, "at most 128 characters"),
    ],
)
def test_bad_filters_are_a_400_in_words(
    world: Any, client: Any, store: Store, query: str, words: str
) -> None:
    client.force_login(world.vera)
    page = client.get(f"/t/acme/logs/?{query}")
    assert page.status_code == 400
    text = page.content.decode()
    assert words in text
    assert "data-form-errors" in text
    if not query.startswith("last="):  # the field with the error says so to a screen reader
        field = query.split("=", 1)[0] if "&" not in query else "until"
        assert re.search(rf'name="{field}"[^>]*aria-invalid="true"', text, re.S), text


# -- tenants -------------------------------------------------------------------------------------


def test_another_tenants_request_is_found_neither_by_id_nor_by_prefix(
    world: Any, client: Any, store: Store
) -> None:
    NOW = time.time()
    acme_call, globex_call = "ac" + uuid.uuid4().hex[2:], "91" + uuid.uuid4().hex[2:]
    store.request("faas-acme", acme_call, at=NOW - 60)
    store.request("faas-globex", globex_call, at=NOW - 50)
    client.force_login(world.vera)
    for query in (f"request={globex_call}", "request=91", f"request_id={globex_call}", "request=", "last=1h"):
        assert globex_call not in _results(client.get(f"/t/acme/logs/?{query}")), query
    client.force_login(world.oscar)
    for query in (f"request={acme_call}", "request=ac", "last=24h"):
        assert acme_call not in _results(client.get(f"/t/globex/logs/?{query}")), query
    assert [g["id"] for g in _groups(client.get("/t/globex/logs/?request=91").content.decode())] == [
        globex_call
    ]


# -- the live socket -----------------------------------------------------------------------------


def _socket(tenant: str, secret: str) -> WebsocketCommunicator:
    return WebsocketCommunicator(
        application, f"/t/{tenant}/ws/live/", headers=[(b"authorization", f"Bearer {secret}".encode())]
    )


async def _subscribe(ws: WebsocketCommunicator, **subscription: Any) -> dict[str, Any]:
    await ws.send_json_to({"type": "subscribe", **subscription})
    reply: dict[str, Any] = await ws.receive_json_from(timeout=5)
    return reply


@pytest.mark.django_db(transaction=True)
async def test_the_live_tail_keeps_to_a_request_prefix_and_to_its_tenant(world: Any, token_for: Any) -> None:
    store = Store()
    for namespace in ("faas-acme", "faas-globex"):
        await sync_to_async(store.client.delete)(stream_name(namespace))
    vera = await sync_to_async(token_for)(world.vera, world.acme, "viewer")
    oscar = await sync_to_async(token_for)(world.oscar, world.globex, "admin")
    acme_ws = _socket("acme", vera)
    globex_ws = _socket("globex", oscar)
    assert (await acme_ws.connect(timeout=5))[0]
    assert (await globex_ws.connect(timeout=5))[0]
    reply = await _subscribe(acme_ws, stream="logs", request="3f2a")
    assert reply["key"] == "logs:*:*:*:request=3f2a"
    assert (await _subscribe(globex_ws, stream="logs", request="3f2a"))["type"] == "subscribed"
    bad = await _subscribe(acme_ws, stream="metrics", function="hello", request="3f2a")
    assert bad["type"] == "error"
    assert "request" in bad["error"]["detail"]

    await sync_to_async(store.line)("faas-acme", "77aa", "someone else's call", at=time.time())
    await sync_to_async(store.line)("faas-acme", "3f2a9c01", "the call I follow", at=time.time())
    frame = await acme_ws.receive_json_from(timeout=10)
    assert [(r["request_id"], r["message"]) for r in frame["records"]] == [("3f2a9c01", "the call I follow")]
    assert await globex_ws.receive_nothing(timeout=0.5)  # globex's tail never sees acme's line
    await acme_ws.disconnect()
    await globex_ws.disconnect()
    store.client.close()
