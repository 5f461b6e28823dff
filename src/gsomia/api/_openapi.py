"""The node's OpenAPI document, with the constraints that come from its data stated in it.

FastAPI writes the document from the request models (:mod:`gsomia.api._fields`). What only the
node's catalogue knows is filled in here, once per app: the ``enum`` of each vocabulary (party
codes, classification levels, agreements, roles) and the shapes that tie one field to another
(a label's level belongs to its originator's scheme; a received item names the agreement it came
under, whose table maps its level onto this node's). What JSON Schema cannot say (one instant
after another, one alternative label per party) each operation lists in ``x-gsomia-rules``, in
the words of the refusal, so a client can read every rule the server applies.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from gsomia._codec import NUL_PROBLEM, SURROGATE_PROBLEM
from gsomia.api._fields import SOME_WORDS
from gsomia.core.access import Role
from gsomia.core.catalogue import Catalogue
from gsomia.core.instants import TIMESTAMP_PATTERN
from gsomia.core.portions import MAX_PORTIONS, PORTION_ID

__all__ = ["RULES", "refine"]

VOCABULARY = "x-gsomia-vocabulary"
SHAPE = "x-gsomia-shape"

# Rules JSON Schema cannot state, by operation ("METHOD /path"), each as the refusal words it.
# every operation's: no text of a request (a path, a query, a header, anywhere in a body, an object's
# keys and a payload's text included) holds a NUL or a lone surrogate (api/_text.py's TextGate),
# which JSON Schema cannot say of a value of any shape
TEXT_RULES = (NUL_PROBLEM, SURROGATE_PROBLEM)
RULES: dict[str, tuple[str, ...]] = {
    "POST /items": (
        "the review instant precedes the creation instant",
        # an item in portions (issue 20 §2): one item, one originator and purpose; ids tell portions apart
        "share its originator, policy and purpose",
        "portion ids must differ within an item",
    ),
    "POST /decisions": (
        "the review instant precedes the creation instant",
        "already marks this item",  # two alternative labels for one party that differ
    ),
    "POST /visits": ("a visit ends after it starts",),
    "GET /audit/consistency": ("first must not exceed second",),
    "POST /items/{item_id}/derive": ("name each source item once",),
    "POST /stream/tracks": ("samples must be in time order", "but this node publishes for"),
    # a token minted by a token expires no later than it (issue 14 §5): the caller's own token decides
    "POST /people/{person_id}/tokens": ("cannot outlive it",),
    # what the item's own state allows (found by schemathesis's 10-minute SQLite run on an item it
    # had made itself): who originated it, its level now, where it went, whether it was recalled
    "POST /items/{item_id}/consent-requests": ("no consent is needed",),
    "POST /items/{item_id}/reclassify": ("nothing to reclassify", "only the originator"),
    "POST /items/{item_id}/recall": ("only the originator",),
    "POST /items/{item_id}/scheduled-downgrades": (
        "a scheduled change only downgrades",
        "is not in the future",
        "only the originator",
    ),
    "POST /items/{item_id}/destroy": ("is not cleared for this item",),
    "POST /items/{item_id}/destruction/request": ("was never sent to",),
    "POST /items/{item_id}/destruction/send": ("there is no one to send the record to", "was never sent to"),
    "POST /items/{item_id}/release": ("reclassify it before releasing it again",),
    "POST /items/{item_id}/release-requests": (
        "needs no second officer",
        "the release would be refused anyway",
        "reclassify it before releasing it again",
    ),
    # a party's equivalence change (issue 19 §3): checked against the agreement and its table
    "POST /agreements/{agreement_id}/equivalence-changes": (
        "takes effect now or later",
        "is not a party to",
        "is not a partner of",
        "remaps one level onto one partner once",
        "has no classification",
        "a handling caveat",
        "is not monotonic",
        "the most this node",
    ),
}


def _levels(catalogue: Catalogue, party: str) -> list[str]:
    scheme = catalogue.parties[party].scheme
    return sorted({name for lv in scheme.levels for name in (lv.name, lv.alias)})


def _strings(pattern: str | None = SOME_WORDS, max_length: int = 200) -> dict[str, Any]:
    return {"type": "string", **({"pattern": pattern} if pattern else {}), "maxLength": max_length}


def _array(items: dict[str, Any], **extra: Any) -> dict[str, Any]:
    return {"type": "array", "items": items, **extra}


def _timestamp(nullable: bool = False) -> dict[str, Any]:
    stamp = {"type": "string", "pattern": TIMESTAMP_PATTERN}
    return {"anyOf": [stamp, {"type": "null"}]} if nullable else stamp


def _label(
    catalogue: Catalogue,
    originator: str,
    levels: Iterable[str],
    *,
    alternatives: bool,
    releasable_to: str | None = None,
) -> dict[str, Any]:
    """One originator's label: its levels; ``releasable_to`` must name that party if given."""
    parties = sorted(catalogue.parties)
    rel: dict[str, Any] = _array({"type": "string", "enum": parties})
    caveats: dict[str, Any] = _array(_strings())
    if releasable_to is not None:
        rel["contains"] = {"const": releasable_to}
        # a NOFORN item is never held abroad (caveats are read in any case)
        caveats["not"] = {"contains": {"type": "string", "pattern": "^[Nn][Oo][Ff][Oo][Rr][Nn]$"}}
    alternative_items = {
        "anyOf": [
            {
                "type": "object",
                "additionalProperties": False,
                "required": ["party", "classification", "agreement"],
                "properties": {
                    "party": {"const": party},
                    "classification": {"type": "string", "enum": _levels(catalogue, party)},
                    "agreement": _strings(None),
                },
            }
            for party in parties
            if party != originator
        ]
    }
    return {
        "type": "object",
        "additionalProperties": False,
        "required": ["originator", "classification", "purpose", "created"]
        + (["releasable_to"] if releasable_to is not None else []),
        "properties": {
            "policy": {"anyOf": [{"const": "gsomia"}, {"type": "null"}]},
            "originator": {"const": originator},
            "classification": {"type": "string", "enum": sorted(levels)},
            "releasable_to": rel if releasable_to is not None else {"anyOf": [rel, {"type": "null"}]},
            "caveats": {"anyOf": [caveats, {"type": "null"}]},
            "purpose": _strings(),
            "topics": {"anyOf": [_array({"enum": sorted(catalogue.topics)}), {"type": "null"}]},
            "created": _timestamp(),
            "review": _timestamp(nullable=True),
            "alternatives": (
                {"anyOf": [_array(alternative_items), {"type": "null"}]}
                if alternatives
                else {"anyOf": [_array({}, maxItems=0), {"type": "null"}]}
            ),
        },
    }


