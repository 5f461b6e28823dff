"""ADatP-4778 binding data objects: written by a node, checked by tools that know nothing of gsomia,
read back through the same decisions as any item, and refused when forged, swapped or expired."""

from __future__ import annotations

import base64
import hashlib
import json
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from jwcrypto import jwk as jwcrypto_jwk
from jwcrypto import jws as jwcrypto_jws
from lxml import etree
from signxml import XMLVerifier
from signxml.verifier import SignatureConfiguration
from tests.node_fixtures import add

from gsomia.crypto.envelope import open_envelope, seal
from gsomia.demo import network
from gsomia.errors import EnvelopeError, InvalidInputError, NotFoundError
from gsomia.standards import export_binding, import_binding, verify_binding
from gsomia.standards._adatp4778 import bind_xml
from gsomia.testing import FakeClock, make_node

GSOMIA = "kor-jpn-gsomia-2016"
LABEL = {
    "originator": "KOR",
    "classification": "군사II급비밀",
    "releasable_to": ["JPN"],
    "purpose": "threat-assessment",
    "topics": ["dprk-missile"],
    "created": "2024-02-01T09:00:00+09:00",
}


class Pair:
    def __init__(self, root: Path) -> None:
        self.clock = FakeClock()
        self.kor = make_node(root / "kor", "KOR", clock=self.clock)
        self.jpn = make_node(root / "jpn", "JPN", clock=self.clock)
        self.usa = make_node(root / "usa", "USA", clock=self.clock)
        for a, b, agreements in (
            (self.kor, self.jpn, [GSOMIA]),
            (self.jpn, self.kor, [GSOMIA]),
            (self.usa, self.jpn, ["usa-jpn-gsomia-2007"]),
            (self.usa, self.kor, ["usa-kor-gsomia-1987"]),
        ):
            a.exchange.register_peer(None, b.exchange.identity(), agreements)
        network.assure({"KOR": self.kor, "JPN": self.jpn, "USA": self.usa})  # Art. 7(5)
        self.officer = add(
            self.kor, "kim", "KOR", "군사II급비밀", ["dprk-missile"], ["analyst", "release_officer"]
        )
        self.tanaka = add(self.jpn, "tanaka", "JPN", "極秘", ["dprk-missile"], ["analyst"])
        self.kor.items.ingest(self.officer, label=LABEL, payload=b'{"track": "KN-23"}', item_id="kor-track")

    def close(self) -> None:
        for node in (self.kor, self.jpn, self.usa):
            node.close()


@pytest.fixture
def pair(tmp_path: Path) -> Iterator[Pair]:
    made = Pair(tmp_path)
    yield made
    made.close()


@pytest.mark.parametrize("form", ["xml", "json"])
def test_a_binding_round_trips_and_the_receiver_stores_it_through_its_decisions(
    pair: Pair, form: str
) -> None:
    data = export_binding(pair.kor, pair.officer, "kor-track", form)  # type: ignore[arg-type]
    binding = verify_binding(pair.jpn, data)
    assert (binding.signer.party, binding.item_id, binding.payload) == (
        "KOR",
        "kor-track",
        b'{"track": "KN-23"}',
    )
    assert (binding.label.originator, binding.label.classification) == ("KOR", "군사II급비밀")
    assert [(a.party, a.classification) for a in binding.label.alternatives] == [("JPN", "極秘")]
    result = import_binding(pair.jpn, data)
    assert result["status"] == "stored"
    item, payload = pair.jpn.items.read(pair.tanaka, "kor-track")
    assert payload == b'{"track": "KN-23"}'
    assert item.label.alternative_for("JPN") is not None
    assert import_binding(pair.jpn, data)["status"] == "duplicate"  # the same file again: nothing twice
    received = pair.jpn.store.audit(after_seq=0, kind="envelope.received", limit=10)
    assert [r.subject for r in received] == ["kor-track"]


