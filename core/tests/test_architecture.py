"""The package layering of docs/architecture.md holds, and its check can fail."""

from __future__ import annotations

import ast
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("portal", "releases", "metrics", "functions", "tenants", "audit", "dataplane", "core", "runtime")
LINT_IMPORTS = Path(sys.executable).with_name("lint-imports")


def _copy_tree(destination: Path) -> None:
    shutil.copy(ROOT / "pyproject.toml", destination / "pyproject.toml")
    for package in PACKAGES:
        shutil.copytree(
            ROOT / package, destination / package, ignore=shutil.ignore_patterns("__pycache__", "*.pyc")
        )


def _lint_imports(cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(LINT_IMPORTS), "--no-cache"], cwd=cwd, capture_output=True, text=True, timeout=240, check=False
    )


def test_the_contracts_hold() -> None:
    result = _lint_imports(ROOT)
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize(
    ("module", "wrong_import", "contract"),
    [
        ("core/errors.py", "import functions.models", "Layers"),
        ("tenants/roles.py", "from functions import quotas", "Layers"),
        ("dataplane/manifests.py", "import tenants.models", "Layers"),
        ("audit/services.py", "import tenants.models", "Layers"),
        ("runtime/config.py", "import django.conf", "The local runtime imports nothing"),
        ("tenants/provisioning.py", "import tenants.services", "No import cycle"),
        ("functions/runs/builds.py", "import functions.runs.deployments", "No import cycle"),
        ("dataplane/backends/local.py", "import kubernetes", "Only the Kubernetes adapter"),
    ],
)
def test_a_wrong_way_import_breaks_the_lint(
    tmp_path: Path, module: str, wrong_import: str, contract: str
) -> None:
    _copy_tree(tmp_path)
    with (tmp_path / module).open("a") as source:
        source.write(f"\n{wrong_import}  # noqa\n")
    result = _lint_imports(tmp_path)
    assert result.returncode == 1, result.stdout + result.stderr
    broken = result.stdout.split("Broken contracts", 1)[-1]
    assert contract in broken, result.stdout


def _function_body_imports(path: Path) -> list[tuple[int, str]]:
    """First-party imports written inside a function, without a comment on the line above."""
    lines = path.read_text().splitlines()
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        if not isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            continue
        for inner in ast.walk(node):
            names: list[str] = []
            if isinstance(inner, ast.Import):
                names = [alias.name for alias in inner.names]
            elif isinstance(inner, ast.ImportFrom) and inner.module and not inner.level:
                names = [inner.module]
            first_party = [n for n in names if n.split(".")[0] in PACKAGES]
            if first_party and not _comment_above(lines, inner.lineno):  # type: ignore[attr-defined]
                found.append((inner.lineno, first_party[0]))  # type: ignore[attr-defined]
    return found


def _comment_above(lines: list[str], lineno: int) -> bool:
    """A comment right above the import, or above the run of imports it belongs to."""
    index = lineno - 2
    while index >= 0 and lines[index].strip().startswith(("import ", "from ")):
        index -= 1
    return index >= 0 and lines[index].strip().startswith("#")


def test_no_first_party_import_inside_a_function_without_a_reason() -> None:
    """CONVENTIONS.md 16: such an import hides a dependency from the contracts' reader; where one
    cannot be at the top, the comment above it says why (a chain of them shares one comment)."""
    offenders = []
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            if "tests" in path.relative_to(ROOT).parts or "migrations" in path.parts:
                continue
            offenders += [
                f"{path.relative_to(ROOT)}:{line} {name}" for line, name in _function_body_imports(path)
            ]
    assert offenders == []
