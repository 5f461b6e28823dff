"""Load parties, schemes, agreements and event files (TOML) into core values.

This is the boundary: files are parsed with pydantic models (unknown fields are
refused) and every problem becomes a :class:`~gsomia.errors.DataFileError` that
names the file, the field and the problem. The file format is documented in
``docs/DATA_FORMAT.md``.
"""

from __future__ import annotations

import re
import tomllib
from collections.abc import Iterable, Iterator, Sequence
from datetime import date, datetime, tzinfo
from importlib.resources import files
from importlib.resources.abc import Traversable
from pathlib import Path
from typing import Annotated, Literal, TypeVar
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from gsomia._canonical import unstorable
from gsomia.core.agreements import Agreement, Equivalence, EquivalenceRow, Topology
from gsomia.core.assumptions import Assumption
from gsomia.core.catalogue import Catalogue
from gsomia.core.instants import local_midnight, parse_instant
from gsomia.core.lifecycle import Event, EventKind, TermRules
from gsomia.core.parties import Classification, Party, Scheme
from gsomia.errors import DataFileError, GsomiaError

__all__ = ["load_catalogue", "load_events"]

_DURATION = re.compile(r"^P(?:(\d+)Y)?(?:(\d+)M)?$")
_ID = r"^[a-z0-9][a-z0-9-]*$"
TOPIC_PATTERN = r"^[a-z0-9][a-z0-9-]{0,63}$"  # lower-case words joined by hyphens (dprk-missile)
_T = TypeVar("_T")


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)


class _Level(_Model):
    name: Annotated[str, Field(min_length=1)]
    alias: Annotated[str, Field(pattern=r"^[a-z0-9-]+$")]
    gloss: Annotated[str, Field(min_length=1)]
    rank: int
    valid_from: datetime | date | None = None  # the level exists from this instant (with offset)
    valid_until: datetime | date | None = None  # and no longer from this one


class _Assumption(_Model):
    text: Annotated[str, Field(min_length=1)]
    consequence: Annotated[str, Field(min_length=1)]
    about: str = ""  # an event id or a status of the agreement; empty: always


class _Policy(_Model):
    name: Annotated[str, Field(min_length=1, max_length=256)]
    oid: Annotated[str, Field(pattern=r"^[0-2](\.(0|[1-9][0-9]*))+$")]


class _Scheme(_Model):
    title: str
    levels: Annotated[list[_Level], Field(min_length=1)]
    notes: str = ""
    assumptions: list[_Assumption] = []  # the scheme's assumptions, each with its consequence
    policy: _Policy | None = None  # the scheme as a security policy, as the party's own SPIF names it


class _PartyInfo(_Model):
    code: Annotated[str, Field(pattern=r"^[A-Z]{3}$")]
    name: Annotated[str, Field(min_length=1)]
    topics: list[Annotated[str, Field(pattern=TOPIC_PATTERN)]] = []  # what its items may be about


class _PartyFile(_Model):
    party: _PartyInfo
    scheme: _Scheme


class _Scope(_Model):
    all_military_information: bool = False
    topics: list[Annotated[str, Field(min_length=1)]] = []


class _Term(_Model):
    initial: str | None = None
    renewal: str | None = None
    notice_days: Annotated[int, Field(ge=0)]


class _Row(_Model):
    levels: dict[str, str]
    one_way_from: str | None = None
    valid_from: datetime | date | str | None = None
    valid_until: datetime | date | str | None = None
    alternative: bool = False  # a second level the receiver may apply (the earlier row's stays the default)


class _Event(_Model):
    id: Annotated[str, Field(pattern=_ID)]
    kind: Literal[
        "initialled",
        "approved",
        "announced",
        "signed",
        "entered_into_force",
        "termination_notified",
        "notice_suspended",
        "notice_withdrawn",
        "terminated",
        "amended",
    ]
    at: datetime | date | str
    reference: Annotated[str, Field(min_length=1)]
    party: str | None = None
    note: str = ""
    mutual_consent: bool = False  # a termination by the parties' mutual consent (Art. 21.3)


class _AgreementInfo(_Model):
    id: Annotated[str, Field(pattern=_ID)]
    title: Annotated[str, Field(min_length=1)]
    parties: Annotated[list[str], Field(min_length=2)]
    topology: Literal["bilateral", "multilateral", "hub"]
    hub: str | None = None
    timezone: str
    purposes: Annotated[list[str], Field(min_length=1)]
    scope: _Scope
    term: _Term
    equivalence: list[_Row]
    events: list[_Event] = []
    notes: str = ""
    assumptions: list[_Assumption] = []


class _AgreementFile(_Model):
    agreement: _AgreementInfo


class _EventsFile(_Model):
    events: Annotated[list[_Event], Field(min_length=1)]


