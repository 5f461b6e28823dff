"""Checks shared by the TAXII tests: OASIS stix2-validator and the extension's JSON schema."""

from __future__ import annotations

from typing import Any

import jsonschema
from stix2validator import ValidationOptions, validate_instance

from gsomia.taxii._stix import EXTENSION_ID, label_schema


def assert_valid_bundle(bundle: dict[str, Any]) -> None:
    """The bundle passes the OASIS validator and every gsomia marking its JSON schema."""
    results = validate_instance(bundle, ValidationOptions(version="2.1"))
    assert results.is_valid, [str(e) for e in results.errors]
    for obj in bundle["objects"]:
        extension = (obj.get("extensions") or {}).get(EXTENSION_ID)
        if obj["type"] == "marking-definition" and extension is not None:
            jsonschema.validate(extension, label_schema(), format_checker=jsonschema.FormatChecker())
