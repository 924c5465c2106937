from __future__ import annotations

import dataclasses
from typing import Any

from drf_spectacular.utils import extend_schema_serializer
from rest_framework import serializers

from audit.models import ActorType
from audit.selectors import Filters
from tenants.models import ApiToken, Invitation, Membership, Tenant
from tenants.roles import TENANT_ROLES, Role
from tenants.selectors import tenant_quota

TENANT_ROLE_CHOICES = [(r.value, r.label) for r in TENANT_ROLES]


class TenantSerializer(serializers.ModelSerializer[Tenant]):
    quota = serializers.SerializerMethodField(help_text="The tenant's quota ceiling, every field.")

    class Meta:
        model = Tenant
        fields = [
            "slug",
            "name",
            "state",
            "state_reason",
            "suspended",
            "internet_egress",
            "quota",
            "created_at",
        ]
        read_only_fields = fields

    def get_quota(self, tenant: Tenant) -> dict[str, Any]:
        return dataclasses.asdict(tenant_quota(tenant))


class TenantCreateSerializer(serializers.Serializer[Any]):
    slug = serializers.CharField(max_length=40)
    name = serializers.CharField(max_length=100, required=False, default="")


class TenantUpdateSerializer(serializers.Serializer[Any]):
    name = serializers.CharField(max_length=100, required=False)
    suspended = serializers.BooleanField(required=False)
    internet_egress = serializers.BooleanField(required=False)
    quota = serializers.DictField(
        required=False,
        help_text='Quota fields to change, e.g. {"pods": 20, "memory_limits": "8Gi"}; the rest stay.',
    )


class MembershipSerializer(serializers.ModelSerializer[Membership]):
    username = serializers.CharField(source="user.username", read_only=True)
    # A user may have no email (members added by username alone): "" is an answer too.
    email = serializers.EmailField(source="user.email", read_only=True, allow_blank=True)

    class Meta:
        model = Membership
        fields = ["id", "username", "email", "role", "created_at"]
        read_only_fields = fields


class InvitationSerializer(serializers.ModelSerializer[Invitation]):
    invited_by = serializers.CharField(
        source="invited_by.username", read_only=True, allow_null=True, default=None
    )

    class Meta:
        model = Invitation
        fields = ["id", "email", "role", "invited_by", "created_at", "expires_at"]
        read_only_fields = fields


class InvitationCreateSerializer(serializers.Serializer[Any]):
    email = serializers.EmailField(max_length=254)
    role = serializers.ChoiceField(choices=TENANT_ROLE_CHOICES)


class InvitationCreatedSerializer(InvitationSerializer):
    url = serializers.URLField(read_only=True, help_text="The link to send: in this answer only.")

    class Meta(InvitationSerializer.Meta):
        fields = [*InvitationSerializer.Meta.fields, "url"]
        read_only_fields = fields


class MembershipUpdateSerializer(serializers.Serializer[Any]):
    role = serializers.ChoiceField(choices=TENANT_ROLE_CHOICES)


class TokenSerializer(serializers.ModelSerializer[ApiToken]):
    username = serializers.CharField(source="user.username", read_only=True)
    active = serializers.SerializerMethodField()

    class Meta:
        model = ApiToken
        fields = [
            "id", "name", "role", "key_id", "username", "created_at",
            "expires_at", "revoked_at", "last_used_at", "active",
        ]  # fmt: skip
        read_only_fields = fields

    def get_active(self, token: ApiToken) -> bool:
        from django.utils import timezone

        expired = token.expires_at is not None and token.expires_at <= timezone.now()
        return token.revoked_at is None and not expired


class TokenCreateSerializer(serializers.Serializer[Any]):
    name = serializers.CharField(max_length=100)
    role = serializers.ChoiceField(choices=TENANT_ROLE_CHOICES, default=Role.VIEWER.value)
    expires_at = serializers.DateTimeField(required=False, allow_null=True, default=None)


