"""Fission spec folders (``fission spec init`` / ``generate`` / ``apply``) in and out of a tenant.

``folder`` reads an uploaded folder (a zip) safely, ``objects`` maps its Fission objects onto
the portal's models, ``apply`` plans and applies them through the services (declarative,
idempotent, all or nothing) and ``export`` writes a tenant, or one function, back as a folder.
docs/fission-specs.md describes the mapping and what the portal refuses.
"""
