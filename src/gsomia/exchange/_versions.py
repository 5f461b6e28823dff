"""The envelope versions this node opens from each partner: no going back to the JOSE hop.

The exchange moved its hop from JOSE (``gsomia-envelope/1``) to COSE (``/2``, then ``/3``); the inbox
still opens the older formats for envelopes sealed before an upgrade. Left at that, anyone holding
(or forging) an old-format envelope could make this node run the older path for ever. So the store
keeps, per partner, the lowest version this node opens from it (``envelope_versions``):

- the first time an envelope of a partner's in COSE opens here, bringing a message not held already
  and issued more than the allowed clock skew after any administrator's setting of that partner (so
  it cannot be one this node opened before the setting: a replay from before a lowering undoes
  nothing, even one whose messages were refused and left no inbox row, or one from a partner's clock
  running ahead), that partner's lowest becomes 2 (``sent``): from then on a JOSE envelope naming
  that partner is refused as ``downgrade``, before any key is used or any more of it read. Raised,
  never lowered by what arrives; an upgraded node seals anything older again before it goes
  (:meth:`Deliveries`), so no genuine envelope is lost.
- an administrator sets a partner's lowest (``set``, at once: 3 refuses ``/2`` as well, or 1 lets
  a partner that went back to an older release be heard again), or every partner's (``*``) from an
  instant: the cut-off after which JOSE is refused from everyone (``retired-version``). Once any
  process of the node has received an envelope at or after that instant, the cut-off is marked
  reached in the store, and a clock set back afterwards does not undo it.

A partner's effective lowest is the higher of its own row and the ``*`` row in force
(:func:`effective_lowest`, asking :func:`version_refusal`, the inbox's check). The check that
refuses reads the store (only an envelope older than ``/3`` asks it: the rare path), so every process
of the node refuses the same envelope the moment the row is committed; the raise on the hot path
asks this process's copy, read again when the ``envelopes`` generation moves. Refusals go through the
inbox's bounded audit of envelopes that did not open (:meth:`NodeContext.tally_refusal`).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from datetime import datetime

from gsomia.core.access import Person, Role
from gsomia.core.instants import epoch_us
from gsomia.crypto.envelope import ENVELOPE_VERSION, FORMAT_VERSIONS, EnvelopeError, Opened
from gsomia.errors import GsomiaError, InvalidInputError, NotFoundError
from gsomia.exchange._equivalences import Equivalences
from gsomia.kernel import from_us
from gsomia.store import ENVELOPES, EVERY_PARTNER, EnvelopeVersionRow, EnvelopeVersionStore

__all__ = ["COSE_VERSION", "DOWNGRADE", "RETIRED", "EnvelopeVersions", "effective_lowest", "version_refusal"]

COSE_VERSION = FORMAT_VERSIONS["gsomia-envelope/2"]  # a partner that sealed COSE once seals it from then on
DOWNGRADE = "downgrade"  # the refusal of an older format from a partner that sent COSE
RETIRED = "retired-version"  # the refusal of a format an administrator retired
_KIND = "envelope.versions"  # the audit kind of every change of the rows
_SETTERS = (Role.ADMINISTRATOR, Role.SECURITY_OFFICER)
_NAMES = {version: name for name, version in FORMAT_VERSIONS.items()}


def _in_force(row: EnvelopeVersionRow | None, at_us: int) -> bool:
    return row is not None and (not row.pending or row.since_us <= at_us)


def version_refusal(
    rows: Mapping[str, EnvelopeVersionRow], sender: str, version: int, at_us: int
) -> tuple[str, str] | None:
    """Why an envelope of format ``version`` naming ``sender`` is not opened at ``at_us``, as (code,
    note for the audit log), by the rows on file; ``None``: it is. The sender's own row first (a
    ``downgrade`` if it was raised by what the sender sent), then every partner's."""
    for row in (rows.get(sender), rows.get(EVERY_PARTNER)):
        if row is not None and _in_force(row, at_us) and version < row.lowest:
            name = _NAMES.get(version, f"version {version}")
            since = from_us(row.since_us).isoformat()
            if row.cause == "sent" and row.party == sender:
                return DOWNGRADE, (
                    f"{name} from {sender}, which has sealed COSE to this node since {since} "
                    f"(message {row.by}): a downgrade, refused unopened"
                )
            who = "every partner" if row.party == EVERY_PARTNER else row.party
            return RETIRED, (
                f"{name} refused unopened: envelope versions below {row.lowest} are not opened from "
                f"{who} since {since} (set by {row.by})"
            )
    return None


