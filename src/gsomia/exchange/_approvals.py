"""Two-person release: a release the node's policy reserves for two officers is requested by one
and approved by another; only the approval queues it.

The request is checked as a release would be (every rule but ``two_person`` must pass), so an
officer is not asked to approve what the agreements refuse anyway. The approval is bound to the
item's label as it was requested, the route and the purpose; it is signed (a JWS of its own type)
and kept with the request; the release engine checks it when the release is queued and again
whenever the outbox decides it anew before sending. States change by compare-and-set, so two
approvers racing queue one release; an approval's outbox entry, consents and audit record are
written in the transaction that marks the request approved.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Mapping
from dataclasses import replace
from datetime import datetime, timedelta
from typing import Any

from gsomia._codec import canonical, label_from_dict, label_to_dict
from gsomia.core.access import Person, Role
from gsomia.core.approvals import Approval, TwoPersonPolicy, two_person_policy
from gsomia.core.instants import epoch_us
from gsomia.core.labels import SecurityLabel
from gsomia.core.policy import ReleaseRequest
from gsomia.core.tlp import is_tlp_red
from gsomia.crypto.envelope import APPROVAL_TYPE, sign_origin
from gsomia.errors import ConflictError, GsomiaError, InvalidInputError, NotFoundError
from gsomia.exchange._release import Releases
from gsomia.kernel import Item, PortionMark, from_us
from gsomia.store import ItemRow, OutboxRow, ReleaseRequestRow

__all__ = ["Approvals"]

_OFFICERS = (Role.RELEASE_OFFICER,)
_POLICY_SETTERS = (Role.SECURITY_OFFICER, Role.ADMINISTRATOR)
MAX_NOTE = 2000  # characters of a refusal's or withdrawal's reason


class Approvals(Releases):
    """Release requests, their approval by a second officer, and the node's two-person policy."""

    def two_person_view(self, actor: Person) -> dict[str, Any]:
        """The node's two-person policy as data (officers, security officers, administrators)."""
        self.kernel.require_any(actor, _OFFICERS + _POLICY_SETTERS, "release.policy.read")
        policy = self.two_person()
        return (policy or TwoPersonPolicy()).as_data()

    def set_two_person(
        self,
        actor: Person,
        *,
        above: Mapping[str, str],
        hub_relay: bool,
        relay_authorisations: bool,
        validity: timedelta,
    ) -> TwoPersonPolicy:
        """Replace the node's two-person policy (security officers, administrators); audited."""
        try:
            self.kernel.require_any(actor, _POLICY_SETTERS, "release.policy")
            policy = two_person_policy(
                self.kernel.catalogue,
                above=above,
                hub_relay=hub_relay,
                relay_authorisations=relay_authorisations,
                validity=validity,
            )
        except GsomiaError as exc:
            raise self.kernel.refuse("release.policy", actor.id, None, exc) from None
        data = policy.as_data()
        audit = self.kernel.audit_row("release.policy", actor.id, None, "allowed", policy=data)
        self.approvals.set_policy(canonical(data), actor.id, epoch_us(self._now()), [audit])
        self.kernel.watch.stale()
        return policy

    # --- requests ---

    def request_release(
        self,
        actor: Person,
        item_id: str,
        recipient: str,
        *,
        via: str | None = None,
        purpose: str | None = None,
        authorise_relay: bool = False,
    ) -> ReleaseRequestRow:
        """Ask a second officer to approve a release; nothing is queued for sending yet."""
        try:
            self.kernel.require_any(actor, _OFFICERS, "release.request")
            row, item, _ = self.kernel.readable(actor, item_id, "release.request")  # unreadable: unknown
            label = item.label
            now = self._now()
            policy = self.two_person()
            recipient = self.kernel.catalogue.party(recipient).code
            hops = (self.kernel.catalogue.party(via).code,) if via else ()
            use = purpose or label.purpose
            portions: list[PortionMark] = []
            if item.portions and policy is not None:
                # the portions that would go but for the second officer: the approval releases those
                probe = ReleaseRequest(
                    label,
                    self.party,
                    recipient,
                    use,
                    hops,
                    item_id,
                    two_person=policy,
                    grants_relay=authorise_relay,
                    assurances=self.assurances_on_file(),
                )
                portions = self._approvable_portions(row, item, probe, now)
                label = self.kernel.items.shown(item, portions).label
            needs = () if policy is None else policy.needs(label, via=hops, grants_relay=authorise_relay)
            if policy is None or not needs:
                raise InvalidInputError(
                    "this release needs no second officer under this node's policy: release it directly"
                )
            hub = hops[0] if hops else None
            fresh = (
                (self.relay_authorisation(actor, label, item_id, recipient, hub, now, purpose=use),)
                if authorise_relay
                else ()
            )
            request = ReleaseRequest(
                label,
                self.party,
                recipient,
                use,
                hops,
                item_id,
                self.verified_consents(self.fed.consents_for(label.originator, item_id)) + fresh,
                two_person=policy,
                grants_relay=authorise_relay,
                assurances=self.assurances_on_file(),
                portions=tuple(m.id for m in portions),
            )
            decision = self.kernel.engine.decide(request, at=now)
            other = [c for c in decision.failed() if c.rule != "two_person"]
            if other:
                raise InvalidInputError(
                    "the release would be refused anyway: "
                    + "; ".join(f"{c.rule}: {c.reason}" for c in other)
                )
        except GsomiaError as exc:
            raise self.kernel.refuse("release.request", actor.id, item_id, exc) from None
        spec = {
            "sender": self.party,
            "via": list(hops),
            "recipient": recipient,
            "purpose": use,
            "authorise_relay": authorise_relay,
        }
        if portions:  # the approval releases these portions, each under the label it had when asked
            spec["portions"] = [{"id": m.id, "label": label_to_dict(m.label)} for m in portions]
        entry = ReleaseRequestRow(
            id=uuid.uuid4().hex,
            item_id=item_id,
            label=canonical(label_to_dict(label)),
            spec=canonical(spec),
            requester=actor.id,
            state="requested",
            reason="; ".join(needs),
            requested_us=epoch_us(now),
            expires_us=epoch_us(now + policy.validity),
        )
        audit = self.kernel.audit_row(
            "release.requested", actor.id, item_id, "allowed", request=entry.id, route=spec, needs=list(needs)
        )
        self.approvals.add(entry, [audit])
        return entry

    def may_approve(self, actor: Person) -> bool:
        """Whether ``actor`` sees and answers the two-person queue: nothing is recorded."""
        return self.kernel.holds_any(actor, _OFFICERS)

    def release_requests(self, actor: Person, *, state: str | None = None) -> list[ReleaseRequestRow]:
        """The officers' queue: requests this officer may read the items of (newest last)."""
        self.kernel.require_any(actor, _OFFICERS, "release.queue")
        out = []
        for row in self.approvals.requests(state=state):
            label = label_from_dict(json.loads(row.label), self.kernel.catalogue)
            if self.kernel.decide_read(actor, label, row.item_id).allowed:
                out.append(row)
        return out

    def release_request(self, actor: Person, request_id: str) -> ReleaseRequestRow:
        """One request, to an officer who may read its item; otherwise as if it did not exist."""
        self.kernel.require_any(actor, _OFFICERS, "release.queue")
        row = self.approvals.get(request_id)
        if row is not None:
            label = label_from_dict(json.loads(row.label), self.kernel.catalogue)
            if self.kernel.decide_read(actor, label, row.item_id).allowed:
                return row
        raise NotFoundError(f"no release request {request_id!r} at this node")

    def open_request(self, actor: Person, item_id: str) -> str:
        """The id of the one open (``requested``) request for ``item_id`` that ``actor`` may see."""
        found = [r.id for r in self.release_requests(actor, state="requested") if r.item_id == item_id]
        if not found:
            raise NotFoundError(f"no open release request for item {item_id!r}")
        if len(found) > 1:
            raise InvalidInputError(
                f"item {item_id} has {len(found)} open release requests: name one ({', '.join(found)})"
            )
        return found[0]

    def approve_release(self, actor: Person, request_id: str) -> tuple[ReleaseRequestRow, OutboxRow]:
        """A second officer approves: the approval is signed and the release queued, in one step."""
        try:
            self.kernel.require_any(actor, _OFFICERS, "release.approve")
            request = self.release_request(actor, request_id)
            now = self._now()
            self._answerable(request, now)
            if actor.id == request.requester:
                raise InvalidInputError(
                    f"{actor.id} requested this release: a second release officer must approve it"
                )
            row = self.kernel.items.row(request.item_id)
            spec = json.loads(request.spec)
            item = self.kernel.items.item(row)
            portions = self._requested_portions(item, spec)
            label = self.kernel.items.shown(item, [m for m in item.portions if m.id in dict(portions)]).label
            if canonical(label_to_dict(label)) != request.label:
                raise ConflictError(
                    f"the label of item {request.item_id} changed after the request: request it again"
                )
            approval = Approval(
                request.id,
                request.requester,
                actor.id,
                request.item_id,
                label,
                spec["sender"],
                tuple(spec["via"]),
                spec["recipient"],
                spec["purpose"],
                now,
                now + self._validity(),
                portions,
            )
            signed = sign_origin(self.ring, canonical(approval.content()).encode(), now, typ=APPROVAL_TYPE)
            prepared = self.prepare_release(
                actor,
                row,
                spec["recipient"],
                via=spec["via"][0] if spec["via"] else None,
                purpose=spec["purpose"],
                authorise_relay=bool(spec["authorise_relay"]),
                now=now,
                approval=approval,
                detail={"approval": request.id, "requester": request.requester},
            )
            done = self.approvals.decide(
                request.id,
                expected="requested",
                state="approved",
                by=actor.id,
                now_us=epoch_us(now),
                approval=signed,
                entry=prepared.entry,
                consents=prepared.consents,
                audit=[
                    self.kernel.audit_row(
                        "release.approved",
                        actor.id,
                        request.item_id,
                        "allowed",
                        request=request.id,
                        requester=request.requester,
                        msg_id=prepared.entry.msg_id,
                    ),
                    prepared.audit,
                ],
            )
            if not done:
                raise ConflictError(f"release request {request.id} was answered by someone else meanwhile")
        except GsomiaError as exc:
            raise self.kernel.refuse("release.approve", actor.id, request_id, exc) from None
        answered = replace(
            request,
            state="approved",
            decided_by=actor.id,
            decided_us=epoch_us(now),
            approval=signed,
            msg_id=prepared.entry.msg_id,
        )
        return answered, prepared.entry

    def refuse_release(self, actor: Person, request_id: str, note: str) -> ReleaseRequestRow:
        """A second officer refuses the request (with a reason); nothing is sent."""
        return self._close(actor, request_id, note, "refused", "release.refuse")

    def withdraw_release(self, actor: Person, request_id: str, note: str = "") -> ReleaseRequestRow:
        """The requester withdraws their own request; nothing is sent."""
        return self._close(actor, request_id, note, "withdrawn", "release.withdraw")

    def _close(self, actor: Person, request_id: str, note: str, state: str, kind: str) -> ReleaseRequestRow:
        try:
            self.kernel.require_any(actor, _OFFICERS, kind)
            request = self.release_request(actor, request_id)
            now = self._now()
            self._answerable(request, now)
            if len(note) > MAX_NOTE:
                raise InvalidInputError(f"the reason is longer than {MAX_NOTE} characters")
            if state == "withdrawn" and actor.id != request.requester:
                raise InvalidInputError(f"only the requester {request.requester} withdraws this request")
            if state == "refused" and actor.id == request.requester:
                raise InvalidInputError(
                    "the requester withdraws their own request; refusing is the approver's"
                )
            if state == "refused" and not note.strip():
                raise InvalidInputError("a refusal needs a reason the requester can read")
            done = self.approvals.decide(
                request.id,
                expected="requested",
                state=state,
                by=actor.id,
                now_us=epoch_us(now),
                note=note or None,
                audit=[
                    self.kernel.audit_row(
                        f"release.{state}",
                        actor.id,
                        request.item_id,
                        "allowed",
                        request=request.id,
                        note=note,
                    )
                ],
            )
            if not done:
                raise ConflictError(f"release request {request.id} was answered by someone else meanwhile")
        except GsomiaError as exc:
            raise self.kernel.refuse(kind, actor.id, request_id, exc) from None
        return replace(request, state=state, decided_by=actor.id, decided_us=epoch_us(now), note=note or None)

    def _approvable_portions(
        self, row: ItemRow, item: Item, probe: ReleaseRequest, now: datetime
    ) -> list[PortionMark]:
        """Of an item in portions, those the requester may read that the release engine would let go
        but for the second officer (TLP:RED never leaves); refused when there are none."""
        _, held = self.kernel.items.signed(row)
        payloads = {p.id: p for p in held}
        out = []
        for mark in item.portions:
            portion = payloads[mark.id]
            if portion.payload_type == "json" and is_tlp_red(json.loads(portion.payload)):
                continue
            decision = self.kernel.engine.decide(replace(probe, label=mark.label, portion=mark.id), at=now)
            if all(c.rule == "two_person" for c in decision.failed()):
                out.append(mark)
        if not out:
            raise InvalidInputError(f"no portion of item {item.id} would be released to {probe.recipient}")
        return out

    def _requested_portions(
        self, item: Item, spec: Mapping[str, Any]
    ) -> tuple[tuple[str, SecurityLabel], ...]:
        """The portions a request asked to release, each still held under the label it was asked
        with; a portion changed or gone since refuses the approval (ask again)."""
        asked = spec.get("portions") or ()
        if bool(asked) != bool(item.portions):
            raise ConflictError(f"item {item.id} changed after the request: request it again")
        marks = {m.id: m.label for m in item.portions}
        out = []
        for entry in asked:
            held = marks.get(entry["id"])
            if held is None or canonical(label_to_dict(held)) != canonical(entry["label"]):
                raise ConflictError(
                    f"portion {entry['id']} of item {item.id} changed after the request: request it again"
                )
            out.append((str(entry["id"]), held))
        return tuple(out)

    def _answerable(self, request: ReleaseRequestRow, now: datetime) -> None:
        if request.state != "requested":
            raise ConflictError(f"release request {request.id} is {request.state} already")
        if epoch_us(now) >= request.expires_us:
            expired = from_us(request.expires_us).isoformat()
            raise ConflictError(
                f"release request {request.id} lapsed unanswered at {expired}: request it again"
            )

    def _validity(self) -> timedelta:
        policy = self.two_person()
        return policy.validity if policy is not None else timedelta(hours=24)
