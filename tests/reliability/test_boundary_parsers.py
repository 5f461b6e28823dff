"""Hypothesis against every parser at the boundary: whatever comes in, only the domain's errors come out.

Each parser gets two kinds of input: arbitrary JSON (or text), and a valid example with one
part replaced by something arbitrary, which reaches the deeper checks. The property: it
returns a value or raises a :class:`~gsomia.errors.GsomiaError`, never anything else
(a ``KeyError``, ``TypeError`` or ``AttributeError`` is a crash). ``-m slow`` runs many
more examples.
"""

from __future__ import annotations

import copy
import json
import os
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from importlib.resources import files
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gsomia._codec import label_from_dict, person_from_dict
from gsomia._datafiles import load_catalogue, load_events, parse_agreement, parse_party
from gsomia.core.instants import parse_instant
from gsomia.errors import GsomiaError
from gsomia.exchange._messages import consent_from_content, parse_item_content
from gsomia.node import Node, init_node_dir, load_config
from gsomia.taxii._stix import from_bundle, to_bundle, to_stix
from gsomia.testing import make_node

KST = ZoneInfo("Asia/Seoul")
FEW = settings(max_examples=60, deadline=None, suppress_health_check=list(HealthCheck), database=None)
MANY = settings(max_examples=2000, deadline=None, suppress_health_check=list(HealthCheck), database=None)

scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=30)
    | st.sampled_from(
        ["KOR", "JPN", "USA", "군사II급비밀", "極秘", "SECRET", "2024-01-01T00:00:00+09:00", ""]
    )
)
json_values = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner, max_size=4),
    max_leaves=12,
)

CATALOGUE = load_catalogue()
LABEL: dict[str, Any] = {
    "originator": "KOR",
    "classification": "군사II급비밀",
    "releasable_to": ["JPN"],
    "purpose": "threat-assessment",
    "topics": ["dprk-missile"],
    "caveats": [],
    "created": "2024-02-01T09:00:00+09:00",
}
PERSON: dict[str, Any] = {
    "id": "tanaka",
    "name": "Tanaka",
    "nationality": "JPN",
    "clearance": "極秘",
    "need_to_know": ["dprk-missile"],
    "roles": ["analyst"],
}
AGREEMENT = files("gsomia.data").joinpath("agreements/kor-jpn-gsomia-2016.toml").read_bytes()
PARTY = files("gsomia.data").joinpath("parties/KOR.toml").read_bytes()


def only_domain_errors(parse: Callable[[], object]) -> None:
    """Call ``parse``: a value or a GsomiaError with a message; anything else fails the property."""
    try:
        parse()
    except GsomiaError as exc:
        message = str(exc)
        assert message, "a domain error must say what is wrong"


@st.composite
def mutated(draw: st.DrawFn, valid: dict[str, Any]) -> Any:
    """``valid`` with one member replaced by, or added as, an arbitrary JSON value (or dropped)."""
    data = copy.deepcopy(valid)
    key = draw(st.sampled_from([*data, "unexpected"]))
    if draw(st.booleans()) and key in data:
        del data[key]
    else:
        data[key] = draw(json_values)
    return data


# --------------------------------------------------------------------------- labels, people


@FEW
@given(st.one_of(json_values, mutated(LABEL)))
def test_labels_from_json(data: Any) -> None:
    only_domain_errors(lambda: label_from_dict(data, CATALOGUE))


@FEW
@given(st.one_of(json_values, mutated(PERSON)))
def test_people_from_json(data: Any) -> None:
    only_domain_errors(lambda: person_from_dict(data, CATALOGUE))


@FEW
@given(st.text(max_size=40))
def test_instants(text: str) -> None:
    only_domain_errors(lambda: parse_instant(text, KST))


# --------------------------------------------------------------------------- data files and node.toml

