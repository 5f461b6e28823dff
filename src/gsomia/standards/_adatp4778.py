"""ADatP-4778 binding data objects: an item's 4774 labels and its data, bound by a signature.

Two forms, each checkable by a tool that knows nothing of gsomia:

- XML (``application/vnd.nato.bindingdataobject+xml``): ``mb:BindingInformation`` with a
  ``ds:Signature`` first (``signxml``: ECDSA-SHA256 with SHA-384 digests and exclusive
  canonicalisation, the algorithms ADatP-4778.2 mandates, ``X509Data`` holding the chain of
  :mod:`gsomia.standards._binding`), then one ``mb:MetadataBinding`` (``Id="binding"``, the
  signature's one reference) with one ``mb:Metadata`` per 4774 label, one holding the
  originator's own signature of label and payload (``g:originatorSignature``, the authority that
  crosses every hop), and ``mb:Data`` holding the payload (base64, its media type named).
- JSON (``application/vnd.nato.bindingdataobject+json``): a JWS in the flattened JSON
  serialisation (ES256, ``x5c`` = the same chain, ``cty`` = the media type) whose payload is the
  same structure in JSON: ``{"BindingInformation": {"MetadataBindingContainer": [{"MetadataBinding":
  [{"Metadata": [...], "Data": [...]}]}]}}``.

:func:`read_binding` fails closed (one :class:`~gsomia.errors.EnvelopeError`, its ``detail`` for
the audit log): the chain must hold and end at the signing party's registered key, the signature
must verify, only what the signature covers is read (no signature wrapping), the labels must
parse, and the originator's signature must verify and say exactly this item id, label and payload,
so a label swapped under a valid binding signature is refused.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from joserfc import jws
from joserfc.errors import JoseError
from joserfc.jwk import ECKey
from lxml import etree
from signxml.algorithms import CanonicalizationMethod, DigestAlgorithm, SignatureMethod
from signxml.exceptions import InvalidInput, InvalidSignature, SignXMLException
from signxml.signer import XMLSigner
from signxml.verifier import SignatureConfiguration, XMLVerifier

from gsomia._codec import label_to_dict
from gsomia.core.catalogue import Catalogue
from gsomia.core.labels import SecurityLabel
from gsomia.crypto.envelope import verify_origin
from gsomia.crypto.keys import KeyRing, PeerIdentity
from gsomia.errors import EnvelopeError, GsomiaError
from gsomia.kernel import parse_item_content
from gsomia.standards import _xml
from gsomia.standards._adatp4774 import (
    NS_4774,
    Labels,
    from_labels,
    label_element,
    labels_from_elements,
    labels_from_json,
    labels_to_json,
    to_labels,
)
from gsomia.standards._binding import Signer, check_chain, new_binding_key

__all__ = [
    "BDO_JSON",
    "BDO_XML",
    "NS_4778",
    "Binding",
    "bind_json",
    "bind_xml",
    "read_binding",
]

NS_4778 = "urn:nato:stanag:4778:bindinginformation:1:0"
NS_GSOMIA = "urn:gsomia:binding:1:0"
NS_XMIME = "http://www.w3.org/2005/05/xmlmime"
BDO_XML = "application/vnd.nato.bindingdataobject+xml"
BDO_JSON = "application/vnd.nato.bindingdataobject+json"
_MB = f"{{{NS_4778}}}"
_G = f"{{{NS_GSOMIA}}}"
_DS = "{http://www.w3.org/2000/09/xmldsig#}"
_BINDING_ID = "binding"
_XSD = "adatp-4778.xsd"
_MEDIA = {"json": "application/json", "bytes": "application/octet-stream"}
_TYPES = {v: k for k, v in _MEDIA.items()}
DEFAULT_VALIDITY = timedelta(days=14)


class _BindingJWS(jws.JWSRegistry):
    """ES256 only, with room in the header for the ``x5c`` chain (joserfc's default stops at 512 bytes)."""

    max_header_length = 16 * 1024


_JWS = _BindingJWS(algorithms=["ES256"])


@dataclass(frozen=True, slots=True)
class Binding:
    """What a verified binding says: who bound it, the item, its label (with the alternatives the
    document carried) and payload, and the originator's signature that vouches for them."""

    signer: Signer
    item_id: str
    label: SecurityLabel
    payload_type: str
    payload: bytes
    origin: str


# --- writing ---


def _data_element(item_id: str, payload_type: str, payload: bytes) -> etree._Element:
    data = etree.Element(_MB + "Data", nsmap={"xmime": NS_XMIME})
    data.set(f"{{{NS_XMIME}}}contentType", _MEDIA[payload_type])
    data.set("encoding", "base64")
    wrapped = etree.SubElement(data, _G + "payload", nsmap={"g": NS_GSOMIA}, item=item_id)
    wrapped.text = base64.b64encode(payload).decode()
    return data


def bind_xml(
    item_id: str,
    label: SecurityLabel,
    payload_type: str,
    payload: bytes,
    origin: str,
    *,
    catalogue: Catalogue,
    ring: KeyRing,
    at: datetime,
    validity: timedelta = DEFAULT_VALIDITY,
) -> bytes:
    """The item as an XML binding data object signed now for ``validity`` (the node's key, X.509)."""
    labels = to_labels(label, catalogue, at=at)
    root = etree.Element(_MB + "BindingInformation", nsmap={"mb": NS_4778, "ds": _DS[1:-1]})
    etree.SubElement(root, _DS + "Signature", Id="placeholder")
    container = etree.SubElement(root, _MB + "MetadataBindingContainer")
    binding = etree.SubElement(container, _MB + "MetadataBinding", Id=_BINDING_ID)
    for n, element in enumerate(
        [label_element(labels.originator), *(label_element(a, alternative=True) for a in labels.alternatives)]
    ):
        metadata = etree.SubElement(binding, _MB + "Metadata")
        metadata.append(element)
        if n == 0:  # the originator's signature right after its label
            signed = etree.SubElement(binding, _MB + "Metadata")
            etree.SubElement(signed, _G + "originatorSignature", nsmap={"g": NS_GSOMIA}).text = origin
    binding.append(_data_element(item_id, payload_type, payload))
    etree.indent(root, space="  ")  # laid out for people before signing: the bytes signed are the bytes sent
    key = new_binding_key(ring, at, validity)
    signer = XMLSigner(
        signature_algorithm=SignatureMethod.ECDSA_SHA256,
        digest_algorithm=DigestAlgorithm.SHA384,
        c14n_algorithm=CanonicalizationMethod.EXCLUSIVE_XML_CANONICALIZATION_1_0,
    )
    signed_root = signer.sign(
        root, key=key.private, cert=key.chain_pem(), reference_uri=f"#{_BINDING_ID}", id_attribute="Id"
    )
    _xml.validate(signed_root, _XSD, "binding data object")
    out: bytes = etree.tostring(signed_root, xml_declaration=True, encoding="UTF-8")
    return out


def _metadata_json(labels: Labels, origin: str) -> list[dict[str, Any]]:
    standard = labels_to_json(labels)
    out: list[dict[str, Any]] = [
        {"originatorConfidentialityLabel": standard["originatorConfidentialityLabel"]}
    ]
    out.append({"gsomia:originatorSignature": origin})
    out += [
        {"alternativeConfidentialityLabel": a} for a in standard.get("alternativeConfidentialityLabel", [])
    ]
    return out


def bind_json(
    item_id: str,
    label: SecurityLabel,
    payload_type: str,
    payload: bytes,
    origin: str,
    *,
    catalogue: Catalogue,
    ring: KeyRing,
    at: datetime,
    validity: timedelta = DEFAULT_VALIDITY,
) -> str:
    """The item as a JSON binding data object: a flattened JWS (ES256, ``x5c``) over the structure."""
    document = {
        "BindingInformation": {
            "MetadataBindingContainer": [
                {
                    "MetadataBinding": [
                        {
                            "Metadata": _metadata_json(to_labels(label, catalogue, at=at), origin),
                            "Data": [
                                {
                                    "item": item_id,
                                    "contentType": _MEDIA[payload_type],
                                    "encoding": "base64",
                                    "value": base64.b64encode(payload).decode(),
                                }
                            ],
                        }
                    ]
                }
            ]
        }
    }
    key = new_binding_key(ring, at, validity)
    chain = [base64.b64encode(c.public_bytes(serialization.Encoding.DER)).decode() for c in key.chain]
    private = ECKey.import_key(
        key.private.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    payload_text = json.dumps(document, ensure_ascii=False, sort_keys=True, separators=(",", ":"))
    header = {"alg": "ES256", "cty": BDO_JSON, "x5c": chain}
    signed = jws.serialize_json({"protected": header}, payload_text, private, registry=_JWS)
    return json.dumps(signed, indent=2)


# --- reading ---


def _chain_of_xml(signature: etree._Element) -> list[x509.Certificate]:
    found = []
    for text in signature.iterfind(f".//{_DS}X509Certificate"):
        try:
            found.append(x509.load_der_x509_certificate(base64.b64decode("".join((text.text or "").split()))))
        except (ValueError, binascii.Error) as exc:
            raise EnvelopeError("malformed", "a certificate in the signature is not DER") from exc
    return found


def _read_xml(
    data: bytes, at: datetime, identities: Callable[[str], PeerIdentity | None], own: KeyRing
) -> tuple[Signer, list[etree._Element], str, str, str, bytes]:
    try:
        root = _xml.parse(data, "binding data object")
        _xml.validate(root, _XSD, "binding data object")
    except GsomiaError as exc:
        raise EnvelopeError("malformed", str(exc)) from exc
    signatures = root.findall(_DS + "Signature")
    if len(signatures) != 1:
        raise EnvelopeError("malformed", f"{len(signatures)} signatures; gsomia reads a binding signed once")
    leaf, signer = check_chain(_chain_of_xml(signatures[0]), at, identities, own)
    config = SignatureConfiguration(
        require_x509=True,
        expect_references=1,
        signature_methods=frozenset({SignatureMethod.ECDSA_SHA256, SignatureMethod.ECDSA_SHA384}),
        digest_algorithms=frozenset({DigestAlgorithm.SHA384, DigestAlgorithm.SHA256, DigestAlgorithm.SHA512}),
        verification_time=at,  # the node's instant, as for every other signature it checks
    )
    try:
        result = XMLVerifier().verify(
            root,
            x509_cert=leaf,
            id_attribute="Id",
            expect_config=config,
            ignore_ambiguous_key_info=True,
        )
    except (InvalidSignature, InvalidInput, SignXMLException, ValueError) as exc:
        raise EnvelopeError("bad-signature", f"the binding signature does not verify: {exc}") from exc
    if isinstance(result, list):
        raise EnvelopeError("malformed", "a binding signed more than once")
    if sum(1 for _ in root.iter(_MB + "MetadataBinding")) != 1:
        raise EnvelopeError("malformed", "gsomia reads a binding with exactly one MetadataBinding")
    binding = result.signed_xml  # only what the signature covers is read from here on
    if binding is None or etree.QName(binding).text != _MB + "MetadataBinding":
        raise EnvelopeError("malformed", "the signature does not cover a MetadataBinding")
    labels, origins, data_elements = [], [], []
    for child in binding:
        tag = etree.QName(child).text
        if tag == _MB + "Metadata":
            for inner in child:
                if etree.QName(inner).namespace == NS_4774:
                    labels.append(inner)
                elif etree.QName(inner).text == _G + "originatorSignature":
                    origins.append((inner.text or "").strip())
                else:
                    raise EnvelopeError(
                        "malformed", f"metadata {etree.QName(inner).text} is not one gsomia reads"
                    )
        elif tag == _MB + "Data":
            data_elements.append(child)
        else:
            raise EnvelopeError("malformed", f"{tag} is not something gsomia reads in a binding")
    if len(origins) != 1 or len(data_elements) != 1:
        raise EnvelopeError("malformed", "a binding needs one originator signature and one data object")
    data_element = data_elements[0]
    wrapped = data_element.find(_G + "payload")
    media = data_element.get(f"{{{NS_XMIME}}}contentType")
    if wrapped is None or media not in _TYPES or data_element.get("encoding") != "base64":
        raise EnvelopeError("malformed", "the data object is not a base64 gsomia payload of a known type")
    try:
        payload = base64.b64decode("".join((wrapped.text or "").split()), validate=True)
    except (ValueError, binascii.Error) as exc:
        raise EnvelopeError("malformed", "the data object is not base64") from exc
    return signer, labels, origins[0], str(wrapped.get("item")), _TYPES[str(media)], payload


def _read_json(
    text: str, at: datetime, identities: Callable[[str], PeerIdentity | None], own: KeyRing
) -> tuple[Signer, Labels, str, str, str, bytes]:
    try:
        outer = json.loads(text)
        header = json.loads(
            base64.urlsafe_b64decode(outer["protected"] + "=" * (-len(outer["protected"]) % 4))
        )
        chain = [x509.load_der_x509_certificate(base64.b64decode(c)) for c in header["x5c"]]
    except (ValueError, KeyError, TypeError, binascii.Error) as exc:
        raise EnvelopeError("malformed", "not a JWS binding data object with an x5c chain") from exc
    if header.get("alg") != "ES256" or header.get("cty") != BDO_JSON:
        raise EnvelopeError("malformed", "the JWS is not an ES256 binding data object")
    leaf, signer = check_chain(chain, at, identities, own)
    public = ECKey.import_key(
        leaf.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    )
    try:
        verified = jws.deserialize_json(outer, public, registry=_JWS)
        document = json.loads(verified.payload)
        binding = document["BindingInformation"]["MetadataBindingContainer"][0]["MetadataBinding"][0]
        metadata, data = binding["Metadata"], binding["Data"]
    except (JoseError, ValueError, KeyError, TypeError, IndexError) as exc:
        raise EnvelopeError("bad-signature", f"the binding signature does not verify: {exc}") from exc
    standard: dict[str, Any] = {}
    origins = []
    for entry in metadata if isinstance(metadata, list) else []:
        if not isinstance(entry, dict) or len(entry) != 1:
            raise EnvelopeError("malformed", "each Metadata entry holds one member")
        [(name, value)] = entry.items()
        if name == "originatorConfidentialityLabel":
            standard[name] = value
        elif name == "alternativeConfidentialityLabel":
            standard.setdefault(name, []).append(value)
        elif name == "gsomia:originatorSignature" and isinstance(value, str):
            origins.append(value)
        else:
            raise EnvelopeError("malformed", f"metadata {name!r} is not one gsomia reads")
    if len(origins) != 1 or not isinstance(data, list) or len(data) != 1 or not isinstance(data[0], dict):
        raise EnvelopeError("malformed", "a binding needs one originator signature and one data object")
    item = data[0]
    if (
        item.get("contentType") not in _TYPES
        or item.get("encoding") != "base64"
        or not isinstance(item.get("item"), str)
    ):
        raise EnvelopeError("malformed", "the data object is not a base64 gsomia payload of a known type")
    try:
        payload = base64.b64decode(str(item.get("value")), validate=True)
        labels = labels_from_json(standard)
    except (ValueError, binascii.Error) as exc:
        raise EnvelopeError("malformed", f"the binding's content does not parse: {exc}") from exc
    return signer, labels, origins[0], item["item"], _TYPES[item["contentType"]], payload


def read_binding(
    data: bytes,
    *,
    catalogue: Catalogue,
    at: datetime,
    identities: Callable[[str], PeerIdentity | None],
    own: KeyRing,
) -> Binding:
    """A verified binding data object (XML or JSON), or :class:`EnvelopeError` naming why not."""
    if data.lstrip()[:1] == b"{":
        signer, labels, origin, item_id, payload_type, payload = _read_json(
            data.decode("utf-8", "replace"), at, identities, own
        )
    else:
        signer, elements, origin, item_id, payload_type, payload = _read_xml(data, at, identities, own)
        try:
            labels = labels_from_elements(elements)
        except GsomiaError as exc:
            raise EnvelopeError("malformed", f"the binding's labels do not parse: {exc}") from exc
    try:
        label = from_labels(labels, catalogue)
    except GsomiaError as exc:
        raise EnvelopeError("malformed", f"the binding's label cannot be mapped: {exc}") from exc
    originator, content = verify_origin(origin, identities, at, own=own)
    try:
        signed = parse_item_content(content, catalogue)
    except GsomiaError as exc:
        raise EnvelopeError(
            "bad-origin-signature", f"the originator's content does not parse: {exc}"
        ) from exc
    bare = label_to_dict(label) | {"alternatives": []}
    if (
        signed.label.originator != originator
        or label_to_dict(signed.label) | {"alternatives": []} != bare
        or signed.item_id != item_id
        or signed.payload != payload
        or signed.payload_type != payload_type
    ):
        raise EnvelopeError(
            "bad-origin-signature",
            "the binding's item, label or data is not what the originator signed (swapped or altered)",
        )
    return Binding(signer, item_id, label, signed.payload_type, payload, origin)
