"""``gsomia label``, ``gsomia bdo`` and ``gsomia spif``: the allies' label standards."""

from __future__ import annotations

import json
import sys
from enum import StrEnum
from pathlib import Path
from typing import Annotated

import typer

from gsomia._datafiles import parse_party
from gsomia._files import write_private
from gsomia.cli._common import (
    AsOpt,
    DirOpt,
    JsonOpt,
    OriginatorOpt,
    console,
    emit,
    guard,
    item_ref,
    open_node,
)
from gsomia.cli._common import catalogue as data_catalogue
from gsomia.core.instants import parse_instant
from gsomia.errors import ConfigError, InvalidInputError
from gsomia.kernel import node_timezone
from gsomia.standards import (
    export_binding,
    import_binding,
    labels_to_json,
    labels_to_xml,
    scheme_from_spif,
    spif_for,
    to_labels,
    verify_binding,
)

label_app = typer.Typer(help="An item's label in the allies' standards (ADatP-4774).", no_args_is_help=True)


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
    originator: OriginatorOpt = None,
) -> None:
    """Print an item's label as ADatP-4774 (XML or JSON).

    The originator's label and one alternative label per party holding, or entitled to, an
    equivalent under an agreement in force now. A read of the item: decided and audited like
    `gsomia item show`.
    """
    node = open_node(directory)
    item_id = item_ref(node, actor, item_id, originator)
    item, _ = node.read(node.person(actor), item_id)
    labels = to_labels(item.label, node.catalogue, at=node.clock())
    if fmt is LabelFormat.XML:
        sys.stdout.write(labels_to_xml(labels, item=item.id).decode() + "\n")
    else:
        sys.stdout.write(json.dumps(labels_to_json(labels), ensure_ascii=False, indent=2) + "\n")


bdo_app = typer.Typer(
    help="ADatP-4778 binding data objects: an item's labels and data bound by a signature.",
    no_args_is_help=True,
)


class BindingForm(StrEnum):
    XML = "xml"
    JSON = "json"


@bdo_app.command("export")
@guard
def bdo_export(
    directory: DirOpt,
    actor: AsOpt,
    item_id: Annotated[str, typer.Argument(help="The item's id.")],
    out: Annotated[Path, typer.Option("--out", help="The file to write.")],
    form: Annotated[BindingForm, typer.Option("--format", help="XML Signature or JWS.")] = BindingForm.XML,
    originator: OriginatorOpt = None,
) -> None:
    """Write an item as a binding data object, signed by this node (a decided and audited read)."""
    if not out.parent.is_dir():
        raise InvalidInputError(f"cannot write {out}: {out.parent} is not a directory")
    node = open_node(directory)
    item_id = item_ref(node, actor, item_id, originator)
    data = export_binding(node, node.person(actor), item_id, "xml" if form is BindingForm.XML else "json")
    _write(out, data)
    console().print(f"wrote {item_id} as a {form.value} binding data object to {out}")


