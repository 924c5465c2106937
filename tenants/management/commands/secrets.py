"""``manage.py secrets verify|rotate|generate``: the key of the stored secrets (PORTAL_SECRETS_KEYS).

Rotation (README, "Configuration"): put a new key first in PORTAL_SECRETS_KEYS with the old one
after it, restart every portal process, run ``secrets rotate``, then drop the old key.
"""

from __future__ import annotations

from typing import Any

from django.core.exceptions import ImproperlyConfigured
from django.core.management.base import BaseCommand, CommandError, CommandParser

from core.crypto import VARIABLE, generate_key
from tenants import secrets_keys


class Command(BaseCommand):
    help = "Check, rotate or generate the key that encrypts stored secrets (PORTAL_SECRETS_KEYS)."

    def add_arguments(self, parser: CommandParser) -> None:
        sub = parser.add_subparsers(dest="action", required=True)
        sub.add_parser("verify", help="Fail unless PORTAL_SECRETS_KEYS opens the stored secrets.")
        sub.add_parser("rotate", help="Re-encrypt every stored secret under the first key.")
        sub.add_parser("generate", help="Print a new key (nothing is stored).")

    def handle(self, *args: Any, **options: Any) -> None:
        action = options["action"]
        if action == "generate":
            self.stdout.write(generate_key())
            return
        try:
            if action == "verify":
                self._verify()
            else:
                self._rotate()
        except ImproperlyConfigured as error:
            raise CommandError(str(error)) from None

    def _verify(self) -> None:
        status = secrets_keys.verify()
        if status.current:
            self.stdout.write(f"{VARIABLE}: the stored secrets are under key 1 (the encrypting key).")
        else:
            self.stdout.write(
                f"{VARIABLE}: the stored secrets open with key {status.key}, not the first: run "
                "`manage.py secrets rotate` before dropping any key."
            )

    def _rotate(self) -> None:
        report = secrets_keys.rotate()
        for schema, rows in report.rows.items():
            self.stdout.write(f"{schema}: {rows} secret(s) re-encrypted")
        self.stdout.write(
            f"Rotated {report.total} secret(s) in {len(report.rows)} tenant schema(s), and the key "
            f"check: everything is under the first key of {VARIABLE}; the others may be dropped."
        )
