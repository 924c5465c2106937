"""The stored secrets' key check and its rotation across tenant schemas (``manage.py secrets``)."""

from __future__ import annotations

from io import StringIO

import pytest
from django.core.exceptions import ImproperlyConfigured
from django.core.management import CommandError, call_command
from django.db import connection

from core.crypto import Keyring, generate_key
from tenants import secrets_keys
from tenants.models import SecretsKeyCheck

pytestmark = pytest.mark.django_db

KEY_A, KEY_B = generate_key(), generate_key()


@pytest.fixture
def use_keys(monkeypatch: pytest.MonkeyPatch):
    """Set PORTAL_SECRETS_KEYS (the cached keyring forgotten each time, and after the test) and
    start with no registered rotation."""
    monkeypatch.delenv("PORTAL_SECRETS_KEYS_FILE", raising=False)
    monkeypatch.setattr(secrets_keys, "_rotations", [])

    def use(value: str) -> Keyring:
        monkeypatch.setenv("PORTAL_SECRETS_KEYS", value)
        Keyring.clear_cache()
        return Keyring.from_settings()

    yield use
    Keyring.clear_cache()


def _check_token() -> bytes:
    return bytes(SecretsKeyCheck.objects.get(pk=1).token)


def _run(*args: str) -> str:
    out = StringIO()
    call_command("secrets", *args, stdout=out)
    return out.getvalue()


def test_the_first_start_writes_the_check_and_later_ones_open_it(use_keys) -> None:
    use_keys(KEY_A)
    assert not SecretsKeyCheck.objects.exists()
    first = secrets_keys.verify()
    assert (first.created, first.key, first.current) == (True, 1, True)
    assert secrets_keys.CHECK_PLAINTEXT not in _check_token()
    again = secrets_keys.verify()
    assert (again.created, again.key) == (False, 1)
    assert SecretsKeyCheck.objects.count() == 1


def test_a_wrong_key_fails_verify_naming_the_variable(use_keys) -> None:
    use_keys(KEY_A)
    secrets_keys.verify()
    use_keys(KEY_B)
    with pytest.raises(ImproperlyConfigured) as error:
        secrets_keys.verify()
    message = str(error.value)
    assert message.startswith(
        "PORTAL_SECRETS_KEYS does not hold the key the stored secrets were encrypted with ("
    )
    assert KEY_A not in message
    assert KEY_B not in message
    with pytest.raises(CommandError, match="PORTAL_SECRETS_KEYS does not hold the key"):
        _run("verify")


def test_a_malformed_key_fails_verify_naming_its_position(use_keys, monkeypatch) -> None:
    monkeypatch.setenv("PORTAL_SECRETS_KEYS", f"{KEY_A},oops")
    Keyring.clear_cache()
    with pytest.raises(CommandError, match="PORTAL_SECRETS_KEYS: key 2 of 2 is not a Fernet key"):
        _run("verify")


def test_rotate_re_encrypts_the_check_and_calls_each_hook_in_every_tenant_schema(world, use_keys) -> None:
    use_keys(KEY_A)
    secrets_keys.verify()
    calls: list[tuple[str, int]] = []

    def hook(keyring: Keyring) -> int:
        calls.append((connection.schema_name, keyring.size))  # type: ignore[attr-defined]
        return 3 if connection.schema_name == world.acme.schema_name else 0  # type: ignore[attr-defined]

    secrets_keys.register_rotation(hook)
    secrets_keys.register_rotation(hook)  # once only

    use_keys(f"{KEY_B},{KEY_A}")
    assert "open with key 2, not the first" in _run("verify")
    out = _run("rotate")

    assert sorted(calls) == sorted([(world.acme.schema_name, 2), (world.globex.schema_name, 2)])
    assert f"{world.acme.schema_name}: 3 secret(s) re-encrypted" in out
    assert f"{world.globex.schema_name}: 0 secret(s) re-encrypted" in out
    assert "Rotated 3 secret(s) in 2 tenant schema(s)" in out
    assert connection.schema_name == "public"  # type: ignore[attr-defined]
    assert SecretsKeyCheck.objects.get(pk=1).rotated_at is not None

    use_keys(KEY_B)  # the old key dropped: still readable
    assert secrets_keys.verify().current
    assert "under key 1" in _run("verify")
    assert Keyring([KEY_B]).decrypt(_check_token()) == secrets_keys.CHECK_PLAINTEXT
    use_keys(KEY_A)
    with pytest.raises(ImproperlyConfigured, match="PORTAL_SECRETS_KEYS does not hold"):
        secrets_keys.verify()


def test_rotate_with_a_wrong_key_touches_nothing(use_keys) -> None:
    use_keys(KEY_A)
    secrets_keys.verify()
    before = _check_token()
    called: list[str] = []

    def hook(keyring: Keyring) -> int:
        called.append(connection.schema_name)  # type: ignore[attr-defined]
        return 0

    secrets_keys.register_rotation(hook)
    use_keys(KEY_B)
    with pytest.raises(CommandError, match="PORTAL_SECRETS_KEYS does not hold"):
        _run("rotate")
    assert called == []
    assert _check_token() == before


def test_rotate_field_re_encrypts_under_the_first_key(use_keys) -> None:
    use_keys(KEY_A)
    secrets_keys.verify()
    keyring = use_keys(f"{KEY_B},{KEY_A}")
    assert secrets_keys.rotate_field(SecretsKeyCheck.objects.all(), "token", keyring) == 1
    assert keyring.opening_key(_check_token()) == 1


def test_rotate_field_never_overwrites_a_row_written_meanwhile(use_keys) -> None:
    use_keys(KEY_A)
    secrets_keys.verify()
    keyring = use_keys(f"{KEY_B},{KEY_A}")
    written_meanwhile = keyring.encrypt(b"a value saved while the rotation ran")

    class WriterInBetween:
        """Rotates as the keyring does, after another process saved the row."""

        def rotate(self, token: bytes) -> bytes:
            SecretsKeyCheck.objects.filter(pk=1).update(token=written_meanwhile)
            return keyring.rotate(token)

    rows = SecretsKeyCheck.objects.all()
    assert secrets_keys.rotate_field(rows, "token", WriterInBetween()) == 0  # type: ignore[arg-type]
    assert _check_token() == written_meanwhile


def test_generate_prints_a_new_key() -> None:
    key = _run("generate").strip()
    assert Keyring([key]).decrypt(Keyring([key]).encrypt(b"x")) == b"x"
