"""The ``labelvault`` command line."""

from labelvault.cli.main import app, main

__all__ = ["app", "main"]
