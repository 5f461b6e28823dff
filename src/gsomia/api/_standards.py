"""The allies' label standards over HTTP: an item's ADatP-4774 labels and its ADatP-4778 binding
data object, for a person who may read the item (a router mounted by ``create_app``).

No ``from __future__ import annotations``: FastAPI reads the handlers' annotations.
"""

import json
from collections.abc import Awaitable, Callable
from typing import Annotated, Literal

from fastapi import APIRouter, Depends, Query
from fastapi.responses import Response

from gsomia.api._refs import item_ref
from gsomia.core.access import Person
from gsomia.node import Node
from gsomia.standards import BDO_JSON, BDO_XML, export_binding, labels_to_json, labels_to_xml, to_labels

__all__ = ["standards_router"]

_LABEL_XML = "application/xml"


def standards_router(node: Node, reader: Callable[..., Awaitable[Person]]) -> APIRouter:
    """``GET /items/{id}/label`` (4774) and ``GET /items/{id}/binding`` (4778), both decided reads."""
    router = APIRouter(tags=["standards"])
    Caller = Annotated[Person, Depends(reader)]  # noqa: N806 - a type alias for the handlers below
    ItemRef = Annotated[str, Depends(item_ref(node, reader))]  # noqa: N806 - the path's item (issue 22 §4)
    Form = Annotated[Literal["xml", "json"], Query(alias="format")]  # noqa: N806

    @router.get(
        "/items/{item_id}/label",
        responses={200: {"content": {_LABEL_XML: {}, "application/json": {}}}},
        response_class=Response,
    )
    def item_label(item_id: ItemRef, person: Caller, form: Form = "xml") -> Response:
        """The item's label as ADatP-4774 (originator's label and alternative labels), in XML or JSON.

        A read of the item: decided and audited like ``GET /items/{id}``."""
        item, _ = node.items.read(person, item_id)
        labels = to_labels(item.label, node.catalogue, at=node.clock())
        if form == "xml":
            return Response(labels_to_xml(labels, item=item.id), media_type=_LABEL_XML)
        return Response(json.dumps(labels_to_json(labels), ensure_ascii=False), media_type="application/json")

    @router.get(
        "/items/{item_id}/binding",
        responses={200: {"content": {BDO_XML: {}, BDO_JSON: {}}}},
        response_class=Response,
    )
    def item_binding(item_id: ItemRef, person: Caller, form: Form = "xml") -> Response:
        """The item as an ADatP-4778 binding data object (XML Signature or JWS), signed by this node
        and carrying the originator's own signature. A read of the item, decided and audited."""
        data = export_binding(node, person, item_id, form)
        return Response(data, media_type=BDO_XML if form == "xml" else BDO_JSON)

    return router
