"""TAXII 2.1 on every node, mounted under ``/taxii2/``: discovery, one API root, collections.

Collections (ids are stable UUIDs derived from their names, the same at every node):

- ``agreement:<id>`` for each agreement the node's party is in: the items that came in under
  it, and this party's own items releasable to another of its parties. Readable and writable:
  a POSTed object originated by another party is ingested as received from its originator
  under this agreement.
- ``party:<code>`` for each partner party: the items that party originated. Read only.

What a reader gets is decided per object by ``decide_read`` (through the node, which records
every object served and counts what it withheld); an object or manifest entry the reader may
not read is simply absent, and asking for it by id is a 404 like an unknown id. TLP:RED
objects are never served.

Beside each object, a page carries the definitions it refers to (the gsomia identity and
extension definition, the label's gsomia and ACS markings, TLP 2.0 markings) as far as the
page's ``limit`` allows, and each is served by id to whoever may read an object referring to
it, so a TAXII client sees the label and can post back exactly what it was served.

Objects are ordered by date-added: the instant the item's current version was added, unique
and strictly increasing in commit order (the store gives it under one lock), served with
microsecond precision; polling with ``added_after`` set to the last ``X-TAXII-Date-Added-Last``
never repeats or skips an object. A label change is a new version with a new date-added.
Pages are a keyset cursor on it (``next``), never an offset or server-side state, so a cursor
works on every process of the node and after a restart. A POST is ingested in a worker
thread (the event loop, ``/healthz`` and the streams stay responsive), object by object; its
status resource is kept in the database. No ``from __future__ import annotations``: FastAPI
reads the handlers' annotations.
"""

import json
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from functools import lru_cache
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel
from starlette.concurrency import run_in_threadpool

from gsomia._canonical import compact_bytes
from gsomia.core.access import AccessDecision, Person
from gsomia.core.instants import RFC3339_PART, epoch_us
from gsomia.core.policy import Check
from gsomia.errors import (
    AccessDenied,
    ConflictError,
    GsomiaError,
    InvalidInputError,
    NotAcceptableError,
    NotFoundError,
    PayloadTooLargeError,
    UnsupportedMediaTypeError,
)
from gsomia.exchange import inbox_body_limit
from gsomia.node import MAX_PAGE, Item, Node, PortionIngest
from gsomia.store import AuditRow, ItemFilter, StatusRow
from gsomia.taxii._stix import (
    STIX_MEDIA_TYPE,
    check_banner,
    import_objects,
    is_tlp_red,
    marked,
    timestamp_us,
    us_of_timestamp,
)

__all__ = ["MAX_POST_OBJECTS", "TAXII_MEDIA_TYPE", "taxii_router"]

TAXII_MEDIA_TYPE = "application/taxii+json;version=2.1"
_NAMESPACE = uuid.UUID("5b1f7a64-0c1e-4a55-9a53-2f1d3c0e8b7a")
MAX_POST_OBJECTS = 1000  # objects in one POST: bounds the work (and the status) one request can ask for
_DEFAULT_LIMIT = 100


class TaxiiResponse(JSONResponse):
    media_type = TAXII_MEDIA_TYPE

    def render(self, content: Any) -> bytes:
        """Starlette's bytes, written by orjson where they are the same (a page of 1,000 objects
        spent a fifth of its server time in ``json.dumps``, issue 18)."""
        return compact_bytes(content) or super().render(content)


_STARLETTE = JSONResponse(None)  # its render: what Starlette writes where orjson would not write the same


def _json(value: Any) -> bytes:
    """``value`` as :class:`TaxiiResponse` (Starlette's ``JSONResponse``) writes it."""
    return compact_bytes(value) or _STARLETTE.render(value)


class _Same:
    """A value hashed and compared by identity: a definition the STIX mapping makes once and shares
    between the objects referring to it (never changed after it is made)."""

    __slots__ = ("value",)

    def __init__(self, value: dict[str, Any]) -> None:
        self.value = value

    def __hash__(self) -> int:
        return id(self.value)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, _Same) and other.value is self.value


