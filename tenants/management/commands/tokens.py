"""``manage.py tokens create --tenant T --user U --role R``: prints only the token."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.utils import timezone

from core.errors import DomainError
from tenants import services
from tenants.roles import Role
from tenants.selectors import tenant_queryset


class Command(BaseCommand):
    help = "Manage API tokens. 'create' prints only the new token, for automation."

    def add_arguments(self, parser: CommandParser) -> None:
        sub = parser.add_subparsers(dest="action", required=True)
        create = sub.add_parser("create", help="Create a token and print it.")
        create.add_argument("--tenant", help="Tenant slug; omit for a platform-admin token.")
        create.add_argument("--user", required=True)
        create.add_argument("--role", required=True, choices=Role.values)
        create.add_argument("--name", default="cli")
        create.add_argument("--expires-in-days", type=int, default=None)

    def handle(self, *args: Any, **options: Any) -> None:
        tenant = None
        if options["tenant"]:
            tenant = tenant_queryset().filter(slug=options["tenant"]).first()
            if tenant is None:
                raise CommandError(f"No tenant {options['tenant']!r}.")
        days = options["expires_in_days"]
        expires_at = timezone.now() + timedelta(days=days) if days else None
        try:
            user = services.user_get(username=options["user"])
            issued = services.token_create(
                tenant=tenant, user=user, name=options["name"], role=options["role"], expires_at=expires_at
            )
        except DomainError as error:
            raise CommandError(f"{error.message} {error.detail or ''}".strip()) from None
        self.stdout.write(issued.secret)
