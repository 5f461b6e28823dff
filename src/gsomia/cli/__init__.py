"""The ``gsomia`` command line: thin commands over the core, each with ``--json``."""

from gsomia.cli._app import app, main

__all__ = ["app", "main"]
