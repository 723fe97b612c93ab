"""passwordless: a self-hosted passwordless sign-in server."""

__version__ = "0.1.0"
