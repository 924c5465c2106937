from django.apps import AppConfig


class ReleasesConfig(AppConfig):
    """Tenant-schema app: rollouts that move an alias from one version to another in judged steps."""

    name = "releases"