class TokenCreatedSerializer(TokenSerializer):
    token = serializers.CharField(read_only=True, help_text="The secret. Shown only in this answer.")

    class Meta(TokenSerializer.Meta):
        fields = [*TokenSerializer.Meta.fields, "token"]
        read_only_fields = fields


class MembershipBriefSerializer(serializers.Serializer[Any]):
    slug = serializers.CharField()
    name = serializers.CharField()
    role = serializers.CharField()
    state = serializers.CharField()


class MeSerializer(serializers.Serializer[Any]):
    username = serializers.CharField()
    email = serializers.CharField()
    is_platform_admin = serializers.BooleanField()
    tenants = MembershipBriefSerializer(many=True)


@extend_schema_serializer(many=False)  # the answer of a viewset's `list`, yet one object
class TenantMeSerializer(serializers.Serializer[Any]):
    username = serializers.CharField()
    tenant = serializers.CharField()
    role = serializers.CharField()
    token_role = serializers.CharField(allow_null=True)


# ------------------------------------------------------------ the audit trail


class AuditQuery(serializers.Serializer[dict[str, Any]]):
    """What a reader narrows a trail to (audit.selectors.Filters); each one given is required."""

    actor = serializers.CharField(
        max_length=150, required=False, help_text='A username, "system", or an API token\'s key id'
    )
    object_type = serializers.CharField(
        max_length=32, required=False, help_text="e.g. `function`, `alias`, `member`, `tenant`"
    )
    object = serializers.CharField(
        max_length=200, required=False, help_text="The start of the object's name: `hello` finds hello/prod"
    )
    action = serializers.CharField(
        max_length=48,
        required=False,
        help_text='Exact (`function.update`) or a prefix ending in "." (`function.`)',
    )
    since = serializers.DateTimeField(
        required=False, help_text="ISO 8601 (UTC without an offset): at or after"
    )
    until = serializers.DateTimeField(required=False, help_text="ISO 8601 (UTC without an offset): before")

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        since, until = attrs.get("since"), attrs.get("until")
        if since is not None and until is not None and until <= since:
            raise serializers.ValidationError({"until": ["Must be later than since."]})
        return attrs

    def filters(self) -> Filters:
        data = self.validated_data
        return Filters(
            actor=data.get("actor", ""), object_type=data.get("object_type", ""),
            object_name=data.get("object", ""), action=data.get("action", ""),
            since=data.get("since"), until=data.get("until"),
        )  # fmt: skip


class AuditRecordSerializer(serializers.Serializer[Any]):
    """One record of the trail, as audit.selectors.as_dict shows it (its FIELDS, in order)."""

    id = serializers.IntegerField()
    at = serializers.DateTimeField(help_text="When the change was made")
    tenant_slug = serializers.CharField(help_text="The tenant the change concerns; empty for the platform")
    actor_type = serializers.ChoiceField(choices=ActorType.choices)
    actor_name = serializers.CharField(help_text='The username, or "system" (a task, a command)')
    token_id = serializers.CharField(help_text="The API token's key id, when the change came with one")
    ip = serializers.CharField(
        help_text="The client's address; empty when unknown or not the tenant's business"
    )
    user_agent = serializers.CharField()
    object_type = serializers.CharField()
    object_name = serializers.CharField(help_text='Children of a function are "<function>/<name>"')
    action = serializers.CharField(help_text='"<object_type>.<verb>", e.g. `function.update`')
    changes = serializers.DictField(
        child=serializers.ListField(child=serializers.JSONField(), min_length=2, max_length=2),
        help_text="{setting: [before, after]} for each setting that changed: names, versions, never values",
    )
    effects = serializers.ListField(
        child=serializers.CharField(), help_text='What the change set off: "<action> <object_name>"'
    )
    chain = serializers.IntegerField(help_text="0: the platform's chain; otherwise the tenant's")
    seq = serializers.IntegerField(help_text="The record's place in its chain, from 1")
    hash = serializers.CharField(help_text="SHA-256 over the record and the previous record's hash")
