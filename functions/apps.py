from django.apps import AppConfig


class FunctionsConfig(AppConfig):
    """Tenant-schema app: environments, functions, versions, triggers, deployments."""

    name = "functions"