@lru_cache(maxsize=4096)
def _shared_json(definition: _Same) -> bytes:
    """A shared definition's bytes, written once while it is shared (the entry holds the object, so its
    id is not reused while here): on a page most objects are the definitions of the items' labels."""
    return _json(definition.value)


def _objects_body(served: "_Served") -> bytes:
    """The envelope ``{"more", "objects", "next"}`` of a page, as :class:`TaxiiResponse` writes it,
    each object written on its own (JSON is written the same way inside an array as alone) and each
    shared definition once while it is shared (issue 18: checking the whole page's values for what
    orjson writes differently from the standard encoder took a tenth of a page of 1,000 objects)."""
    parts = [
        _shared_json(_Same(obj)) if id(obj) in served.shared else _json(obj) for _, obj in served.objects
    ]
    more = served.cursor is not None
    body = [b'{"more":', b"true" if more else b"false", b',"objects":[', b",".join(parts), b"]"]
    if served.cursor is not None:
        body += [b',"next":', _json(served.cursor)]
    body.append(b"}")
    return b"".join(body)


class TaxiiError(BaseModel):
    """The TAXII 2.1 error message (§3.6.1) every error under ``/taxii2/`` is answered with."""

    title: str
    description: str | None = None
    error_id: str | None = None
    error_code: str | None = None
    http_status: str | None = None
    details: dict[str, Any] | None = None


_ERRORS: dict[int | str, dict[str, Any]] = {
    code: {"model": TaxiiError, "content": {TAXII_MEDIA_TYPE: {}}}
    for code in (400, 401, 403, 404, 406, 409, 411, 413, 415, 422)
}


def _media_ranges(header: str) -> list[tuple[str, dict[str, str]]]:
    """``Accept``/``Content-Type`` as (type, parameters) pairs, lower-cased (RFC 9110 §12.5.1)."""
    ranges = []
    for part in header.split(","):
        kind, *params = (p.strip() for p in part.split(";"))
        if kind:
            pairs = (p.partition("=") for p in params if "=" in p)
            ranges.append((kind.lower(), {k.strip().lower(): v.strip().strip('"') for k, _, v in pairs}))
    return ranges


def _taxii_21(kind: str, params: dict[str, str]) -> bool:
    """``application/taxii+json`` at version 2.1 (or with no version: the latest, which is 2.1)."""
    return kind == "application/taxii+json" and params.get("version", "2.1") == "2.1"


def accepts_taxii(request: Request) -> None:
    """TAXII 2.1 §1.6.8.1: a client that accepts neither TAXII 2.1 nor any JSON gets 406."""
    header = request.headers.get("accept")
    if header is None:
        return
    for kind, params in _media_ranges(header):
        if params.get("q") in ("0", "0.0", "0.00", "0.000"):
            continue
        if kind in ("*/*", "application/*", "application/json") or _taxii_21(kind, params):
            return
    raise NotAcceptableError(f"this server speaks {TAXII_MEDIA_TYPE}; Accept: {header} asks for none of it")


@dataclass(frozen=True, slots=True)
class Collection:
    id: str
    title: str
    description: str
    where: ItemFilter
    member: Callable[[Item], bool]
    agreement: str | None  # where POSTed objects from other parties are taken to have come under


def _collections(node: Node) -> dict[str, Collection]:
    found: dict[str, Collection] = {}
    partners: set[str] = set()
    for agreement in node.catalogue.agreements_of(node.party):
        others = frozenset(agreement.parties) - {node.party}
        partners |= others

        def member(item: Item, aid: str = agreement.id, others: frozenset[str] = others) -> bool:
            own = item.label.originator == node.party and bool(item.label.releasable_to & others)
            return item.agreement == aid or own

        cid = str(uuid.uuid5(_NAMESPACE, f"agreement:{agreement.id}"))
        found[cid] = Collection(
            cid,
            f"agreement:{agreement.id}",
            f"{agreement.title}: items received under it and {node.party}'s own items releasable to "
            f"{', '.join(sorted(others))}",
            ItemFilter(),
            member,
            agreement.id,
        )
    for party in sorted(partners):
        cid = str(uuid.uuid5(_NAMESPACE, f"party:{party}"))
        found[cid] = Collection(
            cid,
            f"party:{party}",
            f"the items {party} originated that this node holds",
            ItemFilter(originator=party),
            lambda _item: True,
            None,
        )
    return found


