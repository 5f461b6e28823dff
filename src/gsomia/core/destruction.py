"""Return or destruction (Art. 6(h), 13): how an item may be destroyed, and the record of it.

The record names the item, who destroyed it, the witness, when and how. Pure; the node signs
the record with its key and keeps it in the audit log.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum

from gsomia.core.instants import require_aware
from gsomia.errors import InvalidInputError

__all__ = ["DestructionMethod", "DestructionRecord"]


class DestructionMethod(StrEnum):
    """Methods that leave nothing to rebuild (Art. 13), and return to the originator (Art. 6(h))."""

    CRYPTO_ERASE = "crypto-erase"  # the stored ciphertext is deleted; the payload is gone from the store
    SHREDDING = "shredding"
    INCINERATION = "incineration"
    PULVERISATION = "pulverisation"
    RETURNED = "returned"  # handed back to the originator, then erased here


@dataclass(frozen=True, slots=True)
class DestructionRecord:
    item: str
    holder: str
    originator: str
    classification: str
    by: str
    witness: str
    method: DestructionMethod
    reason: str
    at: datetime

    def __post_init__(self) -> None:
        require_aware(self.at, "destruction instant")
        if self.by == self.witness:
            raise InvalidInputError(f"{self.by} cannot witness their own destruction of {self.item}")
        if not self.reason.strip():
            raise InvalidInputError("give the reason (e.g. the purpose ended)")
