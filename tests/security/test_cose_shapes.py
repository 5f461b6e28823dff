"""Attack: a COSE hop whose maps are not maps where the layout has one, read before any key is used.

The reader holds every part of a hop to its type before it looks inside it; the recipient's
unprotected header (the ephemeral key's map) was looked into when it was some other CBOR item (an
integer, a text, a byte string, an array, a tag, a simple value), and the reader's ``AttributeError``
escaped ``open_envelope`` instead of its one ``EnvelopeError``: an inbox's batch of envelopes then
failed whole on one junk envelope, its refusal never tallied. Found by a mutation fuzz of the hop's
bytes held against cbor2 (every mutation the reader accepted was the deterministic encoding; these
were its only other answers). Each is ``malformed``, as every other second layout is.
"""

from __future__ import annotations

from typing import Any

import cbor2
import pytest
from cbor2 import CBORSimpleValue, CBORTag
from tests.crypto.test_cose import Net, message_of, refusal, wrapped

from gsomia.crypto import envelope as env


@pytest.fixture(scope="module")
def net(tmp_path_factory: pytest.TempPathFactory) -> Net:
    return Net(tmp_path_factory.mktemp("shapes"))


def _with_recipient_unprotected(net: Net, item: Any) -> str:
    message = cbor2.loads(message_of(net.sealed()))
    parts = message.value
    recipient = parts[3][0]
    parts[3] = [[recipient[0], item, recipient[2]]]
    return wrapped(cbor2.dumps(CBORTag(96, parts), canonical=True))


@pytest.mark.parametrize(
    "item",
    [
        pytest.param(-1, id="integer"),
        pytest.param("ephemeral", id="text"),
        pytest.param(b"\x01" * 32, id="bytes"),
        pytest.param([-1, {1: 1, -1: 4, -2: b"\x01" * 32}], id="array"),
        pytest.param(CBORTag(96, {}), id="tag"),
        pytest.param(None, id="null"),
        pytest.param(True, id="true"),
        pytest.param(CBORSimpleValue(99), id="simple"),
        pytest.param(1.5, id="float"),
    ],
)
def test_a_recipients_unprotected_header_that_is_not_a_map_is_malformed(net: Net, item: Any) -> None:
    assert net.open(net.sealed()).body is not None
    text = _with_recipient_unprotected(net, item)
    assert refusal(lambda: net.open(text)) == "malformed"
    with pytest.raises(env.EnvelopeError):
        env.envelope_routing(text)


# cbor2 decodes a decimal fraction (tag 4) and a bigfloat (tag 5) into a Decimal as it reads them, and
# the decimal module's own errors are ArithmeticErrors, none of those the reader took for a malformed
# item: a hop's bytes (or its protected header) holding one escaped open_envelope as decimal.Overflow
# or decimal.InvalidOperation. Anyone can send one (the outer layer is read before any key is used).
_BIG_EXPONENT = (2**62).to_bytes(8, "big")


@pytest.mark.parametrize(
    "item",
    [
        pytest.param(b"\xc5\x82\x1b" + _BIG_EXPONENT + b"\x01", id="bigfloat-overflow"),
        pytest.param(b"\xc4\x82\x1b" + _BIG_EXPONENT + b"\x01", id="decimal-invalid-operation"),
        pytest.param(b"\xc4\x82\x3b" + _BIG_EXPONENT + b"\x01", id="decimal-negative-exponent"),
    ],
)
def test_a_decimal_the_decoder_cannot_make_is_malformed(net: Net, item: bytes) -> None:
    assert refusal(lambda: net.open(wrapped(item))) == "malformed"
    parts = cbor2.loads(message_of(net.sealed())).value
    in_header = cbor2.dumps(CBORTag(96, [b"\xa1\x01" + item, *parts[1:]]), canonical=True)
    assert refusal(lambda: net.open(wrapped(in_header))) == "malformed"
    with pytest.raises(env.EnvelopeError):
        env.envelope_routing(wrapped(in_header))
