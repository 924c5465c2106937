"""The client without a portal: --help everywhere, exit codes, the config file, the archives it sends."""

from __future__ import annotations

import io
import stat
import zipfile
from pathlib import Path

import click
import pytest
from click.testing import CliRunner

from cli import archive, config, deploy
from cli.commands.releases import parse_weights
from cli.errors import AUTH, FAILED, INVALID, NOT_FOUND, UNAVAILABLE, CliError, code_for_status, detail_lines
from cli.main import cli, run


def _command_paths(group: click.Group, prefix: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    paths = []
    for name, command in group.commands.items():
        paths.append((*prefix, name))
        if isinstance(command, click.Group):
            paths += _command_paths(command, (*prefix, name))
    return paths


def test_help_on_every_command():
    paths = _command_paths(cli)
    # Every command the issue asks for is there.
    for wanted in [
        ("login",), ("logout",), ("fn", "list"), ("fn", "create"), ("fn", "get"), ("fn", "update"),
        ("fn", "delete"), ("fn", "code", "push"), ("fn", "deploy"), ("fn", "test"), ("fn", "logs"),
        ("version", "publish"), ("version", "list"), ("alias", "set"), ("rollout", "start"),
        ("rollout", "status"), ("trigger", "http", "create"), ("trigger", "time", "list"),
        ("trigger", "mq", "delete"), ("spec", "apply"), ("spec", "export"), ("spec", "diff"),
    ]:  # fmt: skip
        assert wanted in paths
    for path in [(), *paths]:
        result = CliRunner().invoke(cli, [*path, "--help"], prog_name="faas")
        assert result.exit_code == 0, (path, result.output)
        assert result.output.startswith(f"Usage: faas {' '.join(path)}".rstrip()), result.output
    assert "Exit codes: 0 ok" in CliRunner().invoke(cli, ["--help"]).output


def test_exit_codes_of_statuses_and_usage_errors(capsys):
    assert [code_for_status(s) for s in (400, 401, 403, 404, 409, 413, 422, 429, 500, 503)] == [
        INVALID, AUTH, AUTH, NOT_FOUND, INVALID, INVALID, INVALID, UNAVAILABLE, UNAVAILABLE, UNAVAILABLE,
    ]  # fmt: skip
    assert run(["fn", "get"]) == 2  # NAME missing
    assert run(["fn", "nope"]) == 2
    assert run(["alias", "set", "f", "live", "--weights", "1=90,2=20"]) == 2
    assert "Traceback" not in capsys.readouterr().err


def test_not_logged_in_is_an_authentication_error(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path))
    for variable in config.ENV.values():
        monkeypatch.delenv(variable, raising=False)
    assert run(["fn", "list"]) == AUTH
    assert "faas login" in capsys.readouterr().err


def test_error_detail_in_words():
    detail = {
        "specs/function-hello.yaml": {"spec.environment.name": ["No such environment."]},
        "name": ["Taken."],
    }
    assert detail_lines(detail) == [
        "specs/function-hello.yaml: spec.environment.name: No such environment.",
        "name: Taken.",
    ]
    assert detail_lines(None) == []


