"""A party's node: its directory and configuration, and :class:`Node`, which builds the parts
(kernel, exchange, audit log, duties) and wires them."""

from gsomia.node._config import NodeConfig, init_node_dir, load_config, set_endpoint, set_tls
from gsomia.node._feed import FEED_KINDS, Feed, FeedEvent, FeedFilter
from gsomia.node._service import (
    MAX_PAGE,
    Clock,
    Item,
    NewIngest,
    Node,
    Page,
    PortionIngest,
    ReadPage,
    system_clock,
)

__all__ = [
    "FEED_KINDS",
    "MAX_PAGE",
    "Clock",
    "Feed",
    "FeedEvent",
    "FeedFilter",
    "Item",
    "NewIngest",
    "Node",
    "NodeConfig",
    "Page",
    "PortionIngest",
    "ReadPage",
    "init_node_dir",
    "load_config",
    "set_endpoint",
    "set_tls",
    "system_clock",
]