def label_schema(catalogue: Catalogue) -> dict[str, Any]:
    """Any label the node can parse: one branch per originator, its own levels."""
    return {
        "description": "A security label: a level of its originator's scheme (name or alias).",
        "anyOf": [
            _label(catalogue, code, _levels(catalogue, code), alternatives=True)
            for code in sorted(catalogue.parties)
        ],
    }


def ingest_schema(catalogue: Catalogue, party: str, base: dict[str, Any]) -> dict[str, Any]:
    """``POST /items``: the node's own item only (another party's arrives through the exchange, under
    its originator's signature: issue 14 §8); ``received_from`` and ``agreement`` stay absent."""
    common = {
        k: v
        for k, v in base["properties"].items()
        if k not in ("label", "received_from", "agreement", "portions")
    }
    common["payload"] = {"description": "Any JSON value but null", "not": {"type": "null"}}
    common["payload_base64"] = {k: v for k, v in common["payload_base64"]["anyOf"][0].items()}
    exactly_one = {"oneOf": [{"required": ["payload"]}, {"required": ["payload_base64"]}]}
    absent = {"type": "null"}
    branches = [
        {
            "type": "object",
            "additionalProperties": False,
            "required": ["label"],
            **exactly_one,
            "properties": {
                **common,
                "label": _label(catalogue, party, _levels(catalogue, party), alternatives=False),
                "received_from": absent,
                "agreement": absent,
            },
        }
    ]
    portion = {
        "type": "object",
        "additionalProperties": False,
        "required": ["id", "label"],
        **exactly_one,
        "properties": {
            "id": {"type": "string", "pattern": PORTION_ID.pattern},
            "label": _label(catalogue, party, _levels(catalogue, party), alternatives=False),
            "payload": common["payload"],
            "payload_base64": common["payload_base64"],
        },
    }
    branches.append(
        {
            "type": "object",
            "additionalProperties": False,
            "required": ["portions"],
            "properties": {
                "id": common["id"],
                "portions": _array(portion, minItems=1, maxItems=MAX_PORTIONS),
                "label": absent,
                "received_from": absent,
                "agreement": absent,
            },
        }
    )
    return {"description": base.get("description", ""), "anyOf": branches}


