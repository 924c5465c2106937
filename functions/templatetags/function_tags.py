"""``{% function_rows rows %}``: the function list's rows (functions.selectors.FunctionRow).

Written out here rather than with ``{% for %}``: the list renders up to 50 rows of nine values,
and Django's template engine spent more on them than on the rest of the page (bench/pages.py).
Every value is escaped (``format_html``)."""

from __future__ import annotations

from django import template
from django.utils.html import format_html, format_html_join
from django.utils.safestring import SafeString

from functions.selectors import FunctionRow

register = template.Library()

ROW = (
    '<tr><td><a href="{0}/">{0}</a></td><td>{1}</td><td><a href="../environments/{2}/">{2}</a></td>'
    "<td>{3}</td><td>{4}</td></tr>\n"
)
DEPLOYED = '<span class="badge state-{0}">{0}</span> <small>{1}</small>'


@register.simple_tag
def function_rows(rows: list[FunctionRow]) -> SafeString:
    return format_html_join("", ROW, (_cells(row) for row in rows))


def _cells(row: FunctionRow) -> tuple[str, ...]:
    state = row["last_deployment_state"]
    deployed = format_html(DEPLOYED, state, row["deployed"]) if state else "never deployed"
    return (row["name"], row["executor"], row["environment"], deployed, row["updated"])
