#!/usr/bin/env python
"""Django's command-line utility.

While ``make run`` is running, its embedded services are found through
``.data/running.env`` (or ``$PORTAL_DATA_DIR/running.env``) when DATABASE_URL is not set.
"""

import os
import sys
from pathlib import Path


def load_running_env() -> None:
    if os.environ.get("DATABASE_URL"):
        return
    data = Path(os.environ.get("PORTAL_DATA_DIR", Path(__file__).resolve().parent / ".data"))
    env_file = data / "running.env"
    if env_file.exists():
        for line in env_file.read_text().splitlines():
            name, _, value = line.partition("=")
            os.environ.setdefault(name, value)


if __name__ == "__main__":
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "portal.settings")
    load_running_env()
    from django.core.management import execute_from_command_line

    execute_from_command_line(sys.argv)
