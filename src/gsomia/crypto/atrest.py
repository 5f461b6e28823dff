"""Payload encryption at rest: AES-256-GCM under the node key, bound to the item's id and label.

The label is authenticated data: a stored label rewritten in the database (a silent
downgrade, a widened releasability) makes the payload fail to open, so a copied or
edited database file reveals and changes nothing unnoticed.
"""

from __future__ import annotations

import base64
import binascii
import os

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM, AESSIV
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from gsomia.errors import ConfigError, StoreError

__all__ = ["PayloadCipher"]

_NONCE = 12
_CONTEXT = b"gsomia/item-payload/v1\x00"
_SECRET = b"gsomia/node-secret/v1\x00"  # another context: a sealed secret never opens as a payload
_CURSOR = b"gsomia/list-cursor/v1\x00"  # and another: a cursor opens as nothing else
_CURSOR_TEXT = 32  # base64url of AES-SIV's 16-byte tag and eight bytes (24 bytes, no padding)


class PayloadCipher:
    """Seal and open item payloads with one 256-bit node key."""

    __slots__ = ("_aead", "_cursors")

    def __init__(self, key: bytes) -> None:
        if len(key) != 32:
            raise ConfigError(f"the node key must be 32 bytes, found {len(key)}")
        self._aead = AESGCM(key)
        cursor_key = HKDF(hashes.SHA256(), 64, None, _CURSOR).derive(key)
        self._cursors = AESSIV(cursor_key)

    @staticmethod
    def generate_key() -> bytes:
        return AESGCM.generate_key(bit_length=256)

    @staticmethod
    def _aad(item_id: str, label: str) -> bytes:
        return b"".join((_CONTEXT, item_id.encode(), b"\x00", label.encode()))

    def seal(self, item_id: str, label: str, payload: bytes) -> bytes:
        nonce = os.urandom(_NONCE)
        return nonce + self._aead.encrypt(nonce, payload, self._aad(item_id, label))

    def seal_with_origin(
        self, item_id: str, label: str, payload: bytes, origin: bytes
    ) -> tuple[bytes, bytes]:
        """:meth:`seal` of ``payload`` and of ``origin`` (the originator's signed item), each under a
        fresh random nonce of its own, the same as two calls: the additional data (item id and label)
        built once and both nonces from one read of the OS's generator (issue 18: every item this node
        originates is sealed twice)."""
        aad = self._aad(item_id, label)
        nonces = os.urandom(2 * _NONCE)
        first, second = nonces[:_NONCE], nonces[_NONCE:]
        return (
            first + self._aead.encrypt(first, payload, aad),
            second + self._aead.encrypt(second, origin, aad),
        )

    def open(self, item_id: str, label: str, blob: bytes) -> bytes:
        try:
            return self._aead.decrypt(blob[:_NONCE], blob[_NONCE:], self._aad(item_id, label))
        except (InvalidTag, ValueError) as exc:
            raise StoreError(
                f"item {item_id} failed its integrity check: its stored payload or label was altered, "
                f"or the node key is not the one it was sealed with"
            ) from exc

    def seal_secret(self, name: str, data: bytes) -> bytes:
        """Seal one of the node's own secrets (its key ring) for the store, bound to ``name``."""
        nonce = os.urandom(_NONCE)
        return nonce + self._aead.encrypt(nonce, data, _SECRET + name.encode())

    def open_secret(self, name: str, blob: bytes) -> bytes:
        try:
            return self._aead.decrypt(blob[:_NONCE], blob[_NONCE:], _SECRET + name.encode())
        except (InvalidTag, ValueError) as exc:
            raise ConfigError(
                f"the node's sealed {name} does not open: it was altered, or the node key is not the "
                "one it was sealed with"
            ) from exc

    def seal_cursor(self, scope: str, position: int) -> str:
        """A list's keyset ``position`` (0 to 2**63 - 1) as an opaque cursor for ``scope`` (the
        reader): 32 characters of base64url, AES-SIV (RFC 5297) under a key derived from the node
        key. The position is the store's sequence number, which counts every item, those the reader
        may not read too: sealed, two cursors say nothing of how many items lie between, and a
        cursor opens for its scope only. Deterministic (the same position gives the same cursor to
        the same reader, as a page asked twice gives the same answer)."""
        sealed = self._cursors.encrypt(position.to_bytes(8, "big"), [_CURSOR + scope.encode()])
        return base64.urlsafe_b64encode(sealed).decode()

    def open_cursor(self, scope: str, text: str) -> int | None:
        """The position :meth:`seal_cursor` sealed for ``scope`` in ``text``; ``None`` for anything
        else (altered, forged, sealed for another scope or under another node key)."""
        if len(text) != _CURSOR_TEXT:
            return None
        try:
            sealed = base64.urlsafe_b64decode(text.encode("ascii"))
            return int.from_bytes(self._cursors.decrypt(sealed, [_CURSOR + scope.encode()]), "big")
        except (InvalidTag, ValueError, binascii.Error):
            return None
