from django.apps import AppConfig


class PortalConfig(AppConfig):
    """The project wiring. ``ready()`` is the composition root: it plugs the apps that keep data
    in a tenant's schema into the tenant lifecycle, which cannot import them (docs/architecture.md)."""

    name = "portal"

    def ready(self) -> None:
        # Imported here, not at the top: models may only be imported once the app registry is ready.
        from functions.runs import deployments as deployment_runs
        from functions.services import configuration, deployments
        from functions.services.functions import environment_ensure_default
        from tenants import lifecycle, secrets_keys

        lifecycle.connect(
            lifecycle.SchemaHooks(
                created=environment_ensure_default,
                suspended=deployment_runs.tenant_scale_to_zero,
                resumed=deployments.tenant_resumed,
            )
        )
        # `manage.py secrets rotate` re-encrypts every tenant's Secrets under the first key.
        secrets_keys.register_rotation(configuration.rotate_secrets)
