"""The STIX 2.1 mapping: an item is a STIX object, its gsomia label a ``marking-definition``.

- An item whose payload is itself a STIX 2.1 object with the item's id (an ``indicator``, a
  ``report``, a ``note`` ...) *is* that object. Any other item is wrapped in an
  ``x-gsomia-item`` object (a STIX 2.1 ``new-sdo`` extension: ``item_id``, ``payload_type``
  and ``payload`` — the JSON value, or ``payload_base64`` for bytes).
- The label travels as a ``marking-definition`` carrying the gsomia property extension
  (:data:`EXTENSION_ID`, JSON schema in ``schema/gsomia-label.json``), referenced from the
  object's ``object_marking_refs``. Its id is derived from the label, so the same label is the
  same marking. Alternative labels ride along as information; a receiver recomputes its own.
- TLP (2.0, and 1.0 for old feeds) markings in the payload are kept as they are: TLP is in
  addition to the gsomia label, never instead of it. ``TLP:RED`` never leaves the node
  (:func:`is_tlp_red`; the TAXII server withholds such objects).
- Import refuses an object without exactly one gsomia marking unless a default label is given
  explicitly, an object referring to a marking the bundle does not define (TLP aside), and
  anything that is not a STIX 2.1 object.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import re
import uuid
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import cache
from importlib import resources
from typing import Any

from gsomia._codec import canonical, label_to_dict
from gsomia.core.labels import SecurityLabel
from gsomia.core.tlp import TLP_RED, is_tlp_red
from gsomia.errors import InvalidInputError

__all__ = [
    "EXTENSION_ID",
    "IDENTITY_ID",
    "ITEM_TYPE",
    "STIX_MEDIA_TYPE",
    "TLP_RED",
    "ImportedObject",
    "extension_objects",
    "from_bundle",
    "from_objects",
    "is_tlp_red",
    "label_schema",
    "marking_for",
    "stix_id_of",
    "stix_timestamp",
    "to_bundle",
    "to_stix",
]

STIX_MEDIA_TYPE = "application/stix+json;version=2.1"
ITEM_TYPE = "x-gsomia-item"
IDENTITY_ID = "identity--a2180151-9a70-4cef-9d4b-8afa80bd2e5a"
EXTENSION_ID = "extension-definition--adba1d4e-74dc-4c8e-b9a9-f698abcdf3f7"
_EPOCH = (
    "2024-01-01T00:00:00.000Z"  # when the extension was first defined: fixed, so ids and versions stay stable
)

_TLP = TLP_RED | {
    "marking-definition--94868c89-83c2-464b-929b-a1a8aa3c8487",  # 2.0 CLEAR
    "marking-definition--bab4a63c-aed9-4cf5-a766-dfca5abac2bb",  # 2.0 GREEN
    "marking-definition--55d920b0-5e8b-4f79-9ee9-91f868d9b421",  # 2.0 AMBER
    "marking-definition--939a9414-2ddd-4d32-a0cd-375ea402b003",  # 2.0 AMBER+STRICT
    "marking-definition--613f2e26-407d-48c7-9eca-b8e91df99dc9",  # 1.0 WHITE
    "marking-definition--34098fce-860f-48ae-8e50-ebd3cc5e41da",  # 1.0 GREEN
    "marking-definition--f88d31f6-486f-44da-b317-01333bde0b82",  # 1.0 AMBER
}
_STIX_ID = re.compile(
    r"^([a-z][a-z0-9-]{1,248})--([0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12})$"
)
_FRAMEWORK = frozenset({IDENTITY_ID, EXTENSION_ID})


@cache
def label_schema() -> dict[str, Any]:
    """The JSON schema of the gsomia marking extension (``schema/gsomia-label.json``)."""
    text = resources.files("gsomia.taxii").joinpath("schema/gsomia-label.json").read_text("utf-8")
    schema: dict[str, Any] = json.loads(text)
    return schema


def stix_timestamp(at: datetime) -> str:
    """STIX 2.1 timestamp: UTC, millisecond precision, ``Z``."""
    return at.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def _derived_uuid(kind: str, key: str) -> str:
    """A stable id in UUIDv4 form (what the validator asks of SDO ids) derived from ``key``."""
    digest = hashlib.sha256(f"gsomia:{kind}:{key}".encode()).digest()
    return str(uuid.UUID(bytes=digest[:16], version=4))


def _drop_empty(data: Mapping[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in data.items() if v is not None and v != []}  # STIX forbids nulls and empty lists


def marking_for(label: SecurityLabel) -> dict[str, Any]:
    """The ``marking-definition`` carrying ``label``; the same label always gives the same id."""
    content = _drop_empty(label_to_dict(label))
    content["alternatives"] = [dict(a) for a in content.get("alternatives", [])] or None
    content = _drop_empty(content)
    return {
        "type": "marking-definition",
        "spec_version": "2.1",
        "id": f"marking-definition--{_derived_uuid('label', canonical(content))}",
        "created": stix_timestamp(label.created),
        "created_by_ref": IDENTITY_ID,
        "name": f"gsomia {label.originator} {label.classification}",
        "extensions": {EXTENSION_ID: {"extension_type": "property-extension", **content}},
    }


def extension_objects() -> list[dict[str, Any]]:
    """The identity and ``extension-definition`` every gsomia bundle carries."""
    return [
        {
            "type": "identity",
            "spec_version": "2.1",
            "id": IDENTITY_ID,
            "created": _EPOCH,
            "modified": _EPOCH,
            "name": "gsomia",
            "description": "Intelligence-sharing agreements between states as running, enforced software",
            "identity_class": "system",
        },
        {
            "type": "extension-definition",
            "spec_version": "2.1",
            "id": EXTENSION_ID,
            "created_by_ref": IDENTITY_ID,
            "created": _EPOCH,
            "modified": _EPOCH,
            "name": "gsomia security label",
            "description": "A gsomia confidentiality label (policy, originator's classification, "
            "releasability, caveats, purpose, topics, alternative labels) on a marking-definition; "
            "and x-gsomia-item, an item whose payload is not itself a STIX object.",
            "schema": "gsomia/taxii/schema/gsomia-label.json (JSON Schema 2020-12, shipped with gsomia)",
            "version": "1.0.0",
            "extension_types": ["property-extension", "new-sdo"],
        },
    ]


def _native(item_id: str, payload_type: str, payload: bytes) -> dict[str, Any] | None:
    """The payload as a STIX object, if it is one and carries the item's own id."""
    if payload_type != "json":
        return None
    try:
        data = json.loads(payload)
    except ValueError:
        return None
    if (
        isinstance(data, dict)
        and data.get("spec_version") == "2.1"
        and data.get("id") == item_id
        and isinstance(data.get("type"), str)
        and _STIX_ID.match(item_id)
        and item_id.startswith(f"{data['type']}--")
    ):
        return data
    return None


