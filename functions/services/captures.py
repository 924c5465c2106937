"""Replay's capture settings of a function: which failed calls its routes keep, how many, how
much of each body. They travel to the data plane on the function's HTTP triggers
(runs/deployments.py: capture_policy), so a change redeploys the function."""

from __future__ import annotations

from typing import Any

from django.db import transaction

from core.errors import ValidationFailed
from dataplane import manifests
from functions import quotas
from functions.models import Function
from functions.services import deployments
from functions.services.common import recorded


def capture_settings(function: Function) -> dict[str, Any]:
    """The capture settings, as the API answers them and the audit trail records them (each code
    as text: "500", "5xx")."""
    return {
        "codes": [str(code) for code in function.capture_codes],
        "max_requests": function.capture_max_requests,
        "max_body_bytes": function.capture_max_body_bytes,
    }


def _checked(function: Function, codes: list[Any], max_requests: int, max_body_bytes: int) -> list[Any]:
    """The codes, normalised (500, "5xx"); ValidationFailed naming the first bad field."""
    try:
        policy = manifests.CapturePolicy(
            function=function.name, codes=tuple(codes) or ("5xx",), max_requests=max_requests,
            max_body_bytes=max_body_bytes,
        )  # fmt: skip
    except manifests.InvalidManifest as exc:
        field = next(
            (name for name in ("codes", "max_requests", "max_body_bytes") if name in str(exc)), "codes"
        )
        raise ValidationFailed(f"Bad capture settings: {exc}.", detail={field: [str(exc)]}) from None
    return list(policy.codes) if codes else []


@transaction.atomic
def capture_update_and_deploy(
    *, function: Function, codes: list[Any], max_requests: int, max_body_bytes: int, user: str = ""
) -> Function:
    """Set what the function's routes capture (``codes`` empty: nothing), then redeploy it.
    QuotaExceeded (nothing changed) when the tenant's ``captured_requests`` quota is exceeded."""
    normalised = _checked(function, codes, max_requests, max_body_bytes)
    opened = recorded("function.capture", object_type="function", object_name=function.name,
                      settings=capture_settings, before=function)  # fmt: skip
    with opened as record:
        function.capture_codes = normalised
        function.capture_max_requests, function.capture_max_body_bytes = max_requests, max_body_bytes
        function.save(
            update_fields=["capture_codes", "capture_max_requests", "capture_max_body_bytes", "updated_at"]
        )
        quotas.enforce_captured_requests()
        deployments.deployment_create(function=function, cause="capture settings changed", user=user)
        return record.done(function)
