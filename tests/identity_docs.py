"""Signed identity documents for tests: what one says (its payload, read without checking: the
test made it), and a node's document signed again with some members changed (as its node would
publish it after a change: a new certificate, another endpoint)."""

from __future__ import annotations

import base64
import json
from typing import Any

from gsomia.node import Node


def claims(signed: dict[str, Any]) -> dict[str, Any]:
    """The identity document a signed one carries."""
    payload = signed["payload"]
    return dict(json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4))))


def published(node: Node, **changes: Any) -> dict[str, Any]:
    """``node``'s identity document signed now by its own keys, with ``endpoint`` or ``tls``
    (a tuple of pins) changed."""
    tls = node.kernel.tls
    pins = changes.get("tls", () if tls is None else (tls.pin(),))
    endpoint = changes.get("endpoint", node.kernel.endpoint)
    return node.ring.signed_identity(endpoint, node.clock(), tuple(pins))
