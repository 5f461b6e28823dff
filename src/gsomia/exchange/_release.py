"""Release: decide now and, if allowed, write the sealed envelope and the decision in one
transaction (the transactional outbox). Nothing leaves on a refusal.

An officer releases a selection at once (:meth:`Releases.release_many`): every item is decided
on its own, exactly as :meth:`Releases.release` decides one, but the rows, the consents on file
and the reader's visits are read once for the selection, a standing consent is verified once,
and the allowed releases, their audit records and the refusals' are written in one transaction.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import Any

import orjson

from gsomia._canonical import loads
from gsomia._codec import DecisionTexts, Encoded, canonical, decision_json, label_from_dict
from gsomia.core.access import Person, Role
from gsomia.core.approvals import Approval, TwoPersonPolicy, two_person_policy
from gsomia.core.labels import SecurityLabel
from gsomia.core.policy import Assurance, Check, Consent, ConsentKind, ReleaseDecision, ReleaseRequest
from gsomia.core.tlp import is_tlp_amber_strict, is_tlp_red
from gsomia.crypto.envelope import APPROVAL_TYPE, EnvelopeError, sign_origin, signed_payload, verify_origin
from gsomia.errors import AccessDenied, GsomiaError, InvalidInputError, NotFoundError, ReleaseRefused
from gsomia.exchange._hops import Hops
from gsomia.exchange._messages import item_content
from gsomia.kernel import Item, ReadGate, checks_json
from gsomia.store import (
    RELEASE_POLICY,
    ApprovalStore,
    AuditRow,
    ConsentRow,
    DutiesStore,
    ItemRow,
    OutboxRow,
)

__all__ = ["MAX_RELEASE_ITEMS", "PreparedRelease", "Refusal", "Released", "Releases"]

MAX_RELEASE_ITEMS = 1000  # items in one release request: one transaction, bounded


@dataclass(frozen=True, slots=True)
class Refusal:
    """Something that did not go (an item) or was not accepted (a receipt), and why."""

    subject: str
    reason: str


@dataclass(frozen=True, slots=True)
class Released:
    """What a release of a selection queued (in the order asked) and what it refused, and why."""

    entries: tuple[OutboxRow, ...]
    refused: tuple[Refusal, ...]


def _signed_version(jws: str) -> int:
    """The label version in a signed item this node stored (verified or signed when it was stored).
    Read by orjson (one integer out of the whole signed item: a third of ``json``'s time); what it
    cannot read as ``json`` would (an integer past 64 bits, a NaN) is read by ``json``."""
    content = signed_payload(jws)
    try:
        data = orjson.loads(content)
    except orjson.JSONDecodeError:
        data = None
    # orjson reads an integer past 64 bits as a float: such a version is read again as json reads it
    if not isinstance(data, dict) or type(data.get("label_version")) is float:
        data = json.loads(content)
    version = data.get("label_version", 1) if isinstance(data, dict) else 1
    return version if isinstance(version, int) else 1


@dataclass(frozen=True, slots=True)
class PreparedRelease:
    """A release decided and sealed, not yet written: the outbox row, its audit record, new consents."""

    entry: OutboxRow
    audit: AuditRow
    consents: tuple[ConsentRow, ...]


@dataclass(frozen=True, slots=True)
class Prefetched:
    """Rows and consents on file read once for a batch, and the consents verified so far."""

    rows: dict[str, ItemRow]
    on_file: dict[tuple[str, str], list[ConsentRow]]
    verified: dict[str, Consent]
    # the release engine's decisions of the run, shared by the items whose requests are the same
    # but for the item's id (``ReleaseEngine.decide``'s ``memo``)
    decided: dict[Any, ReleaseDecision] = field(default_factory=dict)
    # the node's two-person policy and the assurances on file, read once for the batch with its rows
    # (issue 18: they were asked for once an item; ``None``: asked for by each request)
    policy: tuple[TwoPersonPolicy | None, tuple[Assurance, ...]] | None = None


class Releases(Hops):
    """Items released to partners through the outbox."""

    _policy_held: tuple[int, TwoPersonPolicy | None] | None = None

    def _row_of(self, item_id: str) -> ItemRow:
        row = self.kernel.store.get_item(item_id)
        if row is None:
            raise NotFoundError(f"no item {item_id!r} at this node")
        return row

    def origin_jws(self, item_id: str, row: ItemRow | None = None) -> str:
        """The originator's signed item: stored at receipt, or signed now for our own item."""
        row = row or self.kernel.items.row(item_id)
        if row.origin_jws is not None:
            stored = self.kernel.cipher.open(row.id, row.label, row.origin_jws).decode()
            if (
                row.originator != self.party
                or row.portions is not None  # the signed root: signed once, at ingest
                # our own item at its first version: signed at ingest at that version, and no
                # version goes down, so no signature stored can be older (issue 18: the version was
                # read out of every item's signed content, at each delivery); a later version may
                # have been bumped without a new signature (a recall's), so it is read
                or row.label_version == 1
                or _signed_version(stored) == row.label_version
            ):
                return stored
        item = self.kernel.items.item(row)
        _require_own(item_id, item.label.originator, self.party)
        payload = self.kernel.cipher.open(row.id, row.label, row.payload)
        return sign_origin(
            self.ring,
            item_content(row.id, item.label, row.payload_type, payload, row.label_version),
            self._now(),
        )

    def item_body(
        self,
        spec: dict[str, Any],
        decision: ReleaseDecision,
        extra_consents: Sequence[str] = (),
        *,
        row: ItemRow | None = None,
        on_file: Sequence[str] | None = None,
    ) -> dict[str, Any]:
        """The item message: the originator's signed item, the route and the consents that justify it."""
        item_id = spec["item"]
        row = row or self.kernel.items.row(item_id)
        consents = (
            list(on_file)
            if on_file is not None
            else [c.jws for c in self.fed.consents_for(row.originator, row.name)]
        )
        body = {
            "kind": "item",
            "origin": self.origin_jws(item_id, row),
            "purpose": spec["purpose"],
            "agreement": decision.agreement,
            "route": {"sender": spec["sender"], "via": spec["via"], "recipient": spec["recipient"]},
            "consents": consents + [c for c in extra_consents if c not in consents],
        }
        if row.portions is not None:  # only the portions released, each with its inclusion proof
            wanted = set(spec.get("portions") or ())
            _, held = self.kernel.items.signed(row)
            body["portions"] = [p.wire() for p in held if p.id in wanted]
            if len(body["portions"]) != len(wanted) or not wanted:
                raise InvalidInputError(f"item {item_id}: a portion released is no longer held here")
        return body

    def _released_label(self, row: ItemRow, spec: Mapping[str, Any]) -> SecurityLabel:
        """The label a release goes under: the item's, or for an item in portions the highest of the
        portions it sends (``spec["portions"]``, each still held here)."""
        if not row.portions:  # the item's own label, as ``Items.item`` gives it, without the whole item
            return self.kernel.items.stored_label(row.label)
        item = self.kernel.items.item(row)
        if not item.portions:
            return item.label
        wanted = set(spec.get("portions") or ())
        chosen = [m for m in item.portions if m.id in wanted]
        if not chosen or len(chosen) != len(wanted):
            raise InvalidInputError(f"item {row.id}: a portion released is no longer held here")
        return self.kernel.items.shown(item, chosen).label

    def _request(self, spec: dict[str, Any], prefetched: Prefetched | None = None) -> ReleaseRequest:
        """Rebuild a release request from what the outbox stored, with the consents on file now
        (read for the whole batch at once when ``prefetched`` holds them)."""
        row = prefetched.rows.get(spec["item"]) if prefetched is not None else None
        if row is None:
            row = self.kernel.items.row(spec["item"])
        if row.state != "held":  # destroyed or recalled after it was queued: it does not go
            raise InvalidInputError(f"item {row.id} was {row.state} after it was queued")
        label = self._released_label(row, spec)
        # the originator's consents name its item as it named it (issue 22 §4: ``row.name``)
        if prefetched is not None and (label.originator, row.name) in prefetched.on_file:
            on_file = prefetched.on_file[(label.originator, row.name)]
            consents = self.verified_consents(on_file, prefetched.verified)
        else:
            consents = self.consents_for(label.originator, row.name)
        approval = spec.get("approval")
        policy = prefetched.policy if prefetched is not None else None
        two_person, assurances = policy if policy is not None else self.policy_now()
        return ReleaseRequest(
            label,
            spec["sender"],
            spec["recipient"],
            spec["purpose"],
            tuple(spec["via"]),
            row.name,
            consents,
            two_person=two_person,
            approval=self.approval_of(approval) if isinstance(approval, str) else None,
            grants_relay=bool(spec.get("grants_relay")),
            assurances=assurances,
            portions=tuple(spec.get("portions") or ()) if row.portions is not None else (),
        )

    def prefetch(self, item_ids: Sequence[str], run: Prefetched | None = None) -> Prefetched:
        """The rows and consents on file of many items, read at once (a delivery batch's); with
        ``run``, sharing its consents verified and decisions taken (a delivery run's batches)."""
        rows = self.kernel.store.get_items(item_ids)
        on_file = self.fed.consents_for_many([(r.originator, r.name) for r in rows.values()])
        if run is None:
            return Prefetched(rows, on_file, {}, policy=self.policy_now())
        return Prefetched(rows, on_file, run.verified, run.decided, self.policy_now())

    def policy_now(self) -> tuple[TwoPersonPolicy | None, tuple[Assurance, ...]]:
        """The two-person policy and the assurances on file now (each read again from the store when
        any process changed it): what a release request carries, read once for a batch."""
        return self.two_person(), self.assurances_on_file()

    # --- the two-person policy and approvals (gsomia.exchange._approvals asks for them) ---

    @property
    def approvals(self) -> ApprovalStore:
        return ApprovalStore(self.kernel.store)

    # --- the policy: data in the store, read again in every process when its generation moves ---

    def two_person(self) -> TwoPersonPolicy | None:
        generation = self.kernel.watch.generation(RELEASE_POLICY)
        held = self._policy_held
        if held is not None and held[0] == generation:
            return held[1]
        document = self.approvals.policy()
        policy = None if document is None else self._parse_policy(json.loads(document))
        self._policy_held = (generation, policy)
        return policy

    def _parse_policy(self, data: Mapping[str, Any]) -> TwoPersonPolicy:
        return two_person_policy(
            self.kernel.catalogue,
            above=data.get("above") or {},
            hub_relay=bool(data.get("hub_relay")),
            relay_authorisations=bool(data.get("relay_authorisations")),
            validity=timedelta(seconds=int(data.get("validity_seconds", 86400))),
        )

    def approval_of(self, request_id: str) -> Approval | None:
        """The approval a queued release carries, checked against its signature (``None``: none)."""
        row = self.approvals.get(request_id)
        if row is None or row.state != "approved" or row.approval is None or row.decided_by is None:
            return None
        try:
            _, content = verify_origin(
                row.approval, lambda _party: None, self._now(), self.ring, typ=APPROVAL_TYPE
            )
            data = json.loads(content)
            spec = json.loads(row.spec)
            catalogue = self.kernel.catalogue
            portions = tuple(
                (str(p["id"]), label_from_dict(p["label"], catalogue)) for p in spec.get("portions") or ()
            )
            approval = Approval(
                row.id,
                row.requester,
                row.decided_by,
                row.item_id,
                label_from_dict(json.loads(row.label), self.kernel.catalogue),
                spec["sender"],
                tuple(spec["via"]),
                spec["recipient"],
                spec["purpose"],
                datetime.fromisoformat(data["approved_at"]),
                datetime.fromisoformat(data["expires_at"]),
                portions,
            )
        except (EnvelopeError, GsomiaError, ValueError, KeyError, TypeError):
            return None  # fails closed: the release is decided without an approval
        return approval if canonical(approval.content()) == content.decode() else None

    def release(
        self,
        actor: Person,
        item_id: str,
        recipient: str,
        *,
        via: str | None = None,
        purpose: str | None = None,
        authorise_relay: bool = False,
    ) -> OutboxRow:
        """Decide now; if allowed, queue the sealed envelope and the decision in one transaction."""
        who = actor.id
        try:
            self.kernel.require_any(actor, (Role.RELEASE_OFFICER,), "item.release")
            row, _, _ = self.kernel.readable(actor, item_id, "item.release")
            prepared = self.prepare_release(
                actor,
                row,
                recipient,
                via=via,
                purpose=purpose,
                authorise_relay=authorise_relay,
                now=self._now(),
            )
            self.fed.enqueue([prepared.entry], [prepared.audit], consents=prepared.consents)
        except GsomiaError as exc:
            raise self.kernel.refuse("item.release", who, item_id, exc) from None
        return prepared.entry

    def relay_authorisation(
        self,
        actor: Person,
        label: SecurityLabel,
        item_id: str,
        recipient: str,
        hub: str | None,
        now: datetime,
        *,
        purpose: str | None = None,
    ) -> Consent:
        """The originator's authorisation for ``hub`` to pass this one item on to ``recipient``, for
        ``purpose`` (issue 14 §3: it authorises that and nothing else)."""
        if hub is None or label.originator != self.party:
            raise InvalidInputError("only the originator authorises a hub relay, and only with --via")
        return Consent(
            ConsentKind.HUB_RELAY,
            self.party,
            recipient,
            now,
            f"relay authorised by {actor.id}",
            item=item_id,
            hub=hub,
            purpose=purpose,
        )

    def release_many(
        self,
        actor: Person,
        item_ids: Sequence[str],
        recipient: str,
        *,
        via: str | None = None,
        purpose: str | None = None,
        authorise_relay: bool = False,
    ) -> Released:
        """Release a selection: each item decided now as :meth:`release` decides it; the allowed
        ones queued, and every item's audit record written, in one transaction.

        The request as a whole is refused (raised, and audited once) for a caller without the
        role, an empty, oversized or repeating selection, or an unknown recipient or hub; an
        item that may not go is refused on its own (in :attr:`Released.refused`, audited)."""
        who = actor.id
        ids = list(item_ids)
        try:
            self.kernel.require_any(actor, (Role.RELEASE_OFFICER,), "item.release")
            if not ids:
                raise InvalidInputError("name at least one item to release")
            if len(ids) > MAX_RELEASE_ITEMS:
                raise InvalidInputError(
                    f"at most {MAX_RELEASE_ITEMS} items in one release, not {len(ids)}: split the selection"
                )
            seen: set[str] = set()
            for item_id in ids:
                if item_id in seen:
                    raise InvalidInputError(f"item {item_id!r} is named twice in one release")
                seen.add(item_id)
            self.kernel.catalogue.party(recipient)
            if via:
                self.kernel.catalogue.party(via)
        except GsomiaError as exc:
            raise self.kernel.refuse("item.release", who, None, exc) from None
        now = self._now()
        rows = self.kernel.store.get_items(ids)
        on_file = self.fed.consents_for_many([(r.originator, r.name) for r in rows.values()])
        # the selection's reads at its one instant, each label's read decision taken once for the items
        # whose labels read alike (as a page's are: ``ReadGate.at_one_instant``)
        gate = self.kernel.reader(actor).at_one_instant()
        policy = self.policy_now()  # the selection's one instant: its policy and assurances read once
        verified: dict[str, Consent] = {}
        decided: dict[Any, ReleaseDecision] = {}  # one decision for the items whose requests match
        texts = DecisionTexts()  # and its JSON written once, for their outbox rows and audit records
        entries: list[OutboxRow] = []
        audit: list[AuditRow] = []
        consents: list[ConsentRow] = []
        refused: list[Refusal] = []
        for item_id in ids:
            row = rows.get(item_id)
            try:
                if row is None:
                    raise NotFoundError(f"no item {item_id!r} at this node")
                prepared = self.prepare_release(
                    actor,
                    row,
                    recipient,
                    via=via,
                    purpose=purpose,
                    authorise_relay=authorise_relay,
                    now=now,
                    gate=gate,
                    on_file=on_file[(row.originator, row.name)],
                    verified=verified,
                    seal_now=False,
                    decided=decided,
                    texts=texts,
                    policy=policy,
                )
            except GsomiaError as exc:
                refused.append(Refusal(item_id, str(exc)))
                detail: dict[str, Any] = {"error": type(exc).__name__, "reason": str(exc)}
                if isinstance(exc, AccessDenied):
                    detail["checks"] = checks_json(exc.decision.checks)
                audit.append(self.kernel.audit_row("item.release", who, item_id, "refused", **detail))
                continue
            entries.append(prepared.entry)
            audit.append(prepared.audit)
            consents += prepared.consents
        self.fed.enqueue(entries, audit, consents=consents)
        return Released(tuple(entries), tuple(refused))

    def _portions_released(
        self, row: ItemRow, item: Item, request: ReleaseRequest, spec: dict[str, Any], now: datetime
    ) -> tuple[ReleaseRequest, tuple[Check, ...]]:
        """An item in portions: each portion the officer may read decided on its own label by the
        release engine (TLP:RED stays here); the release goes with those allowed, under the highest
        of their labels, and says per portion what went and why the others did not. A portion the
        officer may not read is not named. Refused (with every portion's reasons) when none may go."""
        _, held = self.kernel.items.signed(row)
        payloads = {p.id: p for p in held}
        chosen = []
        explained: list[Check] = []
        for mark in item.portions:
            portion = payloads[mark.id]
            if portion.payload_type == "json" and is_tlp_red(json.loads(portion.payload)):
                explained.append(
                    Check("portion", False, f"{mark.id}: marked TLP:RED, it never leaves this node")
                )
                continue
            decision = self.kernel.engine.decide(replace(request, label=mark.label, portion=mark.id), at=now)
            if decision.allowed:
                chosen.append(mark)
                explained.append(Check("portion", True, f"{mark.id}: released ({mark.label.classification})"))
            else:
                reasons = "; ".join(f"{c.rule}: {c.reason}" for c in decision.failed())
                explained.append(Check("portion", False, f"{mark.id}: withheld ({reasons})"))
        if not chosen:
            refused = ReleaseDecision(
                False, now, (request.sender, *request.via, request.recipient), None, tuple(explained), None
            )
            raise ReleaseRefused(refused)
        spec["portions"] = [m.id for m in chosen]
        label = self.kernel.items.shown(item, chosen).label
        return replace(request, label=label, portions=tuple(spec["portions"])), tuple(explained)

    def prepare_release(
        self,
        actor: Person,
        row: ItemRow,
        recipient: str,
        *,
        via: str | None,
        purpose: str | None,
        authorise_relay: bool,
        now: datetime,
        ttl: timedelta | None = None,
        state: str = "pending",
        detail: Mapping[str, Any] | None = None,
        approval: Approval | None = None,
        gate: ReadGate | None = None,
        on_file: Sequence[ConsentRow] | None = None,
        verified: dict[str, Consent] | None = None,
        seal_now: bool = True,
        decided: dict[Any, ReleaseDecision] | None = None,
        texts: DecisionTexts | None = None,
        policy: tuple[TwoPersonPolicy | None, tuple[Assurance, ...]] | None = None,
    ) -> PreparedRelease:
        """One release decided at ``now`` and sealed, not yet written: raises on a refusal.

        :meth:`release` writes it to the outbox; a transfer by file (``gsomia.exchange._transfer``)
        writes many at once with ``state`` ``exported`` so the network sender leaves them alone.
        A caller deciding many (:meth:`release_many`) passes what it read once for all of them:
        the reader's ``gate``, the consents ``on_file`` for this item, the consents ``verified``,
        and ``seal_now=False``: no envelope now, delivery seals what it sends (:meth:`queue`); its
        ``decided`` memo and ``texts``, the decisions it shares and their JSON, written once each;
        and the ``policy`` (:meth:`policy_now`) it read once for them.
        """
        item_id = row.id
        item = self.kernel.items.item(row)
        if row.state != "held":
            raise InvalidInputError(f"item {item_id} was {row.state}: it cannot be released")
        if row.originator == self.party and row.label_version > 1:
            latest = DutiesStore(self.kernel.store).label_changes(item_id)[-1:]
            if latest and latest[0].kind == "recall":  # withdrawn from every holder: none gets it anew
                portion = _recalled_portion(latest[0].jws)
                what = f"item {item_id}" if portion is None else f"portion {portion} of item {item_id}"
                raise InvalidInputError(
                    f"{what} was recalled (label version {latest[0].version}): "
                    "reclassify it before releasing it again"
                )
        seen = gate.view(item) if gate is not None else self.kernel.view(actor, item)
        if seen.item is None:
            raise AccessDenied(seen.decision)
        access = seen.decision
        label = seen.item.label  # of an item in portions: the portions this officer may read
        if row.payload_type == "json":
            # parsed as ``json.loads`` parses it, by orjson where the two agree (a fifth of the time)
            content = loads(self.kernel.cipher.open(row.id, row.label, row.payload))
            if is_tlp_red(content):
                raise InvalidInputError(f"item {item_id} is marked TLP:RED: it never leaves this node")
            if is_tlp_amber_strict(content) and label.originator != self.party:
                raise InvalidInputError(
                    f"item {item_id} is marked TLP:AMBER+STRICT: only its originator "
                    f"{label.originator} releases it (no onward release)"
                )
        recipient = self.kernel.catalogue.party(recipient).code
        hub = self.kernel.catalogue.party(via).code if via else None
        new_consents: list[ConsentRow] = []
        fresh: tuple[Consent, ...] = ()
        if authorise_relay:
            authorisation = self.relay_authorisation(
                actor, label, item_id, recipient, hub, now, purpose=purpose or label.purpose
            )
            consent_row, _ = self.sign_consent(authorisation)
            new_consents.append(consent_row)
            fresh = (authorisation,)
        use = purpose or label.purpose
        hops = [hub] if hub else []
        spec: dict[str, Any] = {
            "item": item_id,
            "sender": self.party,
            "recipient": recipient,
            "via": hops,
            "purpose": use,
        }
        if approval is not None:
            spec["approval"] = approval.request
        if authorise_relay:
            spec["grants_relay"] = True
        if on_file is None:
            on_file = self.fed.consents_for(label.originator, row.name)
        two_person, assurances = policy if policy is not None else self.policy_now()
        request = ReleaseRequest(
            label,
            self.party,
            recipient,
            use,
            tuple(hops),
            row.name,
            self.verified_consents(on_file, verified) + fresh,
            two_person=two_person,
            approval=approval,
            grants_relay=authorise_relay,
            assurances=assurances,
        )
        explained: tuple[Check, ...] = ()
        if seen.item.portions:
            request, explained = self._portions_released(row, seen.item, request, spec, now)
        decision = self.kernel.engine.authorise(request, at=now, memo=decided)
        if explained:
            decision = replace(decision, checks=(*decision.checks, *explained))
        peer = self._link(hub or recipient, decision)
        if seal_now or row.portions is not None:
            body = self.item_body(
                spec, decision, [c.jws for c in new_consents], row=row, on_file=[c.jws for c in on_file]
            )
        else:
            # queued unsealed (a selection): delivery builds the message under the decision it takes
            # at the instant of sending; one built here would be thrown away unread (issue 18). An
            # item it could not be built for is refused now, as building it would have refused it:
            # a partner's item held without its originator's signature
            if row.origin_jws is None:
                _require_own(item_id, label.originator, self.party)
            body = {}
        entry = self.queue(
            peer,
            body,
            "item",
            item_id,
            now,
            final_recipient=recipient,
            spec=spec,
            decision=decision,
            ttl=ttl,
            state=state,
            seal_now=seal_now,
            texts=texts,
        )
        audit = self.kernel.audit_row(
            "item.release",
            actor.id,
            item_id,
            "allowed",
            msg_id=entry.msg_id,
            decision=decision_json(decision) if texts is None else Encoded(texts.text(decision)),
            access=[{"rule": c.rule, "passed": c.passed, "reason": c.reason} for c in access.checks]
            if texts is None
            else Encoded(texts.checks_text(access)),
            **(detail or {}),
        )
        return PreparedRelease(entry, audit, tuple(new_consents))


def _recalled_portion(jws: str) -> str | None:
    """The portion a recall this node signed names (``None``: the whole item was recalled)."""
    content = json.loads(signed_payload(jws))
    portion = content.get("portion") if isinstance(content, dict) else None
    return portion if isinstance(portion, str) else None


def _require_own(item_id: str, originator: str, party: str) -> None:
    """An item without its originator's signature goes only from its originator (who signs it)."""
    if originator != party:
        raise InvalidInputError(f"item {item_id} carries no signature of its originator {originator}")
