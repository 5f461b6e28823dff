"""The REST API of a node (FastAPI), with RFC 9457 problem details."""

from gsomia.api._app import create_app
from gsomia.api._serve import SettledServer
from gsomia.api._tls import PEER_PATHS, server_config

__all__ = ["PEER_PATHS", "SettledServer", "create_app", "server_config"]
