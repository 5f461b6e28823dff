"""The REST API of a node (FastAPI), with RFC 9457 problem details."""

from gsomia.api._app import create_app

__all__ = ["create_app"]