toml_values = st.sampled_from(
    [
        '""',
        '"x"',
        "0",
        "-1",
        "1e400",
        "nan",
        "true",
        "[]",
        '["KOR", 1]',
        "{}",
        '{ KOR = "x" }',
        "2016-02-30",
        "2016-11-23T25:00:00",
        "2016-11-23",
        "1979-05-27T07:32:00Z",
        '"P-1Y"',
        '"Mars/Olympus"',
        '"hub"',
    ]
)


@st.composite
def mutated_toml(draw: st.DrawFn, valid: bytes) -> bytes:
    """A valid TOML file with some lines' values replaced, some lines dropped or repeated."""
    lines = valid.decode().splitlines()
    for _ in range(draw(st.integers(1, 4))):
        n = draw(st.integers(0, len(lines) - 1))
        action = draw(st.sampled_from(["value", "drop", "repeat", "garble"]))
        if action == "value" and "=" in lines[n]:
            lines[n] = lines[n].split("=", 1)[0] + "= " + draw(toml_values)
        elif action == "drop":
            del lines[n]
        elif action == "repeat":
            lines.insert(n, lines[n])
        else:
            lines[n] = draw(st.text(max_size=20))
        if not lines:
            break
    return "\n".join(lines).encode()


@FEW
@given(st.one_of(mutated_toml(AGREEMENT), st.binary(max_size=200)))
def test_agreement_files(text: bytes) -> None:
    only_domain_errors(lambda: parse_agreement("fuzz.toml", text))


@FEW
@given(st.one_of(mutated_toml(PARTY), st.binary(max_size=200)))
def test_party_files(text: bytes) -> None:
    only_domain_errors(lambda: parse_party("fuzz.toml", text))


EVENTS = b"""
[[events]]
id = "2030-01-01-notice"
kind = "termination_notified"
at = 2030-01-01
party = "KOR"
reference = "a what-if notice"
"""


@FEW
@given(st.one_of(mutated_toml(EVENTS), st.binary(max_size=200)))
def test_event_files(tmp_path_factory: pytest.TempPathFactory, text: bytes) -> None:
    path = tmp_path_factory.mktemp("events") / "events.toml"
    path.write_bytes(text)
    only_domain_errors(lambda: load_events(path, KST))


@pytest.fixture(scope="module")
def node_toml(tmp_path_factory: pytest.TempPathFactory) -> bytes:
    directory = tmp_path_factory.mktemp("node")
    init_node_dir(directory, "JPN")
    return (directory / "node.toml").read_bytes()


def test_node_config_files(tmp_path_factory: pytest.TempPathFactory, node_toml: bytes) -> None:
    @FEW
    @given(st.one_of(mutated_toml(node_toml), st.binary(max_size=200)))
    def check(text: bytes) -> None:
        directory = tmp_path_factory.mktemp("config")
        (directory / "node.toml").write_bytes(text)
        os.environ.pop("GSOMIA_DATABASE_URL", None)
        only_domain_errors(lambda: load_config(directory))

    check()


# --------------------------------------------------------------------------- what arrives from partners


def _item_content() -> dict[str, Any]:
    return {
        "v": 1,
        "kind": "item",
        "item": "k1",
        "label": LABEL,
        "payload_type": "json",
        "payload": "eyJuIjogMX0=",
    }


@FEW
@given(st.one_of(json_values, mutated(_item_content()), st.binary(max_size=100)))
def test_signed_item_content(data: Any) -> None:
    raw = data if isinstance(data, bytes) else json.dumps(data).encode()
    only_domain_errors(lambda: parse_item_content(raw, CATALOGUE))


CONSENT = {
    "v": 1,
    "kind": "consent",
    "id": "c1",
    "consent_kind": "third_party",
    "originator": "KOR",
    "recipient": "USA",
    "item": "k1",
    "holder": "JPN",
    "hub": None,
    "given_at": "2024-01-01T00:00:00+09:00",
    "expires": None,
    "reference": "letter 12",
}