def _by_party(
    catalogue: Catalogue,
    base: dict[str, Any],
    names: tuple[str, str],
    fields: Callable[[str], dict[str, Any]],
) -> dict[str, Any]:
    """``base``'s object as one branch per party, in which ``fields(code)`` states the fields
    ``names`` (the party, and levels of that party's scheme)."""
    common = {k: v for k, v in base["properties"].items() if k not in names}
    return {
        "description": base.get("description", ""),
        "anyOf": [
            {
                "type": "object",
                "additionalProperties": False,
                "required": base.get("required", []),
                "properties": {**common, **fields(code)},
            }
            for code in sorted(catalogue.parties)
        ],
    }


def person_schema(catalogue: Catalogue, base: dict[str, Any]) -> dict[str, Any]:
    """``POST /people``: a clearance is a level of the person's nationality's scheme."""
    return _by_party(
        catalogue,
        base,
        ("nationality", "clearance"),
        lambda code: {
            "nationality": {"const": code},
            "clearance": {"anyOf": [{"enum": _levels(catalogue, code)}, {"type": "null"}]},
        },
    )


def rules_schema(catalogue: Catalogue, base: dict[str, Any]) -> dict[str, Any]:
    """``POST /registers/rules``: the levels a rules version touches are levels of that party."""
    return _by_party(
        catalogue,
        base,
        ("party", "levels"),
        lambda code: {"party": {"const": code}, "levels": _array({"enum": _levels(catalogue, code)})},
    )


def _vocabularies(catalogue: Catalogue, party: str) -> dict[str, list[str]]:
    return {
        "party": sorted(catalogue.parties),
        "level": sorted({name for code in catalogue.parties for name in _levels(catalogue, code)}),
        "own-level": _levels(catalogue, party),
        "agreement": sorted(catalogue.agreements),
        "topic": sorted(catalogue.topics),
        "role": [r.value for r in Role],
    }


def _fill(node: Any, words: dict[str, list[str]]) -> None:
    """Replace every vocabulary mark under ``node`` by its ``enum``."""
    if isinstance(node, dict):
        kind = node.pop(VOCABULARY, None)
        if kind is not None:
            node["enum"] = words[kind]
            node.pop("pattern", None)  # the enum says all
            node.pop("maxLength", None)
        for value in node.values():
            _fill(value, words)
    elif isinstance(node, list):
        for value in node:
            _fill(value, words)


def refine(spec: dict[str, Any], catalogue: Catalogue, party: str) -> dict[str, Any]:
    """``spec`` with this node's vocabularies and cross-field shapes in place (changed in place)."""
    schemas = spec.get("components", {}).get("schemas", {})
    shapes = {
        "ingest": lambda base: ingest_schema(catalogue, party, base),
        "person": lambda base: person_schema(catalogue, base),
        "rules": lambda base: rules_schema(catalogue, base),
    }
    words = _vocabularies(catalogue, party)
    for name, schema in list(schemas.items()):
        shape = schema.get(SHAPE)
        if shape is not None:
            _fill(schema, words)
            schemas[name] = shapes[shape](schema)
    _replace_label_marks(spec, label_schema(catalogue))
    _fill(spec, words)
    for path, operations in spec.get("paths", {}).items():
        for method, operation in operations.items():
            operation["x-gsomia-rules"] = [*RULES.get(f"{method.upper()} {path}", ()), *TEXT_RULES]
    return spec


def _replace_label_marks(node: Any, label: dict[str, Any]) -> None:
    """A property marked as a label (``{"x-gsomia-shape": "label"}``) becomes the label schema."""
    if isinstance(node, dict):
        for key, value in list(node.items()):
            if isinstance(value, dict) and value.get(SHAPE) == "label" and "properties" not in value:
                node[key] = label
            else:
                _replace_label_marks(value, label)
    elif isinstance(node, list):
        for value in node:
            _replace_label_marks(value, label)
