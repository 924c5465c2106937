"""The one rule for the names users give things: tenant slugs and function, environment, alias
and trigger names. Each becomes part of a DNS-1123 label (``<prefix>-<slug>``, ``<name>-v<N>``),
so it is short, lowercase, starts with a letter and does not end with '-'. The model fields, the
API, the forms and the websocket consumers all validate with this."""

from __future__ import annotations

from django.core.validators import RegexValidator

NAME_PATTERN = r"[a-z]([a-z0-9-]{0,38}[a-z0-9])?"
NAME_RE = rf"^{NAME_PATTERN}$"
NAME_MESSAGE = "Use 1-40 lowercase letters, digits and '-', starting with a letter and not ending with '-'."
name_validator = RegexValidator(NAME_RE, NAME_MESSAGE)

# How a version is named where one is chosen (metrics, logs): ``v<N>`` or the ``draft``.
VERSION_RE = r"^(draft|v[1-9][0-9]{0,5})$"
