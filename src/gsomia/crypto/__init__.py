"""Cryptography adapters: ``cryptography``, and JOSE (joserfc for keys and identity documents; the
envelopes' compact forms written and read over ``cryptography`` in gsomia.crypto.envelope); no
home-made constructions.

Its neighbours import the public modules named in ``__all__``: ``atrest`` (payloads sealed under
the node key), ``keys`` (the key ring, peers' identities), ``envelope`` (origin signatures, sealed
envelopes) and ``tls`` (certificates bound to the identity by their pins, the TLS contexts).
"""

__all__ = ["atrest", "envelope", "keys", "tls"]
