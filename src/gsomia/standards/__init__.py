"""The allies' label standards: NATO ADatP-4774 labels, ADatP-4778 binding data objects, XML-SPIF.

An adapter around the core: it imports the core and nothing imports it back but the shells
(CLI, API, TAXII). Every document read from outside goes through one safe XML parser
(no DTDs, no entities, no network) and is validated against a schema shipped here.

>>> from gsomia import load_catalogue
>>> from gsomia.standards import from_labels, labels_from_xml, labels_to_xml, to_labels
>>> catalogue = load_catalogue()
>>> from datetime import datetime, UTC
>>> label = catalogue.label(originator="KOR", classification="군사II급비밀", releasable_to=["JPN"],
...     purpose="threat-assessment", topics=["dprk-missile"], created=datetime(2019, 8, 24, tzinfo=UTC))
>>> from_labels(labels_from_xml(labels_to_xml(to_labels(label, catalogue))), catalogue) == label
True
"""

from gsomia.standards._adatp4774 import (
    LABELS_NS,
    NS_4774,
    Category,
    ConfidentialityLabel,
    Labels,
    from_labels,
    labels_from_json,
    labels_from_xml,
    labels_to_json,
    labels_to_xml,
    to_labels,
)
from gsomia.standards._adatp4778 import BDO_JSON, BDO_XML, NS_4778, Binding, bind_json, bind_xml, read_binding
from gsomia.standards._node import export_binding, import_binding, verify_binding
from gsomia.standards._policies import Policy, policy_of
from gsomia.standards._spif import NS_SPIF, PartyFile, scheme_from_spif, spif_for

__all__ = [
    "BDO_JSON",
    "BDO_XML",
    "LABELS_NS",
    "NS_4774",
    "NS_4778",
    "NS_SPIF",
    "Binding",
    "Category",
    "ConfidentialityLabel",
    "Labels",
    "PartyFile",
    "Policy",
    "bind_json",
    "bind_xml",
    "export_binding",
    "from_labels",
    "import_binding",
    "labels_from_json",
    "labels_from_xml",
    "labels_to_json",
    "labels_to_xml",
    "policy_of",
    "read_binding",
    "scheme_from_spif",
    "spif_for",
    "to_labels",
    "verify_binding",
]
