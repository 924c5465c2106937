"""Package archives served to the data plane at an internal URL, as Fission's fetcher expects.

The URL carries an HMAC of (schema, build, sha256): it cannot be guessed or moved to another
tenant's archive, and it does not expire (a cluster re-fetches when a pod restarts).
"""

from __future__ import annotations

import hashlib
import hmac

from django.conf import settings


def signature(schema: str, build_id: int, sha256: str) -> str:
    message = f"{schema}:{build_id}:{sha256}".encode()
    return hmac.new(settings.SECRET_KEY.encode(), message, hashlib.sha256).hexdigest()


def package_url(base: str, schema: str, build_id: int, sha256: str) -> str:
    sig = signature(schema, build_id, sha256)
    return f"{base.rstrip('/')}/internal/packages/{schema}/{build_id}/{sha256}.zip?sig={sig}"


def signature_valid(schema: str, build_id: int, sha256: str, offered: str) -> bool:
    return hmac.compare_digest(signature(schema, build_id, sha256), offered)
