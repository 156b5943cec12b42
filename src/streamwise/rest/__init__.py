"""The REST transport: a Quart-Trio app (served by Hypercorn). Only this package imports quart."""

from .app import WriteTimeout, create_app

__all__ = ["create_app", "WriteTimeout"]
