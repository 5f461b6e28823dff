"""TAXII 2.1 and STIX 2.1 for a gsomia node: the STIX mapping of items and labels, and the TAXII routes."""

from gsomia.taxii._server import taxii_router
from gsomia.taxii._stix import from_bundle, from_objects, marking_for, to_bundle, to_stix

__all__ = ["from_bundle", "from_objects", "marking_for", "taxii_router", "to_bundle", "to_stix"]
