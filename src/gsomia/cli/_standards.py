"""``gsomia label``, ``gsomia bdo`` and ``gsomia spif``: the allies' label standards at a node."""

from __future__ import annotations

import json
import sys
from enum import StrEnum
from typing import Annotated

import typer

from gsomia.cli._common import DirOpt, guard, open_node
from gsomia.standards import labels_to_json, labels_to_xml, to_labels

label_app = typer.Typer(help="An item's label in the allies' standards (ADatP-4774).", no_args_is_help=True)

AsOpt = Annotated[str, typer.Option("--as", help="The registered person acting; their access is checked.")]


class LabelFormat(StrEnum):
    XML = "4774-xml"
    JSON = "4774-json"


@label_app.command("show")
@guard
def label_show(
    directory: DirOpt,
    actor: AsOpt,
    item_id: Annotated[str, typer.Argument(help="The item's id.")],
    fmt: Annotated[
        LabelFormat, typer.Option("--format", help="ADatP-4774 in XML or in JSON.")
    ] = LabelFormat.XML,
) -> None:
    """Print an item's label as ADatP-4774: the originator's label and one alternative label per party
    holding or entitled to an equivalent under an agreement in force now.

    Reading the label is a read of the item: decided and audited like `gsomia item show`.
    """
    node = open_node(directory)
    item, _ = node.read(node.person(actor), item_id)
    labels = to_labels(item.label, node.catalogue, at=node.clock())
    if fmt is LabelFormat.XML:
        sys.stdout.write(labels_to_xml(labels, item=item.id).decode() + "\n")
    else:
        sys.stdout.write(json.dumps(labels_to_json(labels), ensure_ascii=False, indent=2) + "\n")