def _csv(value: str | None) -> set[str] | None:
    return None if value is None else {v.strip() for v in value.split(",") if v.strip()}


def _version_of(obj: dict[str, Any]) -> str:
    return str(obj.get("modified") or obj.get("created") or "")


def _version_us(obj: dict[str, Any]) -> int | None:
    try:
        return us_of_timestamp(_version_of(obj), "version")
    except InvalidInputError:
        return None


class _Matcher:
    """``match[...]`` filters of a TAXII request (``added_after`` is the store's)."""

    def __init__(
        self,
        ids: str | None,
        types: str | None,
        versions: str | None,
        spec_versions: str | None,
    ) -> None:
        self.ids, self.types = _csv(ids), _csv(types)
        wanted = _csv(versions) or {"last"}
        # every object has exactly one version here, so first, last and all all select it
        self.any_version = bool(wanted & {"first", "last", "all"})
        self.versions = {us_of_timestamp(v, "match[version]") for v in wanted - {"first", "last", "all"}}
        self.spec_ok = spec_versions is None or "2.1" in (_csv(spec_versions) or set())

    @property
    def everything(self) -> bool:
        """Whether every object passes (no ``match[...]`` narrows the page)."""
        return self.spec_ok and self.ids is None and self.types is None and self.any_version

    def __call__(self, obj: dict[str, Any]) -> bool:
        """Whether ``obj`` passes the filters (TLP:RED objects never reach here: the page drops them)."""
        if not self.spec_ok:
            return False
        if self.ids is not None and obj["id"] not in self.ids:
            return False
        if self.types is not None and obj["type"] not in self.types:
            return False
        return self.any_version or _version_us(obj) in self.versions


@dataclass(frozen=True, slots=True)
class _Served:
    """One page: (date-added, object) in order, the cursor to continue, and the page's date range;
    ``shared``: the ids of its objects that are definitions shared between items' objects (held by
    ``objects`` while the page is)."""

    objects: list[tuple[int, dict[str, Any]]]
    cursor: str | None
    first_us: int | None
    last_us: int | None
    shared: frozenset[int] = frozenset()


def max_content_length(node: Node) -> int:
    """The largest body the node reads: the API's limit, ``exchange.inbox_body_limit`` (a payload
    two and a half times over, for base64 three times over, and framing)."""
    return inbox_body_limit(node.config.max_payload_bytes)


_VERSION = rf"(?:first|last|all|{RFC3339_PART})"  # one value of match[version]


def _limit(limit: int) -> int:
    """TAXII 2.1 lets a server answer fewer objects than asked: a limit is clamped, never refused."""
    return max(1, min(limit, MAX_PAGE))


def _status_out(row: StatusRow) -> dict[str, Any]:
    return {
        "id": row.id,
        "status": "complete",
        "request_timestamp": timestamp_us(row.requested_us),
        "total_count": row.total,
        "success_count": len(row.successes),
        "successes": [{"id": i, "version": v} for i, v in row.successes],
        "failure_count": len(row.failures),
        "failures": [{"id": i, "version": v, "message": m} for i, v, m in row.failures],
        "pending_count": 0,
        "pendings": [],
    }


