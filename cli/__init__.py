"""faas: the portal's command-line client. It speaks only to the REST API, over HTTP, with a token
(so it works against any portal URL); it imports nothing from the portal (import-linter)."""

__version__ = "0.1.0"
