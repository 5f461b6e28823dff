"""An item named in a path: ``/items/{item_id}`` with ``?originator=`` where two originators' items
share the id here (issue 22 §4: an item is (originator, id)), or the id written ``ORIGINATOR:id``.

No ``from __future__ import annotations``: FastAPI reads the dependency's annotations.
"""

from collections.abc import Awaitable, Callable
from typing import Annotated

from fastapi import Depends, Path, Query

from gsomia.api._fields import Party
from gsomia.core.access import Person
from gsomia.node import Node

__all__ = ["ItemPath", "OriginatorQuery", "item_ref"]

# an item's id, or ORIGINATOR:id; references a node gave may also hold "~" (a digest's)
REF_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._:~-]{0,131}$"

ItemPath = Annotated[
    str,
    Path(
        pattern=REF_PATTERN,
        description="The item's id, or ORIGINATOR:id where two originators' items share it here",
    ),
]
OriginatorQuery = Annotated[
    Party | None,
    Query(description="Whose item: where items of two originators share the id here"),
]


def item_ref(node: Node, reader: Callable[..., Awaitable[Person]]) -> Callable[..., str]:
    """The dependency of a path's ``item_id``: resolved by the node (:meth:`Node.resolve_item`) to the
    reference of the one item it names that the caller may read; two or more: 409 asking whose.

    A route that would rather resolve in the same worker thread as its own work (one hand-off a
    request, not two) takes ``ItemPath`` and ``OriginatorQuery`` and calls the same
    :meth:`Node.resolve_item`.
    """

    def resolve(
        person: Annotated[Person, Depends(reader)], item_id: ItemPath, originator: OriginatorQuery = None
    ) -> str:
        return node.items.resolve_item(person, item_id, originator)

    return resolve
