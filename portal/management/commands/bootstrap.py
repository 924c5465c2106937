"""Idempotent first-run data: the public tenant, a platform admin and a demo tenant."""

from __future__ import annotations

import os
import secrets
from pathlib import Path
from typing import Any

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandParser
from django_tenants.utils import get_public_schema_name

from tenants import services
from tenants.models import Membership, Tenant, TenantState
from tenants.roles import Role


class Command(BaseCommand):
    help = "Create (once) the public tenant, the platform admin 'admin' and the 'demo' tenant."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--password-file", required=True, help="Where the admin password is kept.")
        parser.add_argument("--admin", default="admin")
        parser.add_argument("--demo", default="demo")

    def handle(self, *args: Any, **options: Any) -> None:
        public = get_public_schema_name()
        Tenant.objects.get_or_create(
            schema_name=public, defaults={"slug": "_public", "name": "public", "state": TenantState.READY}
        )
        password = self._password(Path(options["password_file"]))
        admin = self._admin(options["admin"], password)
        self._demo(options["demo"], admin)
        # Where `make run` serves (portal/up.py reads the same variables).
        where = f"{os.environ.get('PORTAL_HOST', '127.0.0.1')}:{os.environ.get('PORTAL_PORT', '8000')}"
        self.stdout.write(
            self.style.SUCCESS(f"Sign in at http://{where}/login/ as {options['admin']} / {password}")
        )

    def _password(self, path: Path) -> str:
        if not path.exists():
            path.write_text(secrets.token_urlsafe(12))
            path.chmod(0o600)
        return path.read_text().strip()

    def _admin(self, username: str, password: str) -> Any:
        user_model = get_user_model()
        admin = user_model.objects.filter(username=username).first()
        if admin is None:
            admin = user_model.objects.create_superuser(username=username, email="", password=password)
        return admin

    def _demo(self, slug: str, admin: Any) -> None:
        """The demo tenant. Its provisioning (schema and data plane) is a queued task: the data
        plane, the runtime, starts after this command, and the task retries until it answers."""
        tenant = Tenant.objects.filter(slug=slug).first()
        if tenant is None:
            tenant = services.tenant_create(slug=slug, name="Demo", admin=None)
        elif tenant.state == TenantState.PROVISIONING:
            services.tenant_requeue(tenant=tenant)  # left half-way by an earlier run
        elif tenant.state == TenantState.FAILED:
            services.tenant_retry(tenant=tenant)
        Membership.objects.get_or_create(user=admin, tenant=tenant, defaults={"role": Role.ADMIN})
