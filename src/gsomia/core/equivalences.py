"""A party's equivalence change: its policy update, remapping its own levels from a stated instant.

An agreement's equivalence table (Art. 4) comes from the data files; a party may change its own
side of it later (a new national level, a decision to protect more strictly), and its partners
must apply the change from the instant it states. :class:`EquivalenceChange` is that change: the
agreement, the party, a sequence number per (agreement, party), the instant it takes effect and
the remappings, each of one of the party's own levels onto a partner's level (or onto none: that
level is no longer released to that partner).

:func:`check_change` says whether a party may make the change at all (a party to the agreement,
its own levels only, levels that exist); :func:`with_changes` gives the catalogue with changes
applied, each from the instant it applies at the node (never earlier than it was known there:
the past is not rewritten), and the catalogue's own checks (classified to classified, monotonic,
at every instant) refuse a change that would break them.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from datetime import datetime

from gsomia.core.agreements import Agreement, Equivalence, EquivalenceRow
from gsomia.core.catalogue import Catalogue
from gsomia.core.instants import require_aware
from gsomia.errors import AgreementError

__all__ = ["MAX_REMAPS", "AppliedChange", "EquivalenceChange", "Remap", "check_change", "with_changes"]

MAX_REMAPS = 64  # remappings in one change, at most


@dataclass(frozen=True, slots=True)
class Remap:
    """``party``'s ``level`` corresponds, from the change's instant, to ``partner``'s
    ``partner_level`` (``None``: to nothing, so it is no longer released to ``partner``)."""

    party: str
    level: str
    partner: str
    partner_level: str | None


@dataclass(frozen=True, slots=True)
class EquivalenceChange:
    """One party's change to its side of one agreement's equivalence table."""

    agreement: str
    party: str
    sequence: int
    effective: datetime
    remaps: tuple[Remap, ...]
    reason: str
    proposed_at: datetime

    def __post_init__(self) -> None:
        require_aware(self.effective, "equivalence change instant")
        require_aware(self.proposed_at, "equivalence change proposal instant")
        if self.sequence < 1:
            raise AgreementError("an equivalence change's sequence number starts at 1")
        if not self.remaps or len(self.remaps) > MAX_REMAPS:
            raise AgreementError(f"an equivalence change remaps between 1 and {MAX_REMAPS} levels")
        keys = [(r.party, r.level, r.partner) for r in self.remaps]
        if len(set(keys)) != len(keys):
            raise AgreementError("an equivalence change remaps one level onto one partner once")
        if not self.reason.strip():
            raise AgreementError("an equivalence change states its reason")

    @property
    def name(self) -> str:
        """``KOR's equivalence change 2 to kor-jpn-gsomia-2016``: how reasons name it."""
        return f"{self.party}'s equivalence change {self.sequence} to {self.agreement}"


@dataclass(frozen=True, slots=True)
class AppliedChange:
    """A change and the instant it applies from at this node: the stated instant, or the instant
    it became known here if that is later (a change never reaches back before it was known)."""

    change: EquivalenceChange
    applies: datetime

    def __post_init__(self) -> None:
        require_aware(self.applies, "equivalence change application instant")


def check_change(catalogue: Catalogue, change: EquivalenceChange, signer: str) -> EquivalenceChange:
    """The change with its levels named as the schemes name them, if ``signer`` may make it: a
    party to the agreement, speaking for itself, remapping only its own levels onto a partner's
    levels that exist. Anything else raises :class:`AgreementError` (or ``UnknownNameError``)."""
    agreement = catalogue.agreement(change.agreement)
    if change.party != signer:
        raise AgreementError(f"an equivalence change signed by {signer} speaks for {change.party}")
    if change.party not in agreement.parties:
        raise AgreementError(f"{change.party} is not a party to {agreement.id}: it changes nothing in it")
    own = catalogue.party(change.party).scheme
    named = []
    for remap in change.remaps:
        if remap.party != change.party:
            raise AgreementError(
                f"{change.party} may change only how its own levels map; {remap.party} {remap.level} "
                f"is {remap.party}'s side of {agreement.id}"
            )
        if remap.partner == change.party or remap.partner not in agreement.parties:
            raise AgreementError(f"{remap.partner} is not a partner of {change.party} under {agreement.id}")
        level = own.level(remap.level).name
        target = None
        if remap.partner_level is not None:
            target = catalogue.party(remap.partner).scheme.level(remap.partner_level).name
        named.append(Remap(change.party, level, remap.partner, target))
    return replace(change, remaps=tuple(named))


def _without(row: EquivalenceRow, party: str, partner: str, start: datetime) -> list[EquivalenceRow]:
    """Rows giving every directed mapping of ``row`` but ``party`` → ``partner``, from ``start``."""
    out = []
    sources = [row.one_way_from] if row.one_way_from is not None else list(row.levels)
    for src in sources:
        if src != party:
            out.append(replace(row, one_way_from=src, valid_from=start))
            continue
        rest = {p: lv for p, lv in row.levels.items() if p != partner}
        if len(rest) >= 2:
            out.append(replace(row, levels=rest, one_way_from=party, valid_from=start))
    return out


def _apply(table: Equivalence, remap: Remap, at: datetime, basis: str) -> Equivalence:
    """The table with ``remap`` in force from ``at``: each row giving the mapping ends there (its
    other mappings go on), and a row with the new mapping starts there."""
    rows: list[EquivalenceRow] = []
    for row in table.rows:
        maps = (
            row.levels.get(remap.party) == remap.level
            and remap.partner in row.levels
            and row.one_way_from in (None, remap.party)
        )
        if not maps or (row.valid_until is not None and row.valid_until <= at):
            rows.append(row)
            continue
        if row.valid_from is None or row.valid_from < at:
            ended = f"{row.basis}; ended by {basis}" if row.basis else f"ended by {basis}"
            rows.append(replace(row, valid_until=at, basis=ended))
        start = at if row.valid_from is None or row.valid_from < at else row.valid_from
        rows.extend(_without(row, remap.party, remap.partner, start))
    if remap.partner_level is not None:
        levels = {remap.party: remap.level, remap.partner: remap.partner_level}
        rows.append(EquivalenceRow(levels, remap.party, at, None, basis=basis))
    return Equivalence(tuple(rows))


def _changed(agreement: Agreement, applied: Sequence[AppliedChange]) -> Agreement:
    table = agreement.equivalence
    for entry in sorted(applied, key=lambda a: (a.change.party, a.change.sequence)):
        change = entry.change
        basis = f"{change.name}, effective {change.effective.isoformat()}"
        for remap in change.remaps:
            table = _apply(table, remap, entry.applies, basis)
    return replace(agreement, equivalence=table)


def with_changes(catalogue: Catalogue, applied: Iterable[AppliedChange]) -> Catalogue:
    """``catalogue`` with the changes applied, each from its instant (per party, in sequence order:
    a later change of a level overrides an earlier one from its own instant on). The result is
    checked as a whole: a change that would map a classification to a handling caveat, or make a
    table not monotonic at some instant, raises :class:`AgreementError`."""
    by_agreement: dict[str, list[AppliedChange]] = {}
    for entry in applied:
        by_agreement.setdefault(entry.change.agreement, []).append(entry)
    if not by_agreement:
        return catalogue
    agreements = dict(catalogue.agreements)
    for agreement_id, entries in by_agreement.items():
        agreements[agreement_id] = _changed(catalogue.agreement(agreement_id), entries)
    return Catalogue(catalogue.parties, agreements)
