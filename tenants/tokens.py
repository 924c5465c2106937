"""API token format: ``fpt_<key id>_<secret>``. Only the SHA-256 of the whole token is kept.

The key id is stored in clear so a token is found with one indexed lookup; the digest is
then compared in constant time.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from dataclasses import dataclass

PREFIX = "fpt_"
_SHAPE = r"^{prefix}([0-9a-f]{{12}})_([A-Za-z0-9_-]{{43}})$"


@dataclass(frozen=True)
class NewToken:
    key_id: str
    secret: str
    digest: str


def digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


# Invitation links (tenants/invitations.py) carry a secret of the same shape, another prefix.
INVITATION_PREFIX = "fpi_"
_SHAPES = {prefix: re.compile(_SHAPE.format(prefix=prefix)) for prefix in (PREFIX, INVITATION_PREFIX)}


def generate(prefix: str = PREFIX) -> NewToken:
    key_id = secrets.token_hex(6)
    token = f"{prefix}{key_id}_{secrets.token_urlsafe(32)}"
    return NewToken(key_id=key_id, secret=token, digest=digest(token))


def parse_key_id(token: str, prefix: str = PREFIX) -> str | None:
    match = _SHAPES[prefix].match(token)
    return match.group(1) if match else None


def matches(token: str, stored_digest: str) -> bool:
    return hmac.compare_digest(digest(token), stored_digest)