def test_one_binding_in_another_form_or_reformatted_is_the_same_message(pair: Pair) -> None:
    """The XML binding, the same XML written again by another tool (canonical form, no declaration,
    other quotes and empty elements) and the JSON binding of the same item: one message, stored once,
    received once, each later import answered as a duplicate."""
    data = export_binding(pair.kor, pair.officer, "kor-track", "xml")
    rewritten = etree.tostring(etree.fromstring(data), method="c14n")
    assert rewritten != data
    verify_binding(pair.jpn, rewritten)  # still the same signed binding
    assert import_binding(pair.jpn, data)["status"] == "stored"
    assert import_binding(pair.jpn, rewritten)["status"] == "duplicate"
    assert import_binding(pair.jpn, export_binding(pair.kor, pair.officer, "kor-track", "json"))[
        "status"
    ] == ("duplicate")
    received = pair.jpn.store.audit(after_seq=0, kind="envelope.received", limit=10)
    assert [r.subject for r in received] == ["kor-track"]


def test_a_tool_that_knows_nothing_of_gsomia_verifies_the_xml_binding(pair: Pair) -> None:
    data = export_binding(pair.kor, pair.officer, "kor-track", "xml")
    root = etree.fromstring(data)
    ds = "{http://www.w3.org/2000/09/xmldsig#}"
    certs = [
        x509.load_der_x509_certificate(base64.b64decode("".join((c.text or "").split())))
        for c in root.iter(f"{ds}X509Certificate")
    ]
    leaf, node_cert = certs
    leaf.verify_directly_issued_by(node_cert)  # the chain, with cryptography alone
    config = SignatureConfiguration(expect_references=1, verification_time=pair.clock())
    signed = XMLVerifier().verify(
        data, x509_cert=leaf, id_attribute="Id", expect_config=config, ignore_ambiguous_key_info=True
    )
    assert etree.QName(signed.signed_xml).localname == "MetadataBinding"
    # the key KOR publishes: its identity document (a JWS in the general JSON serialization)
    # verifies under the certificate's key, and names it as KOR's signing key
    published = jwcrypto_jws.JWS()
    published.deserialize(json.dumps(pair.kor.exchange.identity()))
    published.verify(
        jwcrypto_jwk.JWK.from_pem(
            node_cert.public_key().public_bytes(
                serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
            )
        ),
        alg="EdDSA",
    )
    kor_key = next(k for k in json.loads(published.payload)["keys"] if k["use"] == "sig")["x"]
    raw = node_cert.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    assert base64.urlsafe_b64encode(raw).rstrip(b"=").decode() == kor_key


def test_a_tool_that_knows_nothing_of_gsomia_verifies_the_json_binding(pair: Pair) -> None:
    text = export_binding(pair.kor, pair.officer, "kor-track", "json").decode()
    header = json.loads(base64.urlsafe_b64decode(json.loads(text)["protected"] + "=="))
    assert header["cty"] == "application/vnd.nato.bindingdataobject+json"
    leaf = x509.load_der_x509_certificate(base64.b64decode(header["x5c"][0]))
    key = jwcrypto_jwk.JWK.from_pem(
        leaf.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    )
    token = jwcrypto_jws.JWS()
    token.deserialize(text)
    token.verify(key, alg="ES256")
    document = json.loads(token.payload)
    metadata = document["BindingInformation"]["MetadataBindingContainer"][0]["MetadataBinding"][0]["Metadata"]
    assert "originatorConfidentialityLabel" in metadata[0]


def test_a_forged_binding_signature_is_refused_and_audited(pair: Pair) -> None:
    data = export_binding(pair.kor, pair.officer, "kor-track", "xml")
    root = etree.fromstring(data)
    value = root.find(".//{http://www.w3.org/2000/09/xmldsig#}SignatureValue")
    assert value is not None
    raw = bytearray(base64.b64decode(value.text or ""))
    raw[5] ^= 1
    value.text = base64.b64encode(bytes(raw)).decode()
    with pytest.raises(EnvelopeError) as refused:
        import_binding(pair.jpn, etree.tostring(root))
    assert (str(refused.value), refused.value.detail) == ("envelope refused", "bad-signature")
    assert pair.jpn.store.audit(after_seq=0, kind="bdo.refused", limit=10)[0].outcome == "refused"
    assert pair.jpn.store.get_item("kor-track") is None


