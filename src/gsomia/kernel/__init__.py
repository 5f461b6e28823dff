"""The node kernel: the one context every service of a node shares (see ``_context``).

Neighbours use what ``__all__`` names: :class:`NodeContext` (store, key ring, clock, catalogue,
release engine, the read decision, ``record``/``refuse``, the item view, the peer directory),
:class:`StoreKeyRing` (the node's keys, the store's) and :class:`ChangeWatch` (the store's generation
counters every process checks before using its copy of keys and peers; :class:`Kept` keeps other
rows read the same way: people, tokens, visits),
:class:`Item` and the item helpers, and the clock (``system_clock``; :class:`ManualClock`, which
moves only when told, for the demo's replay and the tests).
"""

from gsomia.kernel._admission import Admission, parse_networks, parse_rates
from gsomia.kernel._context import (
    DEFAULT_PUBLIC_RATE,
    Clock,
    ManualClock,
    NodeContext,
    ReadGate,
    Refusals,
    Seen,
    checks_json,
    node_hubs,
    node_timezone,
    system_clock,
)
from gsomia.kernel._grouped import GroupedAppend
from gsomia.kernel._items import (
    ITEM_ID,
    PAYLOAD_TYPES,
    PORTIONS,
    HoldAs,
    Item,
    ItemContent,
    Items,
    NewPortion,
    PortionedContent,
    PortionMark,
    SignedPortion,
    check_hold_as,
    check_item_id,
    check_payload_type,
    from_us,
    item_content,
    item_ref,
    new_item_id,
    parse_item_content,
    parse_portioned_content,
    relabelled_leaf,
    signed_portions,
    unknown_item,
)
from gsomia.kernel._kept import Kept
from gsomia.kernel._keys import StoreKeyRing
from gsomia.kernel._peers import PeerDirectory
from gsomia.kernel._watch import DEFAULT_INTERVAL, LISTENING_INTERVAL, ChangeWatch

__all__ = [
    "DEFAULT_INTERVAL",
    "DEFAULT_PUBLIC_RATE",
    "ITEM_ID",
    "LISTENING_INTERVAL",
    "PAYLOAD_TYPES",
    "PORTIONS",
    "Admission",
    "ChangeWatch",
    "Clock",
    "GroupedAppend",
    "HoldAs",
    "Item",
    "ItemContent",
    "Items",
    "Kept",
    "ManualClock",
    "NewPortion",
    "NodeContext",
    "PeerDirectory",
    "PortionMark",
    "PortionedContent",
    "ReadGate",
    "Refusals",
    "Seen",
    "SignedPortion",
    "StoreKeyRing",
    "check_hold_as",
    "check_item_id",
    "check_payload_type",
    "checks_json",
    "from_us",
    "item_content",
    "item_ref",
    "new_item_id",
    "node_hubs",
    "node_timezone",
    "parse_item_content",
    "parse_networks",
    "parse_portioned_content",
    "parse_rates",
    "relabelled_leaf",
    "signed_portions",
    "system_clock",
    "unknown_item",
]
