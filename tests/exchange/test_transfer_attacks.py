"""Adversarial review of a transfer file's envelopes read before they are opened (issue 18's COSE
switch: ``envelope_routing`` reads either format and refuses anything else as ``EnvelopeError``).

A partner signs a manifest over envelopes that are not envelopes (garbage, an unknown format, a
COSE message cut short). The import must refuse the file whole, as it refuses an envelope from
another sender, with its reason and a ``transfer.refused`` record, and store nothing: before the fix
the ``EnvelopeError`` escaped the import unaudited (the sender check caught only what the JOSE-only
reader had raised)."""

from __future__ import annotations

import hashlib
import json
import uuid
from datetime import timedelta

import pytest
from tests.exchange.test_transfer import audit, exported, nodes, own_item, transfer

from gsomia._codec import canonical
from gsomia.crypto.envelope import sign_origin
from gsomia.errors import InvalidInputError
from gsomia.exchange._transfer import MANIFEST_KIND, TRANSFER_FORMAT
from gsomia.node import Node

__all__ = ["nodes"]


def _file(node: Node, recipient: str, envelopes: list[str]) -> str:
    """A transfer file ``node`` signs over ``envelopes``, whatever they are."""
    now = node.clock()
    manifest = {
        "v": 1,
        "kind": MANIFEST_KIND,
        "id": uuid.uuid4().hex,
        "sender": node.party,
        "recipient": recipient,
        "final_recipient": recipient,
        "via": [],
        "created": now.isoformat(),
        "expires": (now + timedelta(days=1)).isoformat(),
        "envelopes": [
            {"msg_id": f"m{i}", "sha256": hashlib.sha256(e.encode()).hexdigest()}
            for i, e in enumerate(envelopes)
        ],
    }
    signed = sign_origin(node.ring, canonical(manifest).encode(), now)
    return json.dumps({"format": TRANSFER_FORMAT, "manifest": signed, "envelopes": envelopes})


@pytest.mark.parametrize(
    "bad",
    [
        "not an envelope",
        json.dumps({"format": "gsomia-envelope/9", "cose": "AAAA"}),
        '{"format":"gsomia-envelope/2","cose":"2GCE"}',  # a COSE_Encrypt's tag, cut short
    ],
)
def test_a_signed_file_over_things_that_are_not_envelopes_is_refused_whole_and_audited(
    nodes: dict[str, Node], bad: str
) -> None:
    own_item(nodes["KOR"], "k1")
    out = exported(nodes)
    assert out.text is not None
    genuine = json.loads(out.text)["envelopes"]
    before = len(audit(nodes["JPN"], "transfer.refused"))
    with pytest.raises(InvalidInputError, match="transfer file refused"):
        transfer(nodes["JPN"]).import_file(_file(nodes["KOR"], "JPN", [*genuine, bad]))
    assert nodes["JPN"].store.get_item("k1") is None  # refused whole: the genuine one is not taken either
    refused = audit(nodes["JPN"], "transfer.refused")
    assert len(refused) == before + 1
    assert refused[-1]["outcome"] == "refused"
