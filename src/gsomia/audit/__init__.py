"""The tamper-evident audit log (RFC 9162 Merkle tree over the node's audit records), and the
signed tree heads it exchanges with partners (:class:`TreeHeads`, the inbox's ``tree-head`` handler).
"""

from gsomia.audit._heads import GOSSIP_KIND, HEAD_KIND, TreeHeads
from gsomia.audit._log import FLOW_KINDS, AuditLog, VerifyReport, head_content, leaf_data, parse_head

__all__ = [
    "FLOW_KINDS",
    "GOSSIP_KIND",
    "HEAD_KIND",
    "AuditLog",
    "TreeHeads",
    "VerifyReport",
    "head_content",
    "leaf_data",
    "parse_head",
]
