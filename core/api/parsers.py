"""The API's JSON parser: DRF's, refusing NUL characters."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

from rest_framework import parsers
from rest_framework.exceptions import ValidationError

NUL = "\x00"


class JSONParser(parsers.JSONParser):
    """A NUL character anywhere in the document, in a key or a string, is a 400 naming the field.

    PostgreSQL stores no NUL in text or jsonb: such a value would fail where it is saved or looked
    up, as a 500. DRF's CharField already refuses one; dictionary keys and free-form JSON did not.
    """

    def parse(self, stream: Any, media_type: str | None = None, parser_context: Any = None) -> Any:
        data = super().parse(stream, media_type, parser_context)
        fields = sorted(set(_fields_with_nul(data)))
        if fields:
            raise ValidationError({field: ["NUL characters (\\u0000) are not allowed."] for field in fields})
        return data


def _fields_with_nul(data: Any) -> Iterator[str]:
    """The top-level fields whose key or value holds a NUL ("non_field_errors" outside an object)."""
    if isinstance(data, Mapping):
        for key, value in data.items():
            if NUL in key or _has_nul(value):
                yield key
    elif _has_nul(data):
        yield "non_field_errors"


def _has_nul(value: Any) -> bool:
    if isinstance(value, str):
        return NUL in value
    if isinstance(value, Mapping):
        return any(NUL in key or _has_nul(item) for key, item in value.items())
    if isinstance(value, list):
        return any(_has_nul(item) for item in value)
    return False
