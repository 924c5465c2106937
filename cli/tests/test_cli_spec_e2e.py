"""`faas spec export|diff|apply` end to end against the live portal's spec/ endpoints: a tenant's
function exported as a Fission spec folder applies back with no change, and applies into another
tenant, where it answers through the router."""

from __future__ import annotations

import json

import pytest

from cli.tests.test_cli_e2e import Shell, ok

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.services]


@pytest.fixture
def shell(tmp_path):
    home = tmp_path / "home"
    home.mkdir()
    return Shell(home)


def test_export_diff_and_apply_into_another_tenant(world, token_for, stack, live_server_url, shell):
    bob = token_for(world.bob, world.acme, "developer")
    ok(shell("login", "--url", live_server_url, "--tenant", "acme", "--token", bob))
    (shell.home / "main.py").write_text("def main():\n    return 'from spec'\n")
    ok(shell("fn", "create", "specfn"))
    ok(shell("fn", "code", "push", "specfn", str(shell.home / "main.py")))
    ok(shell("trigger", "http", "create", "specfn", "specfn", "--path", "/specfn"))
    ok(shell("fn", "deploy", "specfn", "--wait"))

    ok(shell("spec", "export", "--function", "specfn", "-o", "exported"))
    specs = shell.home / "exported" / "specs"
    assert (specs / "fission-deployment-config.yaml").is_file()
    # Exported from acme, it changes nothing there: `spec diff` exits 0 and plans nothing else.
    same = shell("spec", "diff", "exported", "-o", "json")
    assert same.returncode == 0, (same.stdout, same.stderr)
    assert {item["action"] for item in json.loads(same.stdout)["plan"]} == {"unchanged"}

    # Into globex (its admin's token, from the environment as in CI): a diff would create, then apply.
    globex = {"FAAS_TENANT": "globex", "FAAS_TOKEN": token_for(world.oscar, world.globex, "developer")}
    planned = shell("spec", "diff", "exported", env=globex)
    assert planned.returncode == 1, (planned.stdout, planned.stderr)
    assert "create" in planned.stdout
    applied = json.loads(ok(shell("spec", "apply", "exported", "--wait", "-o", "json", env=globex)))
    assert applied["changed"] is True
    assert ("create", "Function", "specfn") in {(i["action"], i["kind"], i["name"]) for i in applied["plan"]}
    again = shell("spec", "diff", "exported", env=globex)
    assert again.returncode == 0, (again.stdout, again.stderr)
    called = ok(shell("fn", "test", "specfn", env=globex))
    assert "from spec" in called
