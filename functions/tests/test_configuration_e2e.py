"""Secrets and ConfigMaps end to end on the local runtime: a function reads them where Fission
puts them, a change reaches the next call, and the secret's value shows up nowhere else: not in
an API answer, a page, a deployment's steps, a log record or a database column."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from django.db import connection

from testsupport.e2e import create_function, deploy_and_wait, functions_api

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.services]
API = "/t/acme/api/v1"
MARKER = "s3cr3t-e2e-MARKER-9b7f"
READER = """\
import os


def main():
    with open("/secrets/faas-acme/db/password") as secret, open("/configs/faas-acme/app/mode") as config:
        password, mode = secret.read(), config.read()
    print("read the mode", mode)
    return "%s %s" % (len(password), mode)
"""


def test_a_function_reads_its_secret_and_config_and_the_value_leaks_nowhere(
    world: Any, api: Any, client: Any, stack: Any
) -> None:
    bob = api(world.bob)
    assert (
        bob.post(f"{API}/secrets/", {"name": "db", "data": {"password": MARKER}}, format="json").status_code
        == 201
    )
    assert (
        bob.post(f"{API}/configmaps/", {"name": "app", "data": {"mode": "fast"}}, format="json").status_code
        == 201
    )
    create_function(bob, "reader", {"main.py": READER}, "/reader")
    names = {"secrets": ["db"], "configmaps": ["app"]}
    assert bob.patch(f"{functions_api()}/reader/", names, format="json").status_code == 200
    deploy_and_wait(bob, "reader")
    assert _call(stack) == f"{len(MARKER)} fast"

    changed = bob.put(f"{API}/configmaps/app/", {"data": {"mode": "slow"}}, format="json")
    assert changed.status_code == 200
    secret = bob.put(f"{API}/secrets/db/", {"data": {"password": MARKER + "!"}}, format="json")
    assert secret.status_code == 200
    deploy_and_wait(bob, "reader")  # the changes queued theirs too; this one finishes after them
    assert _call(stack) == f"{len(MARKER) + 1} slow"

    client.force_login(world.bob)
    seen = [
        bob.get(f"{API}/secrets/").content,
        bob.get(f"{API}/secrets/db/").content,
        bob.get(f"{functions_api()}/reader/").content,
        bob.get(f"{functions_api()}/reader/deployments/").content,
        bob.get(f"{API}/logs/", {"function": "reader"}).content,
        *(client.get(f"/t/acme/functions/reader/{tab}").content for tab in ("", "test/", "configuration/")),
        stack.log_path.read_bytes(),
        *_audit_trail_as_alice_reads_it(world, api),
    ]
    assert any(b"read the mode" in text for text in seen)  # the logs were searched, and hold the call
    assert any(b'"secret.update"' in text for text in seen)  # the trail was searched, and holds the change
    for text in seen:
        assert MARKER.encode() not in text
    assert not _columns_holding(MARKER)


def _audit_trail_as_alice_reads_it(world: Any, api: Any) -> list[bytes]:
    """The tenant admin's API page, JSON-lines export and page of the audit trail."""
    alice = api(world.alice)
    export = alice.get("/t/acme/api/v1/audit/export/")
    assert export.status_code == 200
    return [
        alice.get("/t/acme/api/v1/audit/", {"object_type": "secret"}).content,
        b"".join(export.streaming_content),
        alice.get("/t/acme/audit/").content,
    ]


def _call(stack: Any) -> str:
    response = httpx.get(f"{stack.router}/acme/reader", timeout=30)
    assert response.status_code == 200, response.text
    return response.text


def _columns_holding(text: str) -> list[str]:
    """Every text, JSON or binary column of every table, in every schema, holding ``text``."""
    found = []
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT table_schema, table_name, column_name, data_type FROM information_schema.columns"
            " WHERE data_type IN ('text', 'character varying', 'jsonb', 'json', 'bytea')"
            " AND table_schema NOT IN ('pg_catalog', 'information_schema')"
        )
        for schema, table, column, data_type in cursor.fetchall():
            where = (
                f"position(convert_to(%s, 'UTF8') in \"{column}\") > 0"
                if data_type == "bytea"
                else f'position(%s in "{column}"::text) > 0'
            )
            cursor.execute(f'SELECT 1 FROM "{schema}"."{table}" WHERE {where} LIMIT 1', [text])
            if cursor.fetchone():
                found.append(f"{schema}.{table}.{column}")
    return found
