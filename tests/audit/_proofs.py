"""An inclusion proof as the node answers it (``AuditLog.inclusion``), checked against a root."""

from __future__ import annotations

from typing import Any

from gsomia.core.merkle import leaf_hash, verify_inclusion


def check_proof(proof: dict[str, Any], root: bytes, size: int | None = None) -> None:
    """``ProofError`` unless ``proof`` takes its leaf to ``root`` (in a tree of ``size`` leaves,
    else of the size the proof names)."""
    verify_inclusion(
        leaf_hash(proof["leaf_data"].encode()),
        proof["leaf_index"],
        proof["size"] if size is None else size,
        [bytes.fromhex(h) for h in proof["proof"]],
        root,
    )