def effective_lowest(rows: Mapping[str, EnvelopeVersionRow], sender: str, at_us: int) -> int:
    """The lowest envelope version opened from ``sender`` at ``at_us``: the first that
    :func:`version_refusal` (the inbox's own check) does not refuse; the higher of the sender's row
    and every partner's row in force."""
    return next(
        (v for v in range(1, ENVELOPE_VERSION + 1) if version_refusal(rows, sender, v, at_us) is None),
        ENVELOPE_VERSION + 1,
    )


class EnvelopeVersions(Equivalences):
    """Which envelope versions are opened from whom: checked by the inbox, raised by what arrives,
    set by an administrator."""

    _versions_held: tuple[int, dict[str, EnvelopeVersionRow]] | None = None

    @property
    def versions(self) -> EnvelopeVersionStore:
        return EnvelopeVersionStore(self.kernel.store)

    def envelope_versions(self) -> dict[str, EnvelopeVersionRow]:
        """The rows on file, as the store holds them now (the operator's view)."""
        return self.versions.rows()

    def envelope_floors(self, rows: Mapping[str, EnvelopeVersionRow]) -> dict[str, int]:
        """Per row of ``rows`` (:meth:`envelope_versions`), the lowest version in fact opened now from
        that party (``*``: from a partner with no row of its own): :func:`effective_lowest`, the
        inbox's decision."""
        at_us = epoch_us(self._now())
        return {party: effective_lowest(rows, party, at_us) for party in rows}

    def _held_versions(self) -> dict[str, EnvelopeVersionRow]:
        """This process's copy of the rows, read again whenever the ``envelopes`` generation moved."""
        generation = self.kernel.watch.generation(ENVELOPES)
        held = self._versions_held
        if held is None or held[0] != generation:
            held = self._versions_held = (generation, self.versions.rows())
        return held[1]

    def _accepts(self, now: datetime) -> Callable[[int, str], None]:
        """The check ``open_envelope`` asks of an envelope older than the format sealed now: refused
        (``EnvelopeError``, the note saying why) if that version is no longer opened from the sender
        it names. Each sender's rows read from the store once per receive, as it holds them now."""
        at_us = epoch_us(now)
        read: dict[str, dict[str, EnvelopeVersionRow]] = {}

        def accepts(version: int, sender: str) -> None:
            rows = read.get(sender)
            if rows is None:
                rows = read[sender] = self.versions.rows((sender, EVERY_PARTNER))
            refusal = version_refusal(rows, sender, version, at_us)
            if refusal is not None:
                raise EnvelopeError(*refusal)

        return accepts

    def _note_versions(
        self, opened: Sequence[Opened | EnvelopeError], taken: Sequence[bool], now: datetime
    ) -> None:
        """After a receive's envelopes were opened: each sender whose COSE envelope opened and was
        newly taken (``taken``, one per envelope: not a duplicate of a message already held) has its
        lowest raised to COSE (once: this process's copy says whether it is already), unless an
        administrator set that sender's lowest at or after the envelope was issued less the allowed
        skew (an envelope this node could have opened before the setting: its ``issued_at`` is at most
        the skew ahead of the clock that opened it; a replay of one undoes nothing, whether its
        messages were taken, and so held, or refused, and so not; the store checks it again as it
        writes), and an administrator's cut-off this node's clock has reached is marked reached for
        good. A batch envelope is one act of its sender's key: it raises if any message it brings is
        not held. Raised in the receive's first pass, before its commit: the one-by-one path after a
        concurrent delivery has nothing left to raise."""
        rows = self._held_versions()
        at_us = epoch_us(now)
        skew_us = int(self.skew.total_seconds() * 1_000_000)
        moved = False
        if any(row.pending and row.since_us <= at_us for row in rows.values()):
            audit = self.kernel.audit_row(_KIND, None, EVERY_PARTNER, "allowed", reached=now.isoformat())
            moved = self.versions.reach(at_us, [audit]) > 0
        raised: set[str] = set()
        for o, new in zip(opened, taken, strict=True):
            if not new or type(o) is not Opened or o.version < COSE_VERSION or o.sender in raised:
                continue
            own = rows.get(o.sender)
            # the latest instant the envelope was surely sealed after, whatever the sender's clock said
            sealed_after_us = epoch_us(o.issued_at) - skew_us
            if own is not None and (
                own.lowest >= COSE_VERSION or (own.cause == "set" and sealed_after_us <= own.since_us)
            ):
                continue
            raised.add(o.sender)
            audit = self.kernel.audit_row(
                _KIND, o.sender, o.sender, "allowed", lowest=COSE_VERSION, cause="sent", msg_id=o.msg_id,
                format=_NAMES.get(o.version), issued=o.issued_at.isoformat(),
            )  # fmt: skip
            self.versions.raise_lowest(o.sender, COSE_VERSION, at_us, o.msg_id, [audit], sealed_after_us)
            moved = True  # raised here, or by another process first: this copy is stale either way
        if moved:
            self.kernel.watch.stale()

    def set_envelope_versions(
        self, actor: Person | None, party: str, lowest: int, since: datetime | None = None
    ) -> EnvelopeVersionRow:
        """Set the lowest envelope version opened from ``party`` (``*``: every partner) to ``lowest``
        (1 JOSE, 2 COSE in base64url, 3 the format sealed now), at once; for every partner possibly
        from an instant ``since`` (a cut-off; a partner's own row takes none). Administrators and
        security officers (``None``: the node's operator); audited (``envelope.versions``, with the
        row it replaced)."""
        who = actor.id if actor else "operator"
        try:
            self.kernel.require_any(actor, _SETTERS, _KIND)
            if party != EVERY_PARTNER and self.peer(party) is None:
                raise NotFoundError(f"{party} is not a registered peer (or '*': every partner)")
            if not 1 <= lowest <= ENVELOPE_VERSION:
                raise InvalidInputError(
                    f"the lowest envelope version must be 1 to {ENVELOPE_VERSION}, not {lowest}"
                )
            now = self._now()
            if since is not None and party != EVERY_PARTNER:
                # an earlier instant too: the row would claim a since it never had
                raise InvalidInputError(
                    "an instant is only for every partner's cut-off; a partner's lowest is set at once"
                )
            rows = self.versions.rows()
            found = rows.get(party)
            start = now if since is None else since
            if since is None:
                # a setting at once holds from the latest instant the rows were changed at, where this
                # node's clock reads earlier (set back): a replay of an envelope sealed before that
                # change is measured against it, not against the clock set back
                latest = max(
                    (r.updated_us if r.pending else max(r.updated_us, r.since_us) for r in rows.values()),
                    default=0,
                )
                start = max(now, from_us(latest))
            pending = since is not None and since > now  # a cut-off to come; a setting at once holds now
            row = EnvelopeVersionRow(party, lowest, epoch_us(start), pending, "set", who, epoch_us(now))
            audit = self.kernel.audit_row(
                _KIND, who, party, "allowed", lowest=lowest, since=start.isoformat(), cause="set",
                previous=None if found is None else found.lowest,
            )  # fmt: skip
            self.versions.put(row, [audit])
        except GsomiaError as exc:
            raise self.kernel.refuse(_KIND, who, party, exc) from None
        self.kernel.watch.stale()
        return row
