"""The payload cipher: a payload and the originator's signed item sealed together (issue 18)."""

from __future__ import annotations

import pytest

from gsomia.crypto.atrest import PayloadCipher
from gsomia.errors import StoreError


def test_a_payload_and_its_origin_sealed_together_open_as_two_seals_do_each_under_its_own_nonce() -> None:
    cipher = PayloadCipher(PayloadCipher.generate_key())
    label = '{"originator":"JPN"}'
    sealed, origin = cipher.seal_with_origin("item-1", label, b"payload", b"signed item")
    assert cipher.open("item-1", label, sealed) == b"payload"
    assert cipher.open("item-1", label, origin) == b"signed item"
    assert sealed[:12] != origin[:12]  # a fresh nonce each: never one nonce for two plaintexts
    assert len(sealed) == len(cipher.seal("item-1", label, b"payload"))  # nonce || ciphertext || tag
    again = cipher.seal_with_origin("item-1", label, b"payload", b"signed item")
    assert {again[0][:12], again[1][:12]}.isdisjoint({sealed[:12], origin[:12]})
    # bound to the item and its label, as seal binds them
    for item_id, text in (("item-2", label), ("item-1", '{"originator":"KOR"}')):
        for blob in (sealed, origin):
            with pytest.raises(StoreError, match="failed its integrity check"):
                cipher.open(item_id, text, blob)
    with pytest.raises(StoreError):
        PayloadCipher(PayloadCipher.generate_key()).open("item-1", label, origin)