@pytest.mark.parametrize("form", ["xml", "json"])
def test_a_label_swapped_under_a_valid_signature_is_refused(pair: Pair, form: str) -> None:
    """Editing the label breaks the binding signature; re-binding a downgraded label with a valid key
    (JPN's) is caught by the originator's signature, which the label must match."""
    data = export_binding(pair.kor, pair.officer, "kor-track", form)  # type: ignore[arg-type]
    if form == "xml":
        edited = data.decode().replace("군사II급비밀", "군사III급비밀", 1).replace(">極秘<", ">秘<").encode()
    else:
        outer = json.loads(data)
        inner = base64.urlsafe_b64decode(outer["payload"] + "==").decode()
        inner = inner.replace("군사II급비밀", "군사III급비밀", 1).replace('"極秘"', '"秘"')
        outer["payload"] = base64.urlsafe_b64encode(inner.encode()).rstrip(b"=").decode()
        edited = json.dumps(outer).encode()
    assert edited != data
    with pytest.raises(EnvelopeError) as broken:
        verify_binding(pair.jpn, edited)
    assert broken.value.detail == "bad-signature"
    pair.jpn.exchange.receive_bound("KOR", pair.kor.exchange.origin_jws("kor-track"), "threat-assessment")
    held = pair.jpn.items.held("kor-track")
    assert held is not None
    lowered = pair.jpn.catalogue.label(
        originator="KOR",
        classification="군사III급비밀",
        releasable_to=["JPN", "USA"],
        purpose="threat-assessment",
        topics=["dprk-missile"],
        created=held.label.created,
    )
    forged = bind_xml(
        "kor-track",
        lowered,
        "json",
        b'{"track": "KN-23"}',
        pair.kor.exchange.origin_jws("kor-track"),
        catalogue=pair.jpn.catalogue,
        ring=pair.jpn.ring,
        at=pair.clock(),
    )
    with pytest.raises(EnvelopeError) as refused:
        verify_binding(pair.usa, forged)  # JPN's binding key is genuine; the label is not KOR's
    assert refused.value.detail == "bad-origin-signature"


def test_an_unregistered_signer_or_an_expired_binding_is_refused(pair: Pair, tmp_path: Path) -> None:
    data = export_binding(pair.kor, pair.officer, "kor-track", "xml")
    stranger = make_node(tmp_path / "stranger", "JPN", clock=pair.clock)  # registered no peer at all
    try:
        with pytest.raises(EnvelopeError) as unknown:
            verify_binding(stranger, data)
        assert unknown.value.detail == "unknown-sender"
    finally:
        stranger.close()
    pair.clock.advance(days=15)
    with pytest.raises(EnvelopeError) as late:
        verify_binding(pair.jpn, data)
    assert late.value.detail in ("expired", "key-not-valid")


def test_a_second_unsigned_binding_beside_the_signed_one_is_refused(pair: Pair) -> None:
    """Signature wrapping: nothing outside what the signature covers is ever read."""
    data = export_binding(pair.kor, pair.officer, "kor-track", "xml")
    root = etree.fromstring(data)
    container = root.find("{urn:nato:stanag:4778:bindinginformation:1:0}MetadataBindingContainer")
    assert container is not None
    extra = etree.fromstring(etree.tostring(container))
    extra[0].set("Id", "other")
    root.insert(1, extra)
    with pytest.raises(EnvelopeError) as refused:
        verify_binding(pair.jpn, etree.tostring(root))
    assert refused.value.detail == "malformed"


def test_xxe_in_a_binding_is_refused(pair: Pair) -> None:
    hostile = b'<?xml version="1.0"?><!DOCTYPE x [<!ENTITY e SYSTEM "file:///etc/passwd">]><x>&e;</x>'
    with pytest.raises(EnvelopeError) as refused:
        verify_binding(pair.jpn, hostile)
    assert refused.value.detail == "malformed"


