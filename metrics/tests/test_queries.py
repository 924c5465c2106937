"""PromQL is built from checked values only, always inside one namespace."""

from __future__ import annotations

import pytest

from metrics import queries
from metrics.queries import GroupBy, Scope


def test_a_function_scope_selects_its_versions_and_draft_in_its_namespace() -> None:
    assert Scope("faas-acme", "hello").matchers() == (
        '{function_namespace="faas-acme",function_name=~"hello-(draft|v[0-9]+)"}'
    )


def test_versions_and_paths_are_exact_alternatives() -> None:
    scope = Scope("faas-acme", "hello", ("hello-v2", "hello-v1"), ("/acme/a.b", "/acme/{id}"))
    assert scope.matchers() == (
        '{function_namespace="faas-acme",function_name=~"hello\\\\-v1|hello\\\\-v2",'
        'path=~"/acme/a\\\\.b|/acme/\\\\{id\\\\}"}'
    )
    assert "path" not in scope.matchers(with_paths=False)


@pytest.mark.parametrize(
    "bad",
    [
        {"namespace": 'faas-acme"} or up{'}, {"namespace": "faas-acme", "function": "Hello"},
        {"namespace": "faas-acme", "fission_names": ("x|.*",)},
        {"namespace": "faas-acme", "paths": ('/a"}',)},
        {"namespace": "faas-acme", "paths": ("no-slash",)}, {"namespace": ""},
    ],
)  # fmt: skip
def test_anything_unchecked_is_refused(bad: dict[str, object]) -> None:
    with pytest.raises(ValueError, match="not a"):
        Scope(**bad)  # type: ignore[arg-type]


def test_a_count_is_exact_over_the_window() -> None:
    query = queries.calls(Scope("faas-acme", "hello"), 3600, GroupBy.FUNCTION).text
    matchers = '{function_namespace="faas-acme",function_name=~"hello-(draft|v[0-9]+)"}'
    x = "fission_function_calls_total" + matchers
    last, before = f"last_over_time({x}[3600s])", f"last_over_time({x}[3600s] offset 3600s)"
    reset = f"(resets({x}[3600s]) > 0)"
    assert query == (
        f"sum by (function_name) (((({last} - {before}) >= 0) unless {reset}) "
        f"or (increase({x}[3600s]) and {reset}) or {last})"
    )


def test_a_job_pins_the_router() -> None:
    assert Scope("faas-acme", job="runtime").matchers() == '{function_namespace="faas-acme",job="runtime"}'
    with pytest.raises(ValueError, match="not a job"):
        Scope("faas-acme", job='x"}')


def test_errors_quantiles_and_cold_starts() -> None:
    scope = Scope("faas-acme", "hello", paths=("/acme/hello",))
    assert queries.errors(scope, 60).text.startswith("sum ((((last_over_time(fission_function_errors_total{")
    latency = queries.quantile(0.95, scope, 60).text
    assert latency.startswith("histogram_quantile(0.95, sum by (le) ((((last_over_time(")
    assert "fission_function_overhead_seconds_bucket{" in latency
    cold = queries.cold_starts(scope, 60).text
    assert "fission_function_cold_starts_total{" in cold
    assert "path=" not in cold  # cold starts have no path label
    with pytest.raises(ValueError, match="no path"):
        queries.cold_starts(scope, 60, GroupBy.PATH)
    with pytest.raises(ValueError, match="between 0 and 1"):
        queries.quantile(1.5, scope, 60)
    with pytest.raises(ValueError, match="positive"):
        queries.calls(scope, 0)
