"""A tenant the caller may not see answers exactly as a tenant that does not exist: the same
status, headers and bytes, for every method, page and API path, signed in, signed out, or with
another tenant's token (issue 17). ``globey`` is as long as ``globex``, so that even a page that
echoes its path has the same length."""

from __future__ import annotations

import re
from typing import Any

import pytest

pytestmark = pytest.mark.django_db

PATHS = [
    "/t/{t}/", "/t/{t}/functions/", "/t/{t}/functions/hello/", "/t/{t}/functions/hello/metrics/figures/",
    "/t/{t}/members/", "/t/{t}/logs/", "/t/{t}/nothing/", "/t/{t}/api/v1/", "/t/{t}/api/v1/functions/",
    "/t/{t}/api/v1/functions/hello/", "/t/{t}/api/v1/functions/hello/invoke/", "/t/{t}/api/v1/members/",
    "/t/{t}/api/v1/me/", "/t/{t}/api/v1/nothing/",
]  # fmt: skip
METHODS = ["get", "post", "put", "patch", "delete", "options", "head"]
TIMED = {"Date", "Expires"}  # the moment of the answer, not what it is about
# Django masks the CSRF token afresh in every page (BREACH): random, not about the tenant.
CSRF_TOKEN = re.compile(rb'name="csrfmiddlewaretoken" value="([^"]+)"')


def _answer(response: Any, slug: str) -> tuple[int, dict[str, str], bytes]:
    """What the caller gets, the slug they asked for (echoed in a link or a Location) aside."""
    headers = {name: value.replace(slug, "<t>") for name, value in response.headers.items()}
    for name in TIMED:
        headers.pop(name, None)
    body = response.content.replace(slug.encode(), b"<t>")
    token = CSRF_TOKEN.search(body)
    return response.status_code, headers, body.replace(token[1], b"<csrf>") if token else body


def _differences(client: Any, **extra: Any) -> list[str]:
    found = []
    for method in METHODS:
        for path in PATHS:
            foreign = _answer(getattr(client, method)(path.format(t="globex"), **extra), "globex")
            unknown = _answer(getattr(client, method)(path.format(t="globey"), **extra), "globey")
            if foreign != unknown:
                only_foreign = sorted(set(foreign[1].items()) - set(unknown[1].items()))
                only_unknown = sorted(set(unknown[1].items()) - set(foreign[1].items()))
                found.append(
                    f"{method.upper()} {path}: {foreign[0]}/{unknown[0]}, headers only the foreign one has "
                    f"{only_foreign}, only the unknown one {only_unknown}, "
                    f"bodies {'differ' if foreign[2] != unknown[2] else 'same'}"
                )
    return found


def test_signed_in_outsiders_cannot_tell_a_foreign_tenant_from_none(world: Any, client: Any) -> None:
    client.force_login(world.alice)  # acme's admin, not in globex
    assert "\n".join(_differences(client)) == ""
    assert client.get("/t/globex/").status_code == 404


def test_signed_out_callers_cannot_tell_either(world: Any, client: Any) -> None:
    assert "\n".join(_differences(client)) == ""
    assert client.get("/t/globex/").status_code == 302
    assert client.get("/t/globex/api/v1/functions/").status_code == 401


def test_a_bad_token_cannot_tell_either(world: Any, client: Any) -> None:
    assert "\n".join(_differences(client, HTTP_AUTHORIZATION="Bearer fpt_nope")) == ""
    assert client.get("/t/globex/api/v1/functions/", HTTP_AUTHORIZATION="Bearer fpt_nope").status_code == 401


def test_another_tenants_token_cannot_tell_either(world: Any, client: Any, token_for: Any) -> None:
    raw = token_for(world.alice, world.acme, "admin")
    assert "\n".join(_differences(client, HTTP_AUTHORIZATION=f"Bearer {raw}")) == ""
    assert client.get("/t/acme/api/v1/functions/", HTTP_AUTHORIZATION=f"Bearer {raw}").status_code == 200
