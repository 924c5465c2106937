from __future__ import annotations

import pytest
from django.core.exceptions import ImproperlyConfigured

from core import env


def test_readers(monkeypatch):
    monkeypatch.setenv("X_INT", "42")
    monkeypatch.setenv("X_BOOL", "yes")
    monkeypatch.setenv("X_LIST", "a, b,,c")
    assert env.env_int("X_INT", 1) == 42
    assert env.env_bool("X_BOOL", False) is True
    assert env.env_list("X_LIST", []) == ["a", "b", "c"]
    assert env.env_str("X_MISSING", "d") == "d"


def test_bad_values_name_the_variable(monkeypatch):
    monkeypatch.setenv("X_INT", "many")
    monkeypatch.setenv("X_BOOL", "maybe")
    with pytest.raises(ImproperlyConfigured, match="X_INT must be an integer"):
        env.env_int("X_INT", 1)
    with pytest.raises(ImproperlyConfigured, match="X_BOOL must be a boolean"):
        env.env_bool("X_BOOL", False)
    with pytest.raises(ImproperlyConfigured, match="X_REQUIRED must be set"):
        env.env_str("X_REQUIRED")
    monkeypatch.setenv("X_INT", "721")
    with pytest.raises(ImproperlyConfigured, match="X_INT must be <= 720, got 721"):
        env.env_int("X_INT", 1, minimum=1, maximum=720)
    monkeypatch.setenv("X_INT", "720")
    assert env.env_int("X_INT", 1, minimum=1, maximum=720) == 720
    monkeypatch.setenv("X_CHOICE", "c")
    with pytest.raises(ImproperlyConfigured, match="X_CHOICE must be one of a, b"):
        env.env_choice("X_CHOICE", "a", ("a", "b"))


def test_secret_from_file(monkeypatch, tmp_path):
    secret = tmp_path / "secret"
    secret.write_text("s3cret\n")
    monkeypatch.setenv("X_SECRET_FILE", str(secret))
    assert env.env_str("X_SECRET") == "s3cret"
    monkeypatch.setenv("X_SECRET_FILE", str(tmp_path / "missing"))
    with pytest.raises(ImproperlyConfigured, match="X_SECRET_FILE"):
        env.env_str("X_SECRET")
