"""The keyring of the stored secrets: round trip, rotation, and messages that name the variable
(and a malformed key's position) without ever showing a key."""

from __future__ import annotations

import pytest
from django.core.exceptions import ImproperlyConfigured

from core.crypto import Keyring, WrongKey, generate_key

KEY_A, KEY_B = generate_key(), generate_key()


@pytest.fixture
def keys_env(monkeypatch: pytest.MonkeyPatch):
    """Set PORTAL_SECRETS_KEYS for this test; the cached keyring is forgotten before and after."""
    monkeypatch.delenv("PORTAL_SECRETS_KEYS_FILE", raising=False)
    Keyring.clear_cache()

    def set_keys(value: str | None) -> None:
        if value is None:
            monkeypatch.delenv("PORTAL_SECRETS_KEYS", raising=False)
        else:
            monkeypatch.setenv("PORTAL_SECRETS_KEYS", value)
        Keyring.clear_cache()

    yield set_keys
    Keyring.clear_cache()


def test_a_secret_round_trips_and_is_not_stored_in_clear() -> None:
    keyring = Keyring([KEY_A])
    token = keyring.encrypt(b"hunter2")
    assert b"hunter2" not in token
    assert keyring.decrypt(token) == b"hunter2"
    assert keyring.decrypt(memoryview(token)) == b"hunter2"  # as a BinaryField reads it


def test_rotation_keeps_every_secret_readable() -> None:
    token = Keyring([KEY_A]).encrypt(b"s3cret")

    during = Keyring.from_text(f"{KEY_B},{KEY_A}")  # the new key first, the old one after
    assert during.decrypt(token) == b"s3cret"
    assert during.opening_key(token) == 2
    rotated = during.rotate(token)
    assert during.opening_key(rotated) == 1

    assert Keyring([KEY_B]).decrypt(rotated) == b"s3cret"  # the old key dropped
    with pytest.raises(WrongKey, match="PORTAL_SECRETS_KEYS"):
        Keyring([KEY_A]).decrypt(rotated)


def test_the_first_key_encrypts() -> None:
    token = Keyring.from_text(f"{KEY_B}\n{KEY_A}\n").encrypt(b"x")
    assert Keyring([KEY_B]).decrypt(token) == b"x"
    with pytest.raises(WrongKey):
        Keyring([KEY_A]).decrypt(token)


def test_a_wrong_key_or_an_altered_token_is_refused_naming_the_variable() -> None:
    token = Keyring([KEY_A]).encrypt(b"x")
    with pytest.raises(WrongKey, match="PORTAL_SECRETS_KEYS: none of its 1 key"):
        Keyring([KEY_B]).decrypt(token)
    with pytest.raises(WrongKey):
        Keyring([KEY_B]).rotate(token)
    with pytest.raises(WrongKey):
        Keyring([KEY_A]).decrypt(token[:-2] + b"AA")
    assert issubclass(WrongKey, ImproperlyConfigured)


def test_a_malformed_key_is_named_by_position_never_shown() -> None:
    bad = "not-a-fernet-key-but-a-password-" + "z" * 20
    with pytest.raises(ImproperlyConfigured) as error:
        Keyring.from_text(f"{KEY_A},{bad},{KEY_B}")
    message = str(error.value)
    assert "PORTAL_SECRETS_KEYS" in message
    assert "key 2 of 3" in message
    for key in (bad, KEY_A, KEY_B):
        assert key not in message
    assert error.value.__cause__ is None
    assert error.value.__suppress_context__  # no chained error that could carry the key


def test_a_keyring_does_not_show_its_keys() -> None:
    keyring = Keyring([KEY_A, KEY_B])
    assert KEY_A not in repr(keyring)
    assert KEY_B not in repr(keyring)


def test_from_settings_reads_the_variable_once(keys_env) -> None:
    keys_env(f"{KEY_A} , {KEY_B}")
    keyring = Keyring.from_settings()
    assert keyring.size == 2
    assert Keyring.from_settings() is keyring  # cached per process
    keys_env(KEY_B)
    assert Keyring.from_settings() is not keyring
    assert Keyring.from_settings().size == 1


def test_the_keys_may_come_from_a_file(keys_env, tmp_path, monkeypatch: pytest.MonkeyPatch) -> None:
    keys_env(None)
    path = tmp_path / "keys"
    path.write_text(f"{KEY_B}\n{KEY_A}\n")
    monkeypatch.setenv("PORTAL_SECRETS_KEYS_FILE", str(path))
    token = Keyring([KEY_A]).encrypt(b"x")
    assert Keyring.from_settings().decrypt(token) == b"x"


@pytest.mark.parametrize("value", [None, "", " ,\n"])
def test_no_key_at_all_says_the_variable_must_be_set(keys_env, value) -> None:
    keys_env(value)
    with pytest.raises(ImproperlyConfigured, match="PORTAL_SECRETS_KEYS must be set"):
        Keyring.from_settings()


def test_generated_keys_are_valid_and_distinct() -> None:
    assert generate_key() != generate_key()
    Keyring([generate_key()])
