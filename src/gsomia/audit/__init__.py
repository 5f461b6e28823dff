"""The tamper-evident audit log (RFC 9162 Merkle tree over the node's audit records)."""

from gsomia.audit._log import AuditLog, VerifyReport, leaf_data

__all__ = ["AuditLog", "VerifyReport", "leaf_data"]
