"""The portal app's models: the user model, defined in the kernel (core/users.py) so the apps
below the wiring can name it; imported here so Django registers it under this app."""

from core.users import User

__all__ = ["User"]