def _binding_file(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError as exc:
        raise InvalidInputError(f"binding file {path}: cannot read ({exc.strerror})") from exc


@bdo_app.command("verify")
@guard
def bdo_verify(
    directory: DirOpt,
    file: Annotated[Path, typer.Argument(help="A binding data object (XML or JSON).")],
    as_json: JsonOpt = False,
) -> None:
    """Check a binding data object at this node; exit 2 (and an audit record) if anything fails.

    The signer's certificate chain must end at a registered key, the signature cover labels and data,
    the labels parse, and the originator's own signature vouch for exactly this item, label and payload.
    """
    binding = verify_binding(open_node(directory), _binding_file(file))
    label = binding.label
    summary = {
        "valid": True,
        "signer": binding.signer.party,
        "signer_key": binding.signer.kid,
        "item": binding.item_id,
        "originator": label.originator,
        "classification": label.classification,
        "alternatives": [
            {"party": a.party, "classification": a.classification, "agreement": a.agreement}
            for a in label.alternatives
        ],
        "payload_type": binding.payload_type,
        "payload_bytes": len(binding.payload),
    }
    if as_json:
        emit(summary)
        return
    alternatives = ", ".join(f"{a.party} {a.classification}" for a in label.alternatives) or "none"
    console().print(
        f"valid: {binding.item_id} bound by {binding.signer.party} (key {binding.signer.kid}); "
        f"{label.originator} {label.classification}; alternatives: {alternatives}"
    )


@bdo_app.command("import")
@guard
def bdo_import(
    directory: DirOpt,
    file: Annotated[Path, typer.Argument(help="A binding data object from a partner (XML or JSON).")],
    as_json: JsonOpt = False,
) -> None:
    """Receive the item a binding brings, through this node's decisions; exit 1 if refused.

    Verified as `bdo verify` does, then decided and stored as if its signer had delivered it
    (release decision at this instant, the registered link, receipt, audit records).
    """
    result = import_binding(open_node(directory), _binding_file(file))
    if as_json:
        emit(result)
        return
    console().print(f"{result['item']} from {result['signer']}: {result['status']}")
    if result.get("reason"):
        console().print(f"reason: {result['reason']}")
    if result["status"] == "refused":
        raise typer.Exit(1)


spif_app = typer.Typer(
    help="XML-SPIF security policies: a party's scheme and its agreements' equivalences.",
    no_args_is_help=True,
)


@spif_app.command("export")
@guard
def spif_export(
    party: Annotated[str, typer.Option("--party", help="The party whose policy to write (trigraph).")],
    at: Annotated[
        str, typer.Option("--at", help="The instant (ISO 8601 with offset; a bare date is local midnight).")
    ],
    out: Annotated[Path | None, typer.Option("--out", help="Write here instead of standard output.")] = None,
    directory: Annotated[
        Path | None,
        typer.Option(
            "--dir", help="A node's directory: its tables, with the equivalence changes on file there."
        ),
    ] = None,
) -> None:
    """Write a party's classification scheme as an XML-SPIF as it stands at an instant.

    Classifications with their lacv and hierarchy, marking data, the category tag sets, and the
    equivalences of every agreement of the party in force at that instant; with --dir, as the node
    holds them (the parties' equivalence changes applied from their instants).
    """
    catalogue = data_catalogue() if directory is None else open_node(directory).catalogue
    code = catalogue.party(party).code
    instant = parse_instant(at, node_timezone(catalogue, code))
    data = spif_for(catalogue, code, instant)
    if out is None:
        sys.stdout.write(data.decode() + "\n")
        return
    _write(out, data)
    console().print(f"wrote {code}'s policy at {instant.isoformat()} to {out}")


@spif_app.command("import")
@guard
def spif_import(
    file: Annotated[Path, typer.Argument(help="An XML-SPIF file (gsomia's or a partner's own).")],
    party: Annotated[
        str | None, typer.Option("--party", help="For a partner's own policy: its trigraph.")
    ] = None,
    name: Annotated[str | None, typer.Option("--name", help="For a partner's own policy: its name.")] = None,
    out: Annotated[Path | None, typer.Option("--out", help="Write the party file here (TOML).")] = None,
) -> None:
    """Read an XML-SPIF into a party file in the data format (docs/DATA_FORMAT.md).

    Put the file in a --data directory to load the partner's scheme; its policy name and OID are
    kept, so labels its own tools make can be read.
    """
    try:
        data = file.read_bytes()
    except OSError as exc:
        raise InvalidInputError(f"SPIF {file}: cannot read ({exc.strerror})") from exc
    made = scheme_from_spif(data, party=party.upper() if party else None, name=name)
    parse_party(str(file), made.text.encode())  # the file must load as a party before it is written
    if out is None:
        sys.stdout.write(made.text)
        return
    _write(out, made.text.encode())
    console().print(f"wrote {made.code}'s party file to {out}")


def _write(path: Path, data: bytes) -> None:
    if not path.parent.is_dir():
        raise InvalidInputError(f"cannot write {path}: {path.parent} is not a directory")
    try:
        write_private(path, data)  # atomically, 0600, never through a link planted there
    except ConfigError as exc:
        raise InvalidInputError(str(exc)) from exc
