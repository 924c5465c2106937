"""Encryption at rest for tenant secrets: Fernet (AES-128-CBC + HMAC-SHA256) under a keyring.

The keys come from ``PORTAL_SECRETS_KEYS`` (or ``PORTAL_SECRETS_KEYS_FILE``), read through
``core.env``: Fernet keys separated by commas or newlines. The FIRST key encrypts; every key
decrypts, so a rotation is: put the new key first and keep the old one after it, run
``manage.py secrets rotate`` (every stored token re-encrypted under the first key), then drop
the old key (README, "Configuration").

The variable is read here, lazily, on the first use of the keyring, and not in
``portal/settings.py``: importing the settings must keep working for the commands that never
touch a secret (``make lint``, ``collectstatic`` with ``OFFLINE_ENV``). A missing or wrong key
still fails at start-up: ``portal.up`` and ``manage.py secrets verify`` open the stored key
check (``tenants.secrets_keys.verify``) before anything else runs.

No message ever contains a key: a malformed one is named by its position in the list.
"""

from __future__ import annotations

import functools
import re

from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from django.core.exceptions import ImproperlyConfigured

from core.env import env_str

VARIABLE = "PORTAL_SECRETS_KEYS"
_SEPARATORS = re.compile(r"[,\s]+")  # commas or newlines (a key never holds either, nor spaces)


class WrongKey(ImproperlyConfigured):
    """No key of ``PORTAL_SECRETS_KEYS`` opens a token (or the token was altered)."""


def generate_key() -> str:
    """A new random Fernet key (32 bytes, url-safe base64), for ``PORTAL_SECRETS_KEYS``."""
    return Fernet.generate_key().decode()


class Keyring:
    """Fernet keys, the first encrypting and all decrypting. Holds the keys and never shows them."""

    __slots__ = ("_fernets", "_multi")

    def __init__(self, keys: list[str]) -> None:
        if not keys:
            raise ImproperlyConfigured(
                f"{VARIABLE} must be set: one or more Fernet keys separated by commas or newlines, "
                "the first encrypts (make one with `manage.py secrets generate`)"
            )
        self._fernets = [_fernet(key, position, len(keys)) for position, key in enumerate(keys, 1)]
        self._multi = MultiFernet(self._fernets)

    def __repr__(self) -> str:
        return f"<Keyring of {len(self._fernets)} key(s)>"

    @classmethod
    def from_text(cls, text: str) -> Keyring:
        """The keys of ``text`` (the variable's value), split on commas and newlines."""
        return cls([key for key in _SEPARATORS.split(text) if key])

    @classmethod
    def from_settings(cls) -> Keyring:
        """The process's keyring, from ``PORTAL_SECRETS_KEYS``, read once and then cached
        (``clear_cache`` forgets it, for tests that change the variable)."""
        return _configured()

    @staticmethod
    def clear_cache() -> None:
        _configured.cache_clear()

    @property
    def size(self) -> int:
        return len(self._fernets)

    def encrypt(self, data: bytes) -> bytes:
        """A Fernet token of ``data`` under the first key."""
        return self._multi.encrypt(data)

    def decrypt(self, token: bytes | memoryview) -> bytes:
        """The plaintext of ``token`` (a BinaryField's memoryview too); ``WrongKey`` when no key
        opens it."""
        try:
            return self._multi.decrypt(bytes(token))
        except InvalidToken:
            raise _wrong_key(self.size) from None

    def rotate(self, token: bytes | memoryview) -> bytes:
        """``token`` re-encrypted under the first key (its timestamp kept); ``WrongKey`` when no
        key opens it. Idempotent in effect: a token already under the first key stays readable."""
        try:
            return self._multi.rotate(bytes(token))
        except InvalidToken:
            raise _wrong_key(self.size) from None

    def opening_key(self, token: bytes | memoryview) -> int:
        """The position (1-based) of the first key that opens ``token``: 1 means it is under the
        encrypting key, more that it awaits ``rotate``. ``WrongKey`` when none opens it."""
        raw = bytes(token)
        for position, fernet in enumerate(self._fernets, 1):
            try:
                fernet.decrypt(raw)
            except InvalidToken:
                continue
            return position
        raise _wrong_key(self.size)


def _fernet(key: str, position: int, count: int) -> Fernet:
    try:
        return Fernet(key)
    except (ValueError, TypeError):
        # ``from None``: the cause (binascii's error) must not carry the key into a traceback.
        raise ImproperlyConfigured(
            f"{VARIABLE}: key {position} of {count} is not a Fernet key "
            "(32 url-safe base64-encoded bytes; make one with `manage.py secrets generate`)"
        ) from None


def _wrong_key(count: int) -> WrongKey:
    return WrongKey(f"{VARIABLE}: none of its {count} key(s) opens this secret")


@functools.cache
def _configured() -> Keyring:
    return Keyring.from_text(env_str(VARIABLE, ""))
