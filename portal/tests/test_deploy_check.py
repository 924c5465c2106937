from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_check_deploy_is_clean_with_production_settings():
    env = dict(
        os.environ,
        PORTAL_DEBUG="0",
        PORTAL_HTTPS="1",
        PORTAL_SECRET_KEY="k" * 20 + "Zq8!x@f#4$u%v^w&y*0(1)2_3+4-5=6[7]8{9}0" + "j" * 20,
        PORTAL_ALLOWED_HOSTS="portal.example.com",
    )
    result = subprocess.run(
        [sys.executable, "manage.py", "check", "--deploy", "--fail-level", "WARNING"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    assert "no issues" in result.stdout


def test_missing_secret_key_fails_at_start_naming_the_variable():
    env = {k: v for k, v in os.environ.items() if not k.startswith("PORTAL_SECRET_KEY")}
    result = subprocess.run(
        [sys.executable, "manage.py", "check"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120
    )
    assert result.returncode != 0
    assert "PORTAL_SECRET_KEY must be set" in result.stderr
