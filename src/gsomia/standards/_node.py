"""Binding data objects at a node: written for a reader, verified, and imported through the
node's one release and read decisions.

- :func:`export_binding`: the item as a 4778 binding, for a person who may read it (the read is
  decided and audited like any other, ``channel: bdo``); signed by this node, carrying the
  originator's own signature of label and payload.
- :func:`verify_binding`: what a binding says, checked (signer, chain, signature, labels, the
  originator's signature); a refusal is audited (``bdo.refused``) and raised as one opaque error.
- :func:`import_binding`: a verified binding enters as if its signer had delivered the item in an
  envelope: the exchange's inbox decides it (release engine at this instant, the registered link,
  Art. 9), stores it with this node's alternative label, signs a receipt and audits every step; an
  item the same binding brought before is a duplicate, never stored twice.
"""

from __future__ import annotations

import hashlib
from typing import Any, Literal

from gsomia.core.access import Person
from gsomia.errors import EnvelopeError, InvalidInputError
from gsomia.node import Node
from gsomia.standards._adatp4778 import Binding, bind_json, bind_xml, read_binding

__all__ = ["export_binding", "import_binding", "verify_binding"]

Form = Literal["xml", "json"]


def export_binding(node: Node, actor: Person, item_id: str, form: Form) -> bytes:
    """``item_id`` as a binding data object for ``actor`` (who must be able to read it)."""
    if form not in ("xml", "json"):
        raise InvalidInputError(f"a binding is written as xml or json, not {form!r}")
    item, payload = node.items.read(actor, item_id)
    if item.portions:  # the binding's payload is what the originator signed: here, the root alone
        raise InvalidInputError(f"item {item.id} is in portions: it has no ADatP-4778 binding here")
    origin = node.exchange.origin_jws(item.id)
    args: dict[str, Any] = {"catalogue": node.catalogue, "ring": node.ring, "at": node.clock()}
    node.kernel.record("bdo.export", actor.id, item.id, "allowed", form=form)
    if form == "xml":
        return bind_xml(item.id, item.label, item.payload_type, payload, origin, **args)
    return bind_json(item.id, item.label, item.payload_type, payload, origin, **args).encode()


def verify_binding(node: Node, data: bytes) -> Binding:
    """The binding's content, every signature and the chain checked at this node's instant."""
    try:
        return read_binding(
            data,
            catalogue=node.catalogue,
            at=node.clock(),
            identities=node.kernel.peers.peer,
            own=node.ring,
        )
    except EnvelopeError as exc:
        note = {"note": exc.note} if exc.note else {}
        subject = hashlib.sha256(data).hexdigest()
        node.kernel.record("bdo.refused", None, subject, "refused", reason=exc.detail, **note)
        node.kernel.mark_recorded(exc)
        raise


def import_binding(node: Node, data: bytes) -> dict[str, Any]:
    """Receive the item a binding brings, through the inbox's decisions; its one result."""
    binding = verify_binding(node, data)
    if binding.signer.party == node.party:
        raise InvalidInputError("this binding was signed by this node: there is nothing to receive")
    result = node.exchange.receive_bound(binding.signer.party, binding.origin, binding.label.purpose)
    return {**result, "item": binding.item_id, "signer": binding.signer.party}
