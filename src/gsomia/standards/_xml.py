"""Reading untrusted XML safely, and the XML schemas shipped with gsomia.

Every XML document gsomia reads (a 4774 label, a 4778 binding data object, a SPIF) goes
through :func:`parse`: lxml with entity resolution, DTD loading and network access off, a
size bound, and any document type declaration refused outright, so neither an external
entity (XXE) nor an entity expansion bomb ("billion laughs") can do anything. Schemas are
read once, from files inside the package, with ``xmlschema`` (no network: imports of other
standards' namespaces resolve to the copies ``xmlschema`` ships).
"""

from __future__ import annotations

from functools import cache
from importlib import resources
from typing import Any

import xmlschema
from lxml import etree

from gsomia.errors import InvalidInputError

__all__ = ["MAX_XML_BYTES", "parse", "schema", "serialise", "validate"]

MAX_XML_BYTES = 16 * 1024 * 1024

_PARSER = etree.XMLParser(
    resolve_entities=False,
    no_network=True,
    load_dtd=False,
    dtd_validation=False,
    huge_tree=False,
    remove_comments=True,
    remove_pis=True,
)


def parse(data: bytes | str, what: str) -> etree._Element:
    """The root element of ``data``, read with every external and expanding feature off.

    >>> parse(b"<a/>", "test").tag
    'a'
    """
    raw = data.encode() if isinstance(data, str) else data
    if len(raw) > MAX_XML_BYTES:
        raise InvalidInputError(f"{what}: {len(raw)} bytes of XML; at most {MAX_XML_BYTES} are read")
    if b"<!DOCTYPE" in raw:  # refused before the parser sees it: no entity is ever declared
        raise InvalidInputError(f"{what}: a document type declaration is refused (no DTDs, no entities)")
    try:
        root = etree.fromstring(raw, _PARSER)
    except etree.XMLSyntaxError as exc:
        raise InvalidInputError(f"{what}: not well-formed XML ({exc.msg})") from exc
    if root is None:
        raise InvalidInputError(f"{what}: an empty XML document")
    docinfo: Any = root.getroottree().docinfo
    if docinfo.doctype or docinfo.internalDTD is not None or docinfo.externalDTD is not None:
        raise InvalidInputError(f"{what}: a document type declaration is refused (no DTDs, no entities)")
    for node in root.iter():
        if isinstance(node, etree._Entity):
            raise InvalidInputError(f"{what}: entity references are refused")
    return root


def serialise(root: etree._Element) -> bytes:
    """UTF-8 XML with a declaration, indented for people."""
    tree = etree.ElementTree(root)
    etree.indent(tree, space="  ")
    out: bytes = etree.tostring(tree, xml_declaration=True, encoding="UTF-8")
    return out


@cache
def schema(name: str) -> xmlschema.XMLSchema10:
    """A schema shipped in ``gsomia/standards/schema/`` (read once)."""
    folder = resources.files("gsomia.standards").joinpath("schema")
    with resources.as_file(folder) as path:
        return xmlschema.XMLSchema10(str(path / name), allow="local")


def validate(root: etree._Element, name: str, what: str) -> None:
    """Refuse ``root`` unless it is valid against the shipped schema ``name``, naming the first error."""
    found: Any = next(iter(schema(name).iter_errors(root)), None)
    if found is not None:
        reason = getattr(found, "reason", None) or str(found).splitlines()[0]
        path = getattr(found, "path", None)
        raise InvalidInputError(
            f"{what}: not valid against {name}: {reason}" + (f" at {path}" if path else "")
        )
