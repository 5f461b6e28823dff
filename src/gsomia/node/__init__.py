"""A party's node: its directory and configuration, and :class:`Node`, which builds the parts
(kernel, exchange, audit log, duties, items, people, credentials, feed, metrics) and wires them."""

from gsomia.node._config import NodeConfig, init_node_dir, load_config, set_endpoint, set_tls
from gsomia.node._credentials import Credentials
from gsomia.node._feed import EVENT_TYPES, FEED_KINDS, Feed, FeedEvent, FeedFilter, FlowEvent, HeadEvent
from gsomia.node._items import MAX_PAGE, ItemService, NewIngest, Page, PortionIngest, ReadPage
from gsomia.node._metrics import LeaseGauge, Metrics
from gsomia.node._people import People
from gsomia.node._service import Clock, Item, Node, system_clock
from gsomia.node._statuses import Statuses

__all__ = [
    "EVENT_TYPES",
    "FEED_KINDS",
    "MAX_PAGE",
    "Clock",
    "Credentials",
    "Feed",
    "FeedEvent",
    "FeedFilter",
    "FlowEvent",
    "HeadEvent",
    "Item",
    "ItemService",
    "LeaseGauge",
    "Metrics",
    "NewIngest",
    "Node",
    "NodeConfig",
    "Page",
    "People",
    "PortionIngest",
    "ReadPage",
    "Statuses",
    "init_node_dir",
    "load_config",
    "set_endpoint",
    "set_tls",
    "system_clock",
]
