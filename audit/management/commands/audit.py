"""``manage.py audit verify``: check every chain of the audit trail; ``audit prune``: apply the
retention setting now (the beat task does it hourly)."""

from __future__ import annotations

from argparse import ArgumentParser
from datetime import timedelta
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError
from django.utils import timezone

from audit import selectors, services


class Command(BaseCommand):
    help = "Check the audit trail's hash chains (verify) or remove records past retention (prune)."

    def add_arguments(self, parser: ArgumentParser) -> None:
        parser.add_argument("action", choices=["verify", "prune"])
        parser.add_argument("--days", type=int, help="prune: older than this (default: the setting)")

    def handle(self, *args: Any, action: str, days: int | None = None, **options: Any) -> None:
        if action == "verify":
            self._verify()
        else:
            self._prune(settings.AUDIT_RETENTION_DAYS if days is None else days)

    def _verify(self) -> None:
        checked, found = selectors.verify()
        for problem in found:
            self.stderr.write(f"BROKEN {problem}")
        if found:
            raise CommandError(f"audit verify: {len(found)} chain(s) broken, {checked} records read")
        self.stdout.write(f"audit verify: OK, {checked} records")

    def _prune(self, days: int) -> None:
        if days <= 0:
            self.stdout.write("audit prune: retention is 0 (keep everything); nothing removed")
            return
        removed = services.prune(before=timezone.now() - timedelta(days=days))
        self.stdout.write(f"audit prune: removed {sum(removed.values())} records older than {days} days")