def stix_id_of(item_id: str, payload_type: str, payload: bytes) -> str:
    """The STIX id under which an item is served."""
    if _native(item_id, payload_type, payload) is not None:
        return item_id
    try:
        as_uuid = uuid.UUID(item_id)
    except ValueError:
        as_uuid = None
    if as_uuid is not None and str(as_uuid) == item_id and as_uuid.version == 4:
        return f"{ITEM_TYPE}--{item_id}"
    return f"{ITEM_TYPE}--{_derived_uuid('item', item_id)}"


def to_stix(
    item_id: str, label: SecurityLabel, payload_type: str, payload: bytes, ingested: datetime
) -> dict[str, Any]:
    """The STIX object for an item, marked with its gsomia label (and any TLP it already had)."""
    marking = marking_for(label)["id"]
    native = _native(item_id, payload_type, payload)
    if native is not None:
        refs = [r for r in native.get("object_marking_refs", []) if r != marking]
        return {**native, "object_marking_refs": [marking, *refs]}
    body: dict[str, Any] = {
        "type": ITEM_TYPE,
        "spec_version": "2.1",
        "id": stix_id_of(item_id, payload_type, payload),
        "created": stix_timestamp(label.created),
        "modified": stix_timestamp(ingested),
        "item_id": item_id,
        "payload_type": payload_type,
        "object_marking_refs": [marking],
        "extensions": {EXTENSION_ID: {"extension_type": "new-sdo"}},
    }
    if payload_type == "json":
        body["payload"] = json.loads(payload)
    else:
        body["payload_base64"] = base64.b64encode(payload).decode()
    return body


def to_bundle(objects: Sequence[tuple[SecurityLabel, dict[str, Any]]]) -> dict[str, Any]:
    """A bundle of already mapped objects with their label markings and the extension definition.

    Refuses TLP:RED: it never leaves the node.
    """
    for _, obj in objects:
        if is_tlp_red(obj):
            raise InvalidInputError(f"{obj['id']} is marked TLP:RED: it never leaves this node")
    markings: dict[str, dict[str, Any]] = {}
    for label, _ in objects:
        marking = marking_for(label)
        markings.setdefault(marking["id"], marking)
    return {
        "type": "bundle",
        "id": f"bundle--{uuid.uuid4()}",
        "objects": [*extension_objects(), *markings.values(), *(obj for _, obj in objects)],
    }


@dataclass(frozen=True, slots=True)
class ImportedObject:
    """One STIX object to ingest: the item id, the label (boundary dict form) and the payload."""

    item_id: str
    label: dict[str, Any]
    payload_type: str
    payload: bytes


