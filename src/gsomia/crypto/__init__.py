"""Cryptography adapters: ``cryptography``, and ``joserfc`` for JOSE; no home-made constructions.

Its neighbours import the public modules named in ``__all__``: ``atrest`` (payloads sealed under
the node key), ``keys`` (the key ring, peers' identities), ``envelope`` (origin signatures, sealed
envelopes) and ``tls`` (certificates bound to the identity by their pins, the TLS contexts).
"""

__all__ = ["atrest", "envelope", "keys", "tls"]