def taxii_router(node: Node, reader: Callable[..., Awaitable[Person]]) -> APIRouter:
    """The TAXII 2.1 routes of ``node``; ``reader`` is the REST API's bearer-token dependency."""
    router = APIRouter(
        prefix="/taxii2",
        tags=["taxii"],
        default_response_class=TaxiiResponse,
        dependencies=[Depends(accepts_taxii)],
        responses=_ERRORS,
    )
    Caller = Annotated[Person, Depends(reader)]  # noqa: N806 - a type alias for the handlers below
    collections = _collections(node)

    def collection(collection_id: str) -> Collection:
        found = collections.get(collection_id)
        if found is None:
            raise NotFoundError(f"no collection {collection_id!r} at this node")
        return found

    def stix_of(item: Item, payload: bytes) -> tuple[dict[str, Any], list[dict[str, Any]]]:
        """The item's STIX object at its current version, and the definitions its markings need."""
        return marked(
            item.id,
            item.label,
            item.payload_type,
            payload,
            item.ingested,
            added_us=item.added_us,
            label_version=item.label_version,
            catalogue=node.catalogue,
            portions=[m.label for m in item.portions],
        )

    def page(
        person: Person,
        where: Collection,
        matcher: _Matcher,
        added_after: str | None,
        limit: int,
        cursor: str | None,
    ) -> _Served:
        """Up to ``limit`` objects: the items' and, as far as room allows, the definitions they need."""
        filters = replace(where.where, by_added=True)
        if added_after is not None:
            filters = replace(filters, added_after_us=us_of_timestamp(added_after, "added_after"))
        kept: dict[str, tuple[dict[str, Any], list[dict[str, Any]]]] = {}
        taken: dict[str, list[dict[str, Any]]] = {}
        seen: set[str] = set()
        everything = matcher.everything

        def keep(item: Item, payload: bytes) -> bool:
            if not where.member(item):
                return False
            obj, definitions = stix_of(item, payload)
            if is_tlp_red(obj):
                return False
            if everything:
                kept[item.id] = (obj, definitions)
                return True
            definitions = [d for d in definitions if matcher(d)]
            if not matcher(obj) and not definitions:
                return False
            kept[item.id] = (obj if matcher(obj) else {}, definitions)
            return True

        used = [0]

        def fits(item: Item) -> bool:
            """Room for the item's object and the definitions the page does not carry yet?"""
            obj, definitions = kept[item.id]
            fresh = [d for d in definitions if d["id"] not in seen]
            wanted = [*fresh, obj] if obj else fresh
            if used[0] + len(wanted) > limit:
                if used[0]:
                    return False
                wanted = [obj] if obj else fresh[:limit]  # a tiny page: the object alone (definitions by id)
            seen.update(d["id"] for d in wanted)
            taken[item.id] = wanted
            used[0] += len(wanted)
            return True

        result = node.items.read_page(
            person, filters, cursor=cursor, limit=limit, keep=keep, channel="taxii", fits=fits
        )
        out = [(item.added_us or 0, entry) for item, _ in result.items for entry in taken[item.id]]
        first_us = result.items[0][0].added_us if result.items else None
        last_us = result.items[-1][0].added_us if result.items else None
        objects = {id(kept[item.id][0]) for item, _ in result.items}  # each item's own, made for the page
        shared = frozenset(id(entry) for _, entry in out if id(entry) not in objects)
        return _Served(out, result.next_cursor, first_us, last_us, shared)

    def headers(served: _Served) -> dict[str, str]:
        if served.first_us is None or served.last_us is None:
            return {}
        return {
            "X-TAXII-Date-Added-First": timestamp_us(served.first_us),
            "X-TAXII-Date-Added-Last": timestamp_us(served.last_us),
        }

    Limit = Annotated[int, Query()]  # noqa: N806 - a type alias
    MatchId = Annotated[str | None, Query(alias="match[id]")]  # noqa: N806
    MatchType = Annotated[str | None, Query(alias="match[type]")]  # noqa: N806
    MatchVersion = Annotated[  # noqa: N806
        str | None, Query(alias="match[version]", pattern=rf"^{_VERSION}(?:,{_VERSION})*$")
    ]
    AddedAfter = Annotated[str | None, Query(pattern=rf"^{RFC3339_PART}$")]  # noqa: N806
    MatchSpec = Annotated[str | None, Query(alias="match[spec_version]")]  # noqa: N806

    @router.get("/")
    def discovery(request: Request, person: Caller) -> dict[str, Any]:
        """TAXII discovery: this node's one API root."""
        root = f"{str(request.base_url).rstrip('/')}/taxii2/api/"
        return {
            "title": f"gsomia node ({node.party})",
            "description": "TAXII 2.1 over this node's items; every object is decided per reader",
            "default": root,
            "api_roots": [root],
        }

    @router.get("/api/")
    def api_root(person: Caller) -> dict[str, Any]:
        return {
            "title": f"gsomia {node.party}",
            "description": "Collections per agreement and per partner party",
            "versions": [TAXII_MEDIA_TYPE],
            "max_content_length": max_content_length(node),
        }

    def collection_out(c: Collection) -> dict[str, Any]:
        return {
            "id": c.id,
            "title": c.title,
            "description": c.description,
            "can_read": True,
            "can_write": c.agreement is not None,
            "media_types": [STIX_MEDIA_TYPE],
        }

    @router.get("/api/collections/")
    def list_collections(person: Caller) -> dict[str, Any]:
        return {"collections": [collection_out(c) for c in collections.values()]}

    @router.get("/api/collections/{collection_id}/")
    def get_collection(collection_id: str, person: Caller) -> dict[str, Any]:
        return collection_out(collection(collection_id))

    def listing(
        collection_id: str,
        person: Caller,
        added_after: AddedAfter = None,
        match_id: MatchId = None,
        match_type: MatchType = None,
        match_version: MatchVersion = None,
        match_spec_version: MatchSpec = None,
        limit: Limit = _DEFAULT_LIMIT,
        next: str | None = None,
    ) -> _Served:
        """One page of what the caller may read, by date-added: the objects' and the manifest's."""
        matcher = _Matcher(match_id, match_type, match_version, match_spec_version)
        return page(person, collection(collection_id), matcher, added_after, _limit(limit), next)

    Listing = Annotated[_Served, Depends(listing)]  # noqa: N806 - a type alias

    def envelope(served: _Served, objects: list[Any]) -> TaxiiResponse:
        body: dict[str, Any] = {"more": served.cursor is not None, "objects": objects}
        if served.cursor is not None:
            body["next"] = served.cursor
        return TaxiiResponse(body, headers=headers(served))

    @router.get("/api/collections/{collection_id}/objects/", response_class=TaxiiResponse)
    def get_objects(served: Listing) -> Response:
        """An envelope of the objects the caller may read, by date-added; ``next`` pages on."""
        return Response(_objects_body(served), media_type=TAXII_MEDIA_TYPE, headers=headers(served))

    @router.get("/api/collections/{collection_id}/manifest/")
    def get_manifest(served: Listing) -> TaxiiResponse:
        """The manifest: one entry per object the caller may read (no payloads)."""
        entries = [
            {
                "id": obj["id"],
                "date_added": timestamp_us(added),
                "version": _version_of(obj),
                "media_type": STIX_MEDIA_TYPE,
            }
            for added, obj in served.objects
        ]
        return envelope(served, entries)

    def one(person: Person, collection_id: str, object_id: str) -> _Served:
        """The object by id, if the caller may read it (or an object referring to it): else 404."""
        where = collection(collection_id)
        matcher = _Matcher(object_id, None, "all", None)
        cursor: str | None = None
        while True:
            served = page(person, where, matcher, None, MAX_PAGE, cursor)
            if served.objects:
                first = served.objects[0]
                return _Served([first], None, first[0], first[0])
            if served.cursor is None:
                raise NotFoundError(f"no object {object_id} you may read in this collection")
            cursor = served.cursor

    @router.get("/api/collections/{collection_id}/objects/{object_id}/")
    def get_object(collection_id: str, object_id: str, person: Caller) -> TaxiiResponse:
        served = one(person, collection_id, object_id)
        return TaxiiResponse({"more": False, "objects": [served.objects[0][1]]}, headers=headers(served))

    @router.get("/api/collections/{collection_id}/objects/{object_id}/versions/")
    def get_versions(collection_id: str, object_id: str, person: Caller) -> TaxiiResponse:
        served = one(person, collection_id, object_id)
        body = {"more": False, "versions": [_version_of(served.objects[0][1])]}
        return TaxiiResponse(body, headers=headers(served))

    def held_already(person: Person, item_id: str, originator: str, stix_id: str, version: str) -> bool:
        """Whether the poster may read ``originator``'s item ``item_id`` held here and it is the posted
        object's very version (TAXII: adding what the collection holds is a success; anything else is
        a collision). An item is (originator, id): another originator's item under the id is not it."""
        try:
            item, payload = node.items.read(person, node.items.resolve_item(person, item_id, originator))
        except GsomiaError:
            return False
        obj, _ = stix_of(item, payload)
        return obj["id"] == stix_id and _version_of(obj) == version

    def ingest(person: Person, target: Collection, objects: list[Any], requested: datetime) -> StatusRow:
        """Each object checked and ingested on its own (in a worker thread, off the event loop)."""
        successes: list[tuple[str, str]] = []
        failures: list[tuple[str, str, str]] = []
        refused: list[tuple[str, str, str]] = []  # (code, STIX id, reason): audited once all are checked
        try:
            # the refusals ingest itself records (an item the caller may not enter, a partner's item
            # posted as if held here) are tallied too: one request carries up to a thousand objects
            with node.kernel.holding_refusals():
                ingest_each(person, target, objects, requested, successes, failures, refused)
        finally:
            audit_refused(person, refused)
        row = StatusRow(
            str(uuid.uuid4()), person.id, target.id, epoch_us(requested), tuple(successes), tuple(failures)
        )
        node.statuses.keep(row)
        return row

    def audit_refused(person: Person, refused: list[tuple[str, str, str]]) -> None:
        """The objects of one request refused before ingest (``unimportable``: not a labelled STIX
        object gsomia can hold; ``marking``: its markings disagree), audited in bounded space through
        the kernel's tally, per caller, code and minute (``NodeContext.tally``): the first 10 a
        ``taxii.object`` record each naming the caller (``actor``) and the object, the rest counted,
        one ``refusal.tally`` record (``source`` the caller) with the exact count once the minute has
        closed. A caller posting a million unlabelled objects made as many permanent records, none
        of which said who asked."""
        groups: dict[str, list[tuple[str, str]]] = {}
        for code, stix_id, reason in refused:
            groups.setdefault(code, []).append((stix_id, reason))
        for code, group in groups.items():

            def rows(
                counted_as: str, _caller: str, own: int, of: list[tuple[str, str]] = group
            ) -> list[AuditRow]:
                where = {} if counted_as == person.id else {"counted_as": counted_as}
                return [
                    node.kernel.audit_row(
                        "taxii.object", person.id, stix_id, "refused", status=422, reason=reason, **where
                    )
                    for stix_id, reason in of[:own]
                ]

            node.kernel.tally("taxii.object", person.id, code, group[0][1], rows, count=len(group))

    def ingest_each(
        person: Person,
        target: Collection,
        objects: list[Any],
        requested: datetime,
        successes: list[tuple[str, str]],
        failures: list[tuple[str, str, str]],
        refused: list[tuple[str, str, str]],
    ) -> None:
        for result in import_objects(objects):
            version = result.version or timestamp_us(epoch_us(requested))
            entry = result.imported
            if entry is None:
                refused.append(("unimportable", result.stix_id, result.reason or "refused"))
                failures.append((result.stix_id, version, result.reason or "refused"))
                continue
            originator = str(entry.label.get("originator", "")).upper()
            foreign = originator != node.party
            if foreign and held_already(person, entry.item_id, originator, result.stix_id, version):
                # what the collection holds, posted back unchanged: a success, and nothing is entered
                # (a partner's item is stored only as it arrived, under the partner's signature)
                successes.append((result.stix_id, version))
                continue
            try:
                check_banner(entry, node.catalogue)  # portions: the object marking is the highest of theirs
            except InvalidInputError as exc:
                refused.append(("marking", result.stix_id, str(exc)))
                failures.append((result.stix_id, version, str(exc)))
                continue
            try:
                if entry.portions:  # an item in portions: each portion under its granular marking's label
                    node.items.ingest(
                        person,
                        label=None,
                        payload=b"",
                        item_id=entry.item_id,
                        portions=[
                            PortionIngest(p.id, p.label, p.payload, p.payload_type) for p in entry.portions
                        ],
                    )
                else:
                    node.items.ingest(
                        person,
                        label=entry.label,
                        payload=entry.payload,
                        payload_type=entry.payload_type,
                        item_id=entry.item_id,
                        received_from=originator if foreign else None,
                        agreement=target.agreement if foreign else None,
                    )
            except ConflictError as exc:  # the id is taken: fine if it is this very version
                if not held_already(person, entry.item_id, originator, result.stix_id, version):
                    failures.append((result.stix_id, version, f"a different {result.stix_id} is held: {exc}"))
                    continue
            except GsomiaError as exc:  # the node recorded the refusal
                failures.append((result.stix_id, version, str(exc)))
                continue
            successes.append((result.stix_id, version))

    @router.post("/api/collections/{collection_id}/objects/", status_code=202)
    async def add_objects(collection_id: str, request: Request, person: Caller) -> JSONResponse:
        """Ingest labelled STIX objects, one by one; the status resource says which were stored."""
        target = collection(collection_id)
        if target.agreement is None:
            check = Check(
                "collection", False, f"{target.title} is read only: post to an agreement's collection"
            )
            raise AccessDenied(AccessDecision(False, person.id, (check,)))
        content_type = request.headers.get("content-type", "")
        sent = _media_ranges(content_type)[:1]
        if not any(_taxii_21(kind, params) or kind == "application/json" for kind, params in sent):
            sent_type = content_type or "no content type"
            raise UnsupportedMediaTypeError(f"send {TAXII_MEDIA_TYPE}, not {sent_type}")
        body = await request.body()
        try:
            envelope = json.loads(body)
        except (ValueError, RecursionError):  # RecursionError: nested deeper than the parser goes
            return _bad_request(node, request, "the body is not JSON")
        if not isinstance(envelope, dict) or not isinstance(envelope.get("objects"), list):
            return _bad_request(node, request, 'expected a TAXII envelope: {"objects": [...]}')
        if len(envelope["objects"]) > MAX_POST_OBJECTS:
            raise PayloadTooLargeError(
                f"{len(envelope['objects'])} objects in one envelope; this server takes at most "
                f"{MAX_POST_OBJECTS} per request"
            )
        requested = datetime.now(UTC)  # the edge's clock: when the request arrived
        row = await run_in_threadpool(ingest, person, target, envelope["objects"], requested)
        return TaxiiResponse(_status_out(row), status_code=202)

    @router.get("/api/status/{status_id}/")
    def get_status(status_id: str, person: Caller) -> dict[str, Any]:
        """A POST's status resource: only for the person who posted."""
        return _status_out(node.statuses.status(person, status_id))

    return router


def _bad_request(node: Node, request: Request, reason: str) -> JSONResponse:
    """400: TAXII 2.1's answer to a request the server does not understand (audited)."""
    node.kernel.record_refusal(
        "api.refused", request.url.path, 400, reason, request.client.host if request.client else None
    )
    body = {
        "title": "Bad request",
        "description": reason,
        "error_id": str(uuid.uuid4()),
        "error_code": "bad-request",
        "http_status": "400",
    }
    return TaxiiResponse(body, status_code=400)