def _validation_error(source: str, exc: ValidationError) -> DataFileError:
    errors = exc.errors()
    first = errors[0]
    field = ".".join(str(part) for part in first["loc"])
    problem = first["msg"]
    if len(errors) > 1:
        rest = "; ".join(".".join(str(p) for p in e["loc"]) + ": " + e["msg"] for e in errors[1:])
        problem += f" (and {len(errors) - 1} more: {rest})"
    return DataFileError(source, field, problem)


def _toml(source: str, text: bytes) -> dict[str, object]:
    """A data file's document: valid UTF-8 TOML holding no text a store cannot hold (TOML writes a
    NUL as ``\\u0000``, in a value or a quoted key; :func:`gsomia._canonical.unstorable`, the rule the
    API, the inbox and the command line apply), refused naming the place (``party.name``)."""
    try:
        document = tomllib.loads(text.decode("utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise DataFileError(source, "", f"not valid UTF-8 TOML: {exc}") from exc
    except RecursionError:
        raise DataFileError(source, "", "nested too deeply to be a data file") from None
    found = unstorable(document, "")
    if found is not None:
        raise DataFileError(source, found[0].lstrip(". ") or "(the document)", found[1])
    return document


def _months(source: str, field: str, text: str | None) -> int | None:
    if text is None:
        return None
    match = _DURATION.match(text)
    if not match or not any(match.groups()):
        raise DataFileError(source, field, f"{text!r} is not a duration in years/months such as P1Y or P6M")
    return int(match.group(1) or 0) * 12 + int(match.group(2) or 0)


def _zone(source: str, field: str, name: str) -> tzinfo:
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise DataFileError(source, field, f"unknown IANA time zone {name!r}") from exc


def _instant(source: str, field: str, value: datetime | date | str, tz: tzinfo) -> datetime:
    try:
        if isinstance(value, datetime):
            if value.tzinfo is None:
                raise DataFileError(source, field, f"{value.isoformat()} has no UTC offset")
            return value
        if isinstance(value, date):
            return local_midnight(value, tz)
        return parse_instant(value, tz)
    except GsomiaError as exc:
        if isinstance(exc, DataFileError):
            raise
        raise DataFileError(source, field, str(exc)) from exc


def _events(source: str, prefix: str, raw: Sequence[_Event], tz: tzinfo) -> tuple[Event, ...]:
    out = []
    for n, ev in enumerate(raw):
        field = f"{prefix}[{n}]"
        try:
            out.append(
                Event(
                    id=ev.id,
                    kind=EventKind(ev.kind),
                    at=_instant(source, f"{field}.at", ev.at, tz),
                    reference=ev.reference,
                    party=ev.party,
                    note=ev.note,
                    mutual_consent=ev.mutual_consent,
                )
            )
        except DataFileError:
            raise
        except GsomiaError as exc:
            raise DataFileError(source, field, str(exc)) from exc
    return tuple(out)


def parse_party(source: str, text: bytes) -> Party:
    """Parse one party file (a ``[party]`` table and its ``[scheme]``)."""
    try:
        model = _PartyFile.model_validate(_toml(source, text))
    except ValidationError as exc:
        raise _validation_error(source, exc) from exc
    code = model.party.code
    try:
        levels = tuple(
            Classification(
                code,
                lv.name,
                lv.rank,
                lv.alias,
                lv.gloss,
                _bound(source, f"scheme.levels[{n}].valid_from", lv.valid_from),
                _bound(source, f"scheme.levels[{n}].valid_until", lv.valid_until),
            )
            for n, lv in enumerate(model.scheme.levels)
        )
        policy = model.scheme.policy
        scheme = Scheme(
            code,
            model.scheme.title,
            levels,
            policy.name if policy else "",
            policy.oid if policy else "",
            model.scheme.notes,
            tuple(Assumption(a.text, a.consequence, a.about) for a in model.scheme.assumptions),
        )
        return Party(code, model.party.name, scheme, frozenset(model.party.topics))
    except DataFileError:
        raise
    except GsomiaError as exc:
        raise DataFileError(source, "scheme.levels", str(exc)) from exc


def _bound(source: str, field: str, value: datetime | date | None) -> datetime | None:
    """A level's validity bound: a party file has no time zone, so it must carry its offset."""
    if value is None:
        return None
    if not isinstance(value, datetime) or value.tzinfo is None:
        raise DataFileError(
            source,
            field,
            f"{value.isoformat()} needs a time and a UTC offset, e.g. 2014-12-10T00:00:00+09:00",
        )
    return value


def parse_agreement(source: str, text: bytes) -> Agreement:
    """Parse one agreement file (an ``[agreement]`` table)."""
    try:
        model = _AgreementFile.model_validate(_toml(source, text)).agreement
    except ValidationError as exc:
        raise _validation_error(source, exc) from exc
    tz = _zone(source, "agreement.timezone", model.timezone)
    scope = model.scope
    if scope.all_military_information == bool(scope.topics):
        raise DataFileError(
            source, "agreement.scope", "give either all_military_information = true or a list of topics"
        )
    term = model.term
    try:
        rules = TermRules(
            _months(source, "agreement.term.initial", term.initial),
            _months(source, "agreement.term.renewal", term.renewal),
            term.notice_days,
        )
    except DataFileError:
        raise
    except GsomiaError as exc:
        raise DataFileError(source, "agreement.term", str(exc)) from exc
    rows = []
    for n, row in enumerate(model.equivalence):
        if len(row.levels) < 2:
            raise DataFileError(
                source, f"agreement.equivalence[{n}]", "a row maps at least two parties' levels"
            )
        if row.one_way_from is not None and row.one_way_from not in row.levels:
            raise DataFileError(
                source,
                f"agreement.equivalence[{n}].one_way_from",
                f"{row.one_way_from} has no level in this row",
            )
        bounds = [
            None if value is None else _instant(source, f"agreement.equivalence[{n}].{name}", value, tz)
            for name, value in (("valid_from", row.valid_from), ("valid_until", row.valid_until))
        ]
        try:
            rows.append(
                EquivalenceRow(dict(row.levels), row.one_way_from, bounds[0], bounds[1], row.alternative)
            )
        except GsomiaError as exc:
            raise DataFileError(source, f"agreement.equivalence[{n}]", str(exc)) from exc
    events = _events(source, "agreement.events", model.events, tz)
    try:
        return Agreement(
            id=model.id,
            title=model.title,
            parties=tuple(model.parties),
            topology=Topology(model.topology),
            hub=model.hub,
            scope_topics=None if scope.all_military_information else frozenset(scope.topics),
            purposes=frozenset(model.purposes),
            timezone=tz,
            term=rules,
            equivalence=Equivalence(tuple(rows)),
            events=events,
            notes=model.notes,
            assumptions=tuple(Assumption(a.text, a.consequence, a.about) for a in model.assumptions),
        )
    except GsomiaError as exc:
        raise DataFileError(source, "agreement", str(exc)) from exc


def load_events(path: Path, tz: tzinfo) -> tuple[Event, ...]:
    """Read an events file (``[[events]]`` tables), for what-if evaluations."""
    source = str(path)
    try:
        text = path.read_bytes()
    except OSError as exc:
        raise DataFileError(source, "", f"cannot read: {exc.strerror}") from exc
    try:
        model = _EventsFile.model_validate(_toml(source, text))
    except ValidationError as exc:
        raise _validation_error(source, exc) from exc
    return _events(source, "events", model.events, tz)


def _walk(root: Traversable) -> Iterator[Traversable]:
    for entry in sorted(root.iterdir(), key=lambda e: e.name):
        if entry.is_dir():
            if entry.name != "launches":  # launch records for the stream, not catalogue files
                yield from _walk(entry)
        elif entry.name.endswith(".toml"):
            yield entry


def _sources(extra: Iterable[Path]) -> Iterator[tuple[str, bytes]]:
    shipped = files("gsomia") / "data"
    for entry in _walk(shipped):
        yield f"gsomia/data/{entry.name}", entry.read_bytes()
    for directory in extra:
        if not directory.is_dir():
            raise DataFileError(str(directory), "", "is not a directory of .toml data files")
        for path in sorted(directory.rglob("*.toml")):
            yield str(path), path.read_bytes()


def load_catalogue(extra: Iterable[Path] = ()) -> Catalogue:
    """The shipped parties and agreements plus those in ``extra`` directories.

    A file in an extra directory replaces a shipped party or agreement with the same
    code or id; two extra files defining the same one are refused.
    """
    parties: dict[str, tuple[str, Party]] = {}
    agreements: dict[str, tuple[str, Agreement]] = {}
    for source, text in _sources(extra):
        shipped = source.startswith("gsomia/data/")
        document = _toml(source, text)
        if "party" in document:
            party = parse_party(source, text)
            _add(parties, party.code, source, party, shipped)
        elif "agreement" in document:
            agreement = parse_agreement(source, text)
            _add(agreements, agreement.id, source, agreement, shipped)
        else:
            raise DataFileError(
                source, "", "is neither a party file ([party]) nor an agreement file ([agreement])"
            )
    known = {k: v for k, (_, v) in parties.items()}
    try:
        return Catalogue(known, {k: v for k, (_, v) in agreements.items()})
    except GsomiaError as exc:
        for key, (source, agreement) in agreements.items():  # name the file at fault, if one is
            try:
                Catalogue(known, {key: agreement})
            except GsomiaError as own:
                raise DataFileError(source, "agreement", str(own)) from exc
        raise DataFileError("catalogue", "", str(exc)) from exc


def _add(table: dict[str, tuple[str, _T]], key: str, source: str, value: _T, shipped: bool) -> None:
    previous = table.get(key)
    if previous is not None and (shipped or not previous[0].startswith("gsomia/data/")):
        raise DataFileError(source, "", f"{key} is already defined by {previous[0]}")
    table[key] = (source, value)