def _label_of(marking: Mapping[str, Any]) -> dict[str, Any] | None:
    extensions = marking.get("extensions")
    ext = extensions.get(EXTENSION_ID) if isinstance(extensions, Mapping) else None
    if not isinstance(ext, Mapping):
        return None
    # alternatives are the sender's receivers' equivalents; this node computes its own
    return {k: v for k, v in ext.items() if k not in ("extension_type", "alternatives")}


def from_bundle(bundle: Any, *, default_label: Mapping[str, Any] | None = None) -> list[ImportedObject]:
    """The labelled items in a STIX 2.1 bundle (see :func:`from_objects`)."""
    if not isinstance(bundle, Mapping) or bundle.get("type") != "bundle":
        raise InvalidInputError("not a STIX bundle: expected an object with type 'bundle'")
    objects = bundle.get("objects") or []
    if not isinstance(objects, list):
        raise InvalidInputError("bundle.objects: expected a list")
    return from_objects(objects, default_label=default_label)


def from_objects(
    objects: Iterable[Any], *, default_label: Mapping[str, Any] | None = None
) -> list[ImportedObject]:
    """Labelled items from STIX objects; their gsomia markings must be among them.

    An object without a gsomia marking is refused unless ``default_label`` is given.
    """
    items = list(objects)
    labels: dict[str, dict[str, Any]] = {}
    others: list[Mapping[str, Any]] = []
    for n, obj in enumerate(items):
        if not isinstance(obj, Mapping) or not isinstance(obj.get("id"), str):
            raise InvalidInputError(f"objects[{n}]: not a STIX object (no id)")
        match = _STIX_ID.match(obj["id"])
        if match is None or match.group(1) != obj.get("type"):
            raise InvalidInputError(f"objects[{n}]: {obj['id']!r} is not a STIX identifier of its type")
        if obj.get("spec_version", "2.1") != "2.1":
            raise InvalidInputError(
                f"{obj['id']}: spec_version {obj.get('spec_version')!r}; gsomia reads 2.1"
            )
        if obj["id"] in _FRAMEWORK or obj["id"] in _TLP:
            continue
        if obj["type"] == "marking-definition":
            label = _label_of(obj)
            if label is not None:
                labels[obj["id"]] = label
            continue
        others.append(obj)
    return [_imported(obj, labels, default_label) for obj in others]


def _imported(
    obj: Mapping[str, Any], labels: Mapping[str, dict[str, Any]], default: Mapping[str, Any] | None
) -> ImportedObject:
    refs = obj.get("object_marking_refs") or []
    if not isinstance(refs, list) or not all(isinstance(r, str) for r in refs):
        raise InvalidInputError(f"{obj['id']}: object_marking_refs is not a list of identifiers")
    unknown = [r for r in refs if r not in labels and r not in _TLP]
    if unknown:
        raise InvalidInputError(f"{obj['id']}: marking(s) {', '.join(map(str, unknown))} not in the bundle")
    mine = [r for r in refs if r in labels]
    if len(mine) > 1:
        raise InvalidInputError(f"{obj['id']}: {len(mine)} gsomia labels; an item carries exactly one")
    if mine:
        label = labels[mine[0]]
    elif default is not None:
        label = dict(default)
    else:
        raise InvalidInputError(
            f"{obj['id']}: no gsomia label marking; give a default label explicitly to import it"
        )
    if obj["type"] == ITEM_TYPE:
        return _unwrapped(obj, label)
    kept = [r for r in refs if r not in labels]
    payload = {k: v for k, v in obj.items() if k != "object_marking_refs"}
    if kept:
        payload["object_marking_refs"] = kept
    return ImportedObject(obj["id"], label, "json", json.dumps(payload, ensure_ascii=False).encode())


def _unwrapped(obj: Mapping[str, Any], label: dict[str, Any]) -> ImportedObject:
    item_id = obj.get("item_id")
    if not isinstance(item_id, str):
        raise InvalidInputError(f"{obj['id']}: an {ITEM_TYPE} needs its item_id")
    if obj.get("payload_type") == "bytes":
        try:
            data = base64.b64decode(str(obj.get("payload_base64", "")), validate=True)
        except (binascii.Error, ValueError) as exc:
            raise InvalidInputError(f"{obj['id']}: payload_base64 is not base64") from exc
        return ImportedObject(item_id, label, "bytes", data)
    if "payload" not in obj:
        raise InvalidInputError(f"{obj['id']}: an {ITEM_TYPE} needs a payload")
    return ImportedObject(item_id, label, "json", json.dumps(obj["payload"], ensure_ascii=False).encode())
