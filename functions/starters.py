"""The code a new function starts from: a hello-world, a JSON API, a webhook receiver, a
scheduled job and a queue consumer, each a ``main.py`` for Fission's Python environment (Flask's
``request``; ``main()`` returns what a Flask view may return), so it runs unchanged on both data
planes. Chosen on the create form (``starter``); ``hello`` by default."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Starter:
    label: str
    files: dict[str, str]


HELLO = '''from flask import request


def main():
    """Called for every request; return anything a Flask view may return."""
    name = request.args.get("name", "world")
    return {"hello": name}
'''

JSON_API = """from flask import request

# An HTTP trigger with methods GET and POST (a prefix, "/items", serves "/items/<id>" too).
ITEMS = {"1": {"id": "1", "name": "first"}}  # kept per worker: use a database for real data


def main():
    if request.method == "GET":
        return {"items": list(ITEMS.values())}
    body = request.get_json(silent=True)
    if not isinstance(body, dict) or not isinstance(body.get("name"), str):
        return {"error": "send a JSON object with a string 'name'"}, 400
    item = {"id": str(len(ITEMS) + 1), "name": body["name"]}
    ITEMS[item["id"]] = item
    return item, 201
"""

WEBHOOK = """import hashlib
import hmac
import os

from flask import request

# Set WEBHOOK_SECRET (a Secret's key, or an environment variable in the settings) to the secret
# the sender signs with; the sender puts hex(HMAC-SHA256(secret, body)) in X-Signature-256.


def main():
    secret = os.environ.get("WEBHOOK_SECRET", "")
    if not secret:
        return {"error": "WEBHOOK_SECRET is not set"}, 500
    expected = hmac.new(secret.encode(), request.get_data(), hashlib.sha256).hexdigest()
    given = request.headers.get("X-Signature-256", "").removeprefix("sha256=")
    if not hmac.compare_digest(expected.encode(), given.encode("utf-8", "replace")):
        return {"error": "bad signature"}, 401
    event = request.get_json(silent=True) or {}
    print("received", event.get("type", "an event"))
    return {"received": True}
"""

SCHEDULED = '''import datetime


def main():
    """Run by a time trigger (for example "@every 5m" or "0 * * * *"): the router calls it on
    schedule; what it prints is in the logs, its answer in the trigger's outcome."""
    now = datetime.datetime.now(datetime.timezone.utc)
    print("scheduled run at", now.isoformat())
    return {"ran_at": now.isoformat()}
'''

QUEUE_CONSUMER = '''import json

from flask import request


def main():
    """Called once per message of a message-queue trigger: the body is the message. A 2xx
    answer acknowledges it (its body goes to the response topic, if any); an error retries it,
    then sends it to the error topic."""
    raw = request.get_data(as_text=True)
    try:
        message = json.loads(raw)
    except ValueError:
        return {"error": "the message is not JSON"}, 400
    print("message", message)
    return {"processed": message}
'''

STARTERS: dict[str, Starter] = {
    "hello": Starter("Hello, world", {"main.py": HELLO}),
    "json-api": Starter("JSON API (GET lists, POST creates)", {"main.py": JSON_API}),
    "webhook": Starter("Webhook receiver (HMAC-signed)", {"main.py": WEBHOOK}),
    "scheduled": Starter("Scheduled job (for a time trigger)", {"main.py": SCHEDULED}),
    "queue-consumer": Starter("Queue consumer (for a message-queue trigger)", {"main.py": QUEUE_CONSUMER}),
}
DEFAULT = "hello"
CHOICES = [(key, starter.label) for key, starter in STARTERS.items()]
