"""A party's node: configuration, the service over store and core."""

from gsomia.node._config import NodeConfig, init_node_dir, load_config
from gsomia.node._service import Item, NewIngest, Node, Page, system_clock

__all__ = [
    "Item",
    "NewIngest",
    "Node",
    "NodeConfig",
    "Page",
    "init_node_dir",
    "load_config",
    "system_clock",
]
