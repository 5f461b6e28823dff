"""The real-time missile-warning stream: launch records, link sessions, the bus, the relay service.

See ``docs/STREAM.md`` for the path a track takes and the link construction.
"""

from gsomia.stream._batches import CONSUMER_BATCH, batches, parse_consumer_batch
from gsomia.stream._bus import Bus, InProcessBus, NatsBus, Subscription, node_stream_names
from gsomia.stream._launches import Launch, launches, replay
from gsomia.stream._service import (
    FEED_BATCH,
    LINK_PATH,
    LinkLease,
    StreamHost,
    StreamService,
    StreamStats,
    parse_feed_message,
)

__all__ = [
    "CONSUMER_BATCH",
    "FEED_BATCH",
    "LINK_PATH",
    "Bus",
    "InProcessBus",
    "Launch",
    "LinkLease",
    "NatsBus",
    "StreamHost",
    "StreamService",
    "StreamStats",
    "Subscription",
    "batches",
    "launches",
    "node_stream_names",
    "parse_consumer_batch",
    "parse_feed_message",
    "replay",
]
