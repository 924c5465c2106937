"""The local, Fission-compatible data plane. Imports nothing from Django (runtime issue)."""
