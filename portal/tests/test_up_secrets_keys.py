"""``make run`` and the stored secrets' key: generated once when none is configured, checked
right after the database is migrated, and never handed to the runtime."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from core.crypto import Keyring, generate_key
from portal import up
from runtime.spawner import clean_environment
from tenants import secrets_keys

# What prepare_environment may set: monkeypatch restores each afterwards (DATABASE_URL and
# REDIS_URL stay set, so no embedded service is started).
TOUCHED = (
    "PORTAL_DEBUG", "PORTAL_BEAT_SCHEDULE", "PORTAL_SECRET_KEY", "PORTAL_SECRET_KEY_FILE",
    "PORTAL_SECRETS_KEYS", "PORTAL_SECRETS_KEYS_FILE", "RUNTIME_STATE_DIR", "RUNTIME_TOKEN",
    "RUNTIME_TOKEN_FILE",
)  # fmt: skip


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch):
    for name in TOUCHED:
        monkeypatch.delenv(name, raising=False)
    Keyring.clear_cache()
    yield monkeypatch
    Keyring.clear_cache()


def test_make_run_generates_the_key_once_when_none_is_configured(tmp_path: Path, clean_env) -> None:
    up.prepare_environment(tmp_path)
    path = tmp_path / "secrets_keys"
    key = os.environ["PORTAL_SECRETS_KEYS"]
    assert path.read_text() == key
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    Keyring.from_text(key)  # a valid Fernet key

    clean_env.delenv("PORTAL_SECRETS_KEYS")
    up.prepare_environment(tmp_path)
    assert os.environ["PORTAL_SECRETS_KEYS"] == key  # the same key after a restart


def test_a_configured_key_file_is_used_as_is(tmp_path: Path, clean_env) -> None:
    given = tmp_path / "given"
    given.write_text(generate_key())
    clean_env.setenv("PORTAL_SECRETS_KEYS_FILE", str(given))
    up.prepare_environment(tmp_path)
    assert "PORTAL_SECRETS_KEYS" not in os.environ
    assert not (tmp_path / "secrets_keys").exists()
    up.write_running_env(tmp_path)
    assert f"PORTAL_SECRETS_KEYS_FILE={given}\n" in (tmp_path / up.ENV_FILE).read_text()


def test_manage_py_finds_the_keys_on_one_line(tmp_path: Path, clean_env) -> None:
    first, second = generate_key(), generate_key()
    clean_env.setenv("PORTAL_SECRETS_KEYS", f"{first}\n{second}\n")
    up.write_running_env(tmp_path)
    assert f"PORTAL_SECRETS_KEYS={first},{second}\n" in (tmp_path / up.ENV_FILE).read_text()


def test_only_the_portals_own_processes_get_the_key(clean_env) -> None:
    clean_env.setenv("PORTAL_SECRETS_KEYS", generate_key())
    clean_env.setenv("PORTAL_SECRETS_KEYS_FILE", "/run/secrets/keys")
    clean_env.setenv("PORTAL_SECRET_KEY", "django-key-" + "x" * 40)
    for name in ("web", "worker", "beat", up.ASYNC_DISPATCHER):
        assert "PORTAL_SECRETS_KEYS" in up.process_environment(name)
        assert "PORTAL_SECRET_KEY" in up.process_environment(name)
    for name in ("runtime", "prometheus"):
        env = up.process_environment(name)
        assert "PORTAL_SECRETS_KEYS" not in env
        assert "PORTAL_SECRETS_KEYS_FILE" not in env
        assert "PORTAL_SECRET_KEY" not in env  # Django's key too
    # And a function's worker starts from an allowlist, whatever the runtime was given.
    assert "PORTAL_SECRETS_KEYS" not in clean_environment({})


@pytest.mark.django_db
def test_a_wrong_key_stops_start_up_with_the_message(clean_env) -> None:
    clean_env.setenv("PORTAL_SECRETS_KEYS", generate_key())
    up.check_secrets_keys()  # the first start writes the check
    clean_env.setenv("PORTAL_SECRETS_KEYS", generate_key())
    Keyring.clear_cache()
    with pytest.raises(SystemExit) as stopped:
        up.check_secrets_keys()
    assert str(stopped.value.code).startswith(
        "faas-portal: PORTAL_SECRETS_KEYS does not hold the key the stored secrets were encrypted with"
    )


def test_the_check_runs_after_migrating_and_before_anything_else(tmp_path: Path, monkeypatch) -> None:
    steps: list[str] = []
    monkeypatch.setattr("django.setup", lambda: None)
    monkeypatch.setattr("django.core.management.call_command", lambda name, **_: steps.append(name))
    monkeypatch.setattr(secrets_keys, "verify", lambda: steps.append("verify"))
    up.set_up_database(tmp_path)
    assert steps == ["migrate_schemas", "verify", "bootstrap"]
