from __future__ import annotations

import dataclasses
from typing import Any

from drf_spectacular.utils import extend_schema_serializer
from rest_framework import serializers

from tenants.models import ApiToken, Membership, Tenant
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


class MembershipCreateSerializer(serializers.Serializer[Any]):
    username = serializers.RegexField(r"^[\w.@+-]{1,150}$", max_length=150)
    email = serializers.EmailField(required=False, default="")
    role = serializers.ChoiceField(choices=TENANT_ROLE_CHOICES)


class MembershipCreatedSerializer(MembershipSerializer):
    initial_password = serializers.CharField(
        read_only=True, allow_null=True, help_text="Set when the user was created; shown once."
    )

    class Meta(MembershipSerializer.Meta):
        fields = [*MembershipSerializer.Meta.fields, "initial_password"]
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