def test_a_reader_who_may_not_read_the_item_gets_no_binding(pair: Pair) -> None:
    outsider = add(pair.kor, "lee", "KOR", "군사III급비밀", ["dprk-missile"], ["analyst"])
    with pytest.raises(NotFoundError, match="no item 'kor-track'"):
        export_binding(pair.kor, outsider, "kor-track", "xml")
    with pytest.raises(InvalidInputError):
        export_binding(pair.kor, pair.officer, "kor-track", "pdf")  # type: ignore[arg-type]


def test_a_binding_from_a_holder_is_decided_as_a_third_party_release(pair: Pair) -> None:
    """JPN holds KOR's item and binds it for USA: USA's release decision refuses it (no consent)."""
    import_binding(pair.jpn, export_binding(pair.kor, pair.officer, "kor-track", "xml"))
    onward = export_binding(pair.jpn, pair.tanaka, "kor-track", "xml")
    result = import_binding(pair.usa, onward)
    assert result["status"] == "refused"
    assert pair.usa.store.get_item("kor-track") is None


def test_the_api_serves_the_label_and_the_binding_to_a_reader_only(pair: Pair) -> None:
    import asyncio

    import httpx

    from gsomia.api import create_app

    outsider = add(pair.kor, "park", "KOR", "군사III급비밀", ["dprk-missile"], ["analyst"])
    tokens = {p.id: pair.kor.credentials.issue(None, p.id)[1] for p in (pair.officer, outsider)}
    app = create_app(pair.kor)

    async def get(url: str, who: str) -> httpx.Response:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://node") as client:
            return await client.get(url, headers={"Authorization": f"Bearer {tokens[who]}"})

    binding = asyncio.run(get("/items/kor-track/binding?format=json", "kim"))
    assert binding.status_code == 200
    assert binding.headers["content-type"] == "application/vnd.nato.bindingdataobject+json"
    assert verify_binding(pair.jpn, binding.content).item_id == "kor-track"
    label = asyncio.run(get("/items/kor-track/label", "kim"))
    assert label.headers["content-type"].startswith("application/xml")
    assert b"originatorConfidentialityLabel" in label.content
    assert asyncio.run(get("/items/kor-track/binding", "park")).status_code == 404  # as an unknown id
    assert asyncio.run(get("/items/kor-track/label?format=pdf", "kim")).status_code == 422


def test_a_partner_cannot_take_a_bindings_message_id_first(pair: Pair) -> None:
    """A binding is not addressed: USA, holding KOR's binding too, knows the message id JPN will give
    it (from the file's digest) and sends JPN an item of its own under that id first. JPN must not
    then refuse KOR's binding as 'message id of another sender' (nor take it as done)."""
    pair.jpn.exchange.register_peer(None, pair.usa.exchange.identity(), ["usa-jpn-gsomia-2007"])
    data = export_binding(pair.kor, pair.officer, "kor-track", "xml")
    officer = add(pair.usa, "smith", "USA", "SECRET", ["dprk-missile"], ["analyst", "release_officer"])
    label = {
        "originator": "USA",
        "classification": "SECRET",
        "releasable_to": ["JPN"],
        "purpose": "threat-assessment",
        "topics": ["dprk-missile"],
        "created": "2024-02-01T09:00:00+00:00",
    }
    pair.usa.items.ingest(officer, label=label, payload=b'{"track": "usa"}', item_id="usa-track")
    entry = pair.usa.exchange.release(officer, "usa-track", "JPN")
    now = pair.clock.now
    body = open_envelope(
        pair.jpn.ring, entry.envelope, pair.jpn.kernel.peers.peer, now, timedelta(minutes=5)
    ).body
    jpn = pair.usa.exchange.peer("JPN")
    assert jpn is not None
    taken = f"bdo-{hashlib.sha256(data).hexdigest()[:48]}"
    forged = seal(pair.usa.ring, jpn, body, msg_id=taken, at=now, ttl=timedelta(hours=1))
    (first,) = pair.jpn.exchange.receive([forged])
    assert first["status"] == "refused", first  # an id of the bindings' own is no envelope's
    result = import_binding(pair.jpn, data)
    assert result["status"] == "stored", result
    _, payload = pair.jpn.items.read(pair.tanaka, "kor-track")
    assert payload == b'{"track": "KN-23"}'
