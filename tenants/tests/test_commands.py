from __future__ import annotations

from io import StringIO

import pytest
from django.core.management import CommandError, call_command

from tenants.models import ApiToken, Membership, Tenant
from tenants.selectors import token_resolve

pytestmark = pytest.mark.django_db


def test_tokens_create_prints_only_the_token(world):
    out = StringIO()
    call_command("tokens", "create", "--tenant", "acme", "--user", "bob", "--role", "developer", stdout=out)
    secret = out.getvalue().strip()
    assert "\n" not in secret
    token = token_resolve(secret)
    assert token is not None
    assert (token.tenant, token.user, token.role) == (world.acme, world.bob, "developer")


@pytest.mark.parametrize(
    "args",
    [
        ["--tenant", "nosuch", "--user", "bob", "--role", "viewer"],
        ["--tenant", "acme", "--user", "nobody", "--role", "viewer"],
        ["--tenant", "acme", "--user", "vera", "--role", "admin"],
        ["--tenant", "globex", "--user", "bob", "--role", "viewer"],
        ["--user", "bob", "--role", "platform_admin"],
    ],
)
def test_tokens_create_refuses_bad_requests(world, args):
    with pytest.raises(CommandError):
        call_command("tokens", "create", *args, stdout=StringIO())
    assert not ApiToken.objects.exists()


def test_bootstrap_is_idempotent(db, tmp_path, runtime_session, django_capture_on_commit_callbacks):
    password_file = tmp_path / "pw"
    # The first run: provisioning queued, and the tenant.create audit record pushed to the live
    # trail; the second: provisioning queued again while it has not run, and nothing recorded.
    for expected in (2, 1):
        with django_capture_on_commit_callbacks(execute=False) as queued:
            call_command("bootstrap", password_file=str(password_file), stdout=StringIO())
        assert len(queued) == expected
    demo = Tenant.objects.get(slug="demo")
    assert demo.state == "provisioning"  # the worker provisions it once the runtime is up
    from tenants import provisioning

    provisioning.tenant_provision(tenant_id=demo.pk)
    demo.refresh_from_db()
    assert demo.state == "ready"
    assert Membership.objects.filter(tenant=demo, user__username="admin", role="admin").count() == 1
    from portal.models import User

    assert User.objects.get(username="admin").check_password(password_file.read_text().strip())