@FEW
@given(st.one_of(json_values, mutated(CONSENT), st.binary(max_size=100)))
def test_signed_consents(data: Any) -> None:
    raw = data if isinstance(data, bytes) else json.dumps(data).encode()
    only_domain_errors(lambda: consent_from_content(raw, "KOR"))


def _bundle() -> dict[str, Any]:
    label = label_from_dict(LABEL, CATALOGUE)
    obj = to_stix("k1", label, "json", b'{"n": 1}', datetime(2024, 2, 1, tzinfo=UTC))
    return to_bundle([(label, obj)])


@st.composite
def mutated_bundle(draw: st.DrawFn) -> Any:
    """A real bundle with one of its objects (or the bundle itself) changed."""
    bundle = _bundle()
    objects = bundle["objects"]
    n = draw(st.integers(0, len(objects)))
    if n == len(objects):
        return draw(mutated(bundle))
    objects[n] = draw(mutated(objects[n]))
    return bundle


@FEW
@given(st.one_of(json_values, mutated_bundle()))
def test_taxii_bundles(bundle: Any) -> None:
    def parse() -> None:
        for imported in from_bundle(bundle, default_label=None):
            label_from_dict(imported.label, CATALOGUE)  # what ingest does next with the label

    only_domain_errors(parse)


@pytest.fixture(scope="module")
def receiver(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Node]:
    node = make_node(tmp_path_factory.mktemp("jpn"), "JPN")
    yield node
    node.close()


def test_whatever_arrives_at_an_inbox_is_refused_and_audited_never_raised(receiver: Node) -> None:
    @FEW
    @given(
        st.one_of(
            st.text(max_size=300),
            json_values.map(json.dumps),
            st.builds(
                lambda jwe: json.dumps({"format": "gsomia-envelope/1", "jwe": jwe}),
                st.text(
                    alphabet="ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_.", max_size=300
                ),
            ),
        )
    )
    def check(text: str) -> None:
        before = len(receiver.store.audit(kind="envelope.refused"))
        [answer] = receiver.exchange.receive([text])
        assert answer == {"status": "refused", "reason": "envelope refused", "receipt": None}
        assert len(receiver.store.audit(kind="envelope.refused")) == before + 1

    check()


def test_the_valid_examples_the_mutations_start_from_are_valid() -> None:
    """Else the mutations would only ever meet the first check, and prove little."""
    [imported] = from_bundle(_bundle())
    assert label_from_dict(imported.label, CATALOGUE) == label_from_dict(LABEL, CATALOGUE)
    assert parse_agreement("ok.toml", AGREEMENT).id == "kor-jpn-gsomia-2016"
    assert parse_party("ok.toml", PARTY).code == "KOR"
    assert person_from_dict(PERSON, CATALOGUE).id == "tanaka"
    assert parse_item_content(json.dumps(_item_content()).encode(), CATALOGUE).item_id == "k1"
    consent_from_content(json.dumps(CONSENT).encode(), "KOR")


# --------------------------------------------------------------------------- at length


@pytest.mark.slow
@MANY
@given(st.one_of(json_values, mutated(LABEL), mutated(PERSON), mutated_bundle()))
def test_labels_people_and_bundles_at_length(data: Any) -> None:
    only_domain_errors(lambda: label_from_dict(data, CATALOGUE))
    only_domain_errors(lambda: person_from_dict(data, CATALOGUE))
    only_domain_errors(lambda: [label_from_dict(i.label, CATALOGUE) for i in from_bundle(data)])


@pytest.mark.slow
@MANY
@given(st.one_of(mutated_toml(AGREEMENT), mutated_toml(PARTY)))
def test_data_files_at_length(text: bytes) -> None:
    only_domain_errors(lambda: parse_agreement("fuzz.toml", text))
    only_domain_errors(lambda: parse_party("fuzz.toml", text))