def test_config_file_is_private_and_the_environment_overrides_it(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg"))
    for variable in config.ENV.values():
        monkeypatch.delenv(variable, raising=False)
    path = config.save(config.Profile(url="http://saved", tenant="acme", token="fpt_saved"))
    assert path == tmp_path / "xdg" / "faas" / "config.toml"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    assert config.profile() == config.Profile(url="http://saved", tenant="acme", token="fpt_saved")
    monkeypatch.setenv("FAAS_TOKEN", "fpt_env")
    monkeypatch.setenv("FAAS_URL", "http://env/")
    assert config.profile(tenant="globex") == config.Profile(
        url="http://env", tenant="globex", token="fpt_env"
    )
    assert config.forget() is True
    assert not path.exists()
    assert config.forget() is False


def test_weights_become_an_alias_with_a_canary():
    assert parse_weights("1=90,2=10") == {"version": 1, "canary_version": 2, "canary_weight": 10}
    assert parse_weights("2=10, 1=90") == {"version": 1, "canary_version": 2, "canary_weight": 10}
    assert parse_weights("3=100") == {"version": 3, "canary_version": None, "canary_weight": 0}
    for bad in ("1=90", "1=50,1=50", "1=x,2=10", "1=40,2=30,3=30"):
        with pytest.raises(click.BadParameter):
            parse_weights(bad)


def test_a_deployment_that_failed_or_did_not_finish_is_a_failure():
    live = {"id": 7, "state": "live", "reason": ""}
    assert deploy.finished("f", live, 10) == live
    with pytest.raises(CliError) as failed:
        deploy.finished("f", {"id": 7, "state": "failed", "reason": "the build failed"}, 10)
    assert (failed.value.code, "the build failed" in failed.value.message) == (FAILED, True)
    with pytest.raises(CliError) as late:
        deploy.finished("f", {"id": 7, "state": "building", "reason": ""}, 10)
    assert "still building after 10 s" in late.value.message


def _names(data: bytes) -> list[str]:
    return sorted(zipfile.ZipFile(io.BytesIO(data)).namelist())


def test_code_folder_is_zipped_without_caches(tmp_path):
    (tmp_path / "src" / "pkg" / "__pycache__").mkdir(parents=True)
    (tmp_path / "src" / "main.py").write_text("def main():\n    return 'hi'\n")
    (tmp_path / "src" / "pkg" / "util.py").write_text("X = 1\n")
    (tmp_path / "src" / "pkg" / "__pycache__" / "util.cpython-311.pyc").write_bytes(b"\0")
    name, data = archive.upload_of(tmp_path / "src")
    assert (name, _names(data)) == ("src.zip", ["main.py", "pkg/util.py"])
    assert archive.upload_of(tmp_path / "src" / "main.py") == ("main.py", b"def main():\n    return 'hi'\n")


def _spec_folder(root: Path) -> None:
    """A folder as `fission spec init` and `fission function create --spec` leave it."""
    (root / "specs").mkdir(parents=True)
    (root / "specs" / "fission-deployment-config.yaml").write_text(
        "# This file is generated by the 'fission spec init' command.\n"
        "kind: DeploymentConfig\nname: demo\nuid: 0f8d6c1e-1111-4c7e-9a4e-2b1c3d4e5f60\n"
    )
    (root / "specs" / "package-hello.yaml").write_text(
        "include:\n- hello/*.py\nexclude:\n- hello/skip.py\nkind: ArchiveUploadSpec\nname: hello-py-abcd\n"
        "\n---\napiVersion: fission.io/v1\nkind: Package\nmetadata:\n  name: hello\n  namespace: default\n"
        "spec:\n  deployment:\n    type: url\n    url: archive://hello-py-abcd\n"
    )
    (root / "hello").mkdir()
    for name in ("main.py", "util.py", "skip.py"):
        (root / "hello" / name).write_text("X = 1\n")
    (root / "unrelated.txt").write_text("not sent\n")


def test_spec_zip_holds_specs_and_the_sources_the_globs_name(tmp_path):
    _spec_folder(tmp_path)
    expected = [
        "hello/main.py",
        "hello/util.py",
        "specs/fission-deployment-config.yaml",
        "specs/package-hello.yaml",
    ]
    assert _names(archive.spec_zip(tmp_path)) == expected  # the root, holding specs/
    assert _names(archive.spec_zip(tmp_path / "specs")) == expected  # the specs folder itself
    with pytest.raises(click.BadParameter, match="not a Fission spec folder"):
        archive.spec_zip(tmp_path / "hello")


def test_spec_zip_refuses_a_glob_that_matches_nothing(tmp_path):
    _spec_folder(tmp_path)
    (tmp_path / "hello" / "main.py").unlink()
    (tmp_path / "hello" / "util.py").unlink()
    (tmp_path / "hello" / "skip.py").unlink()
    with pytest.raises(click.BadParameter, match="matches no file"):
        archive.spec_zip(tmp_path)
