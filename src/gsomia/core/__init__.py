"""The pure core: parties and schemes, agreements and their lifecycle, labels, the release engine.

Nothing in this package reads a clock, a file, a socket or a database: time is an
argument, and time zones arrive as ``tzinfo`` objects built at the boundary.

Its neighbours import the public modules named in ``__all__`` (``from gsomia.core.policy import
ReleaseEngine``); there is no private module here.
"""

__all__ = [
    "access",
    "agreements",
    "assumptions",
    "ballistics",
    "catalogue",
    "derivation",
    "destruction",
    "instants",
    "investigation",
    "labels",
    "lifecycle",
    "merkle",
    "parties",
    "policy",
    "recall",
    "registers",
    "relay",
    "tlp",
    "tracks",
    "visits",
]
