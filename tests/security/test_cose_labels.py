"""Attack: a COSE hop whose header labels are not integers but CBOR items Python finds equal to them.

COSE's labels are integers (or text); gsomia's hop uses integers only. A float 1.0 (``f9 3c00``) or
``true`` (``f5``) decodes to a key equal, in a Python dict, to the integer 1, and its deterministic
encoding is itself, so re-encoding gives the bytes back: only a check of each key's type refuses it.
ba99e14 refused the ephemeral key's labels spelt so; here the same spelling in the other maps: the
COSE_Sign1's protected header (a partner signs it), the COSE_Encrypt's protected header and its CWT
claims (anyone can re-encrypt a signed hop to its recipient: a hub on the path). Each is a second
spelling of a hop, not the hop's one layout: refused as ``malformed``, as every other one is.
"""

from __future__ import annotations

from typing import Any

import cbor2
import pytest
from cbor2 import CBORTag
from tests.crypto.test_cose import AT, Net, _inner, _reencrypted, refusal, wrapped

from gsomia.crypto import envelope as env


@pytest.fixture(scope="module")
def net(tmp_path_factory: pytest.TempPathFactory) -> Net:
    return Net(tmp_path_factory.mktemp("labels"))


def _hop(net: Net, sign_header: dict[Any, Any], outer: dict[Any, Any]) -> str:
    """A hop KOR -> JPN signed by KOR's own key over ``sign_header`` and the claims of a hop seal wrote,
    encrypted to JPN under ``outer``."""
    kid, private = net.rings["KOR"].signing_key(AT)
    claims = cbor2.loads(_inner(net, net.sealed())).value[2]
    protected = cbor2.dumps(
        {k: (kid.encode() if v is None else v) for k, v in sign_header.items()}, canonical=True
    )
    signature = private.sign(env._sig_structure(protected, claims))
    plain = cbor2.dumps(CBORTag(18, [protected, {}, claims, signature]), canonical=True)
    return wrapped(_reencrypted(net, plain, cbor2.dumps(outer, canonical=True)))


def _cwt(one: Any = 1, three: Any = 3, four: Any = 4, six: Any = 6, seven: Any = 7) -> dict[Any, Any]:
    iat = int(AT.timestamp())
    return {one: "KOR", three: "JPN", four: iat + 600, six: iat, seven: b"msg-0001"}


SIGN = {1: -8, 4: None, 16: env.HOP_COSE_TYPE}
OUTER = {1: 3, 3: 18, 15: _cwt()}


@pytest.mark.parametrize(
    ("sign_header", "outer"),
    [
        pytest.param({1.0: -8, 4.0: None, 16.0: env.HOP_COSE_TYPE}, OUTER, id="sign1-labels-as-floats"),
        pytest.param({True: -8, 4: None, 16: env.HOP_COSE_TYPE}, OUTER, id="sign1-alg-label-as-true"),
        pytest.param(SIGN, {1.0: 3, 3.0: 18, 15.0: _cwt()}, id="encrypt-labels-as-floats"),
        pytest.param(SIGN, {True: 3, 3: 18, 15: _cwt()}, id="encrypt-alg-label-as-true"),
        pytest.param(SIGN, {1: 3, 3: 18, 15: _cwt(1.0, 3.0, 4.0, 6.0, 7.0)}, id="cwt-claims-as-floats"),
        pytest.param(SIGN, {1: 3, 3: 18, 15: _cwt(one=True)}, id="cwt-iss-as-true"),
    ],
)
def test_a_header_label_spelt_as_another_item_equal_to_it_is_refused(
    net: Net, sign_header: dict[Any, Any], outer: dict[Any, Any]
) -> None:
    assert net.open(_hop(net, SIGN, OUTER)).body is not None  # the same hop with integer labels opens
    assert refusal(lambda: net.open(_hop(net, sign_header, outer))) == "malformed"
