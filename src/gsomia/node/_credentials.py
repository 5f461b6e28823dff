"""People's credentials at a node: API tokens and their lineage, dashboard sessions.

- A token issued by the node's operator (the CLI, on the node's host) is a root. A token minted
  through the API is minted *by the caller's token* and recorded as its child: it can neither
  outlive nor outrank it (it expires no later; a dashboard session, read-only, mints nothing),
  and revoking a token revokes every token minted from it, at any depth, in one transaction.
- Disabling a person (:meth:`People.set_active`) revokes all their tokens and sessions at once, and
  what was minted from them.
- A dashboard session is a credential of its own kind, bound to the token it was opened with
  (its child): the cookie holds only an opaque session id, never the token; it is accepted for
  reading only, never as a bearer token; it lives in the database, so every process of the node
  accepts it; logging out revokes the token it was opened with, and with it the session.

Secrets are shown once and stored only as their SHA-256.
"""

from __future__ import annotations

import hashlib
import secrets
from datetime import datetime, timedelta

from gsomia.core.access import Person, Role
from gsomia.core.instants import epoch_us
from gsomia.errors import AuthenticationError, ConflictError, InvalidInputError, NotFoundError
from gsomia.kernel import Kept, NodeContext, from_us
from gsomia.store import TOKENS, TokenRow

__all__ = ["MAX_TOKEN_DAYS", "SESSION_HOURS", "Credentials"]

MAX_TOKEN_DAYS = 365
SESSION_HOURS = 12  # a dashboard session lives at most this long (and never past its token)
API, SESSION = "api", "session"


def _digest(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


class Credentials:
    """Tokens and sessions, over the kernel's store, clock and audit records."""

    def __init__(self, kernel: NodeContext) -> None:
        self.kernel = kernel
        # tokens by digest, kept read until any process revokes one (the ``tokens`` generation);
        # expiry is checked on every use, an unknown digest is never kept
        self._tokens: Kept[str, TokenRow] = Kept(kernel.watch, TOKENS, kernel.store.find_token)

    # --- tokens ---

    def issue(
        self, actor: Person | None, person_id: str, days: int = 30, *, parent: TokenRow | None = None
    ) -> tuple[str, str, datetime]:
        """A new API token for ``person_id``: (token id, the token — shown once, expiry).

        ``parent`` is the caller's own token when a person mints one (the API); ``None`` when the
        node's operator issues it. A minted token expires no later than its parent, and a session
        mints nothing.
        """
        kernel = self.kernel
        if actor is None or actor.id != person_id:
            kernel.require_any(actor, (Role.ADMINISTRATOR,), "token.issue")
        if not 0 < days <= MAX_TOKEN_DAYS:
            raise InvalidInputError(f"a token lives 1 to {MAX_TOKEN_DAYS} days, not {days}")
        if not kernel.person(person_id).active:
            raise kernel.refuse(
                "token.issue", actor.id if actor else None, person_id,
                InvalidInputError(f"the account {person_id} is disabled: enable it first"),
            )  # fmt: skip
        now = kernel.clock()
        expires = now + timedelta(days=days)
        if parent is not None:
            if parent.kind != API:
                raise kernel.refuse(
                    "token.issue", actor.id if actor else None, person_id,
                    InvalidInputError("a dashboard session cannot mint tokens"),
                )  # fmt: skip
            until = from_us(parent.expires_us)
            if expires > until:
                most = max(0, (until - now) // timedelta(days=1))
                advice = (
                    f"ask for at most {most} day(s)" if most else "it expires within a day and mints none"
                )
                why = (
                    f"a token minted with token {parent.id} cannot outlive it (expires {until.isoformat()}): "
                )
                raise kernel.refuse(
                    "token.issue", actor.id if actor else None, person_id, InvalidInputError(why + advice)
                )
        token_id = secrets.token_hex(8)
        token = f"gsm_{token_id}_{secrets.token_urlsafe(32)}"
        parent_id = parent.id if parent is not None else None
        row = TokenRow(token_id, person_id, epoch_us(now), epoch_us(expires), None, parent_id, API)
        audit = kernel.audit_row(
            "token.issue", actor.id if actor else "operator", person_id, "allowed",
            token=token_id, expires=expires.isoformat(), minted_by=row.parent_id,
        )  # fmt: skip
        kernel.store.add_token(row, _digest(token), [audit])
        return token_id, token, expires

    def revoke(self, actor: Person | None, token_id: str, *, reason: str = "revoked") -> list[str]:
        """Revoke a token (its owner, or an administrator) and every token minted from it; the ids."""
        kernel = self.kernel
        row = self._row(token_id)
        if actor is None or actor.id != row.person_id:
            kernel.require_any(actor, (Role.ADMINISTRATOR,), "token.revoke")
        who = actor.id if actor else "operator"
        revoked = kernel.store.revoke_token(
            token_id,
            epoch_us(kernel.clock()),
            lambda ids: [
                kernel.audit_row("token.revoke", who, token_id, "allowed", revoked=ids, reason=reason)
            ],
        )
        if not revoked:
            raise NotFoundError(f"token {token_id} is already revoked")
        return revoked

    def of(self, actor: Person | None, person_id: str) -> list[TokenRow]:
        """A person's tokens and sessions (ids, kinds, lifetimes, lineage; never a secret):
        administrators, or the person."""
        if actor is None or actor.id != person_id:
            self.kernel.require_any(actor, (Role.ADMINISTRATOR,), "token.list")
        self.kernel.person(person_id)
        return self.kernel.store.tokens_of(person_id)

    def _row(self, token_id: str) -> TokenRow:
        row = self.kernel.store.token(token_id)
        if row is None:
            raise NotFoundError(f"no token {token_id!r}")
        return row

    # --- authentication ---

    def peek(self, secret: str | None, *, session: bool = False) -> Person | None:
        """Who a token (or, with ``session``, a dashboard session) belongs to if it is valid now;
        ``None`` otherwise, and nothing is audited. To say who was refused, never to let anyone in."""
        if not secret:
            return None
        try:
            return self._person(
                self._valid(self.kernel.store.find_token(_digest(secret)), SESSION if session else API)
            )
        except (AuthenticationError, NotFoundError):
            return None

    def _valid(self, row: TokenRow | None, kind: str) -> TokenRow:
        what = "session" if kind == SESSION else "token"
        if row is None:
            raise AuthenticationError(f"unknown {what}")
        if row.kind != kind:
            raise AuthenticationError(
                "a dashboard session is not an API token" if kind == API else "an API token is not a session"
            )
        now = epoch_us(self.kernel.clock())
        if row.revoked_us is not None:
            raise AuthenticationError(f"{what} {row.id} was revoked at {from_us(row.revoked_us).isoformat()}")
        if now >= row.expires_us:
            raise AuthenticationError(f"{what} {row.id} expired at {from_us(row.expires_us).isoformat()}")
        return row

    def _person(self, row: TokenRow) -> Person:
        return self._active(self.kernel.person(row.person_id))

    @staticmethod
    def _active(person: Person) -> Person:
        """``person`` (a valid token's holder) unless their account is disabled."""
        if not person.active:
            raise AuthenticationError(f"the account {person.id} is disabled")
        return person

    def recognise(self, token: str) -> Person | None:
        """The person a valid API token belongs to, if this process can tell from what it keeps
        (the token's row and the person's record, their generations read within the interval);
        ``None`` for anything else: then :meth:`authenticate` decides, reading the store and
        auditing a refusal. Never reads the store and never refuses, so an event loop may ask it;
        it lets in only what :meth:`authenticate` would, by the same checks on the same kept rows."""
        row = self._tokens.peek(_digest(token))
        person = None if row is None else self.kernel.kept_person(row.person_id)
        if row is None or person is None:
            return None
        try:
            self._valid(row, API)
            return self._active(person)
        except AuthenticationError:
            return None

    def held(self, token: str) -> bool:
        """Whether this process kept ``token``'s row from an earlier read (valid then, perhaps not
        now): a caller on an event loop whose :meth:`recognise` answered ``None`` may then ask
        :meth:`known` from a worker thread rather than go the long way round. Never reads the store."""
        return self._tokens.holds(_digest(token))

    def known(self, token: str) -> Person | None:
        """The person a valid API token belongs to, by :meth:`authenticate`'s checks on the same kept
        rows (the counters read when due, the rows again when one moved: it may read the store);
        ``None`` for anything :meth:`authenticate` would refuse, which is then asked to refuse it
        (and audit the refusal): this never refuses and never audits."""
        try:
            return self._person(self._valid(self._tokens.get(_digest(token)), API))
        except (AuthenticationError, NotFoundError):
            return None

    def still(self, secret: str, *, session: bool = False) -> datetime:
        """Until when the credential a stream was opened with stays valid, if it still is now (its
        expiry): the checks :meth:`authenticate` (``session``: :meth:`session`) makes, on the kept
        rows (read again once any process revoked a token: the ``tokens`` generation). Raises
        :class:`AuthenticationError` for a credential revoked, expired, unknown, or whose holder's
        account is disabled; nothing is audited here (the stream records the refusal it makes)."""
        try:
            row = self._valid(self._tokens.get(_digest(secret)), SESSION if session else API)
            self._person(row)
        except NotFoundError as exc:  # the holder is no longer on file
            raise AuthenticationError(str(exc)) from None
        return from_us(row.expires_us)

    def authenticate(self, token: str | None, source: str | None = None) -> Person:
        """The person an API (bearer) token belongs to; refuses unknown, expired, revoked, disabled,
        and a dashboard session presented as a token. ``source`` (the caller's network address)
        bounds what refusals cost the audit log (:meth:`NodeContext.tally_refusal`)."""
        return self.authenticate_row(token, source)[0]

    def authenticate_row(self, token: str | None, source: str | None = None) -> tuple[Person, TokenRow]:
        """As :meth:`authenticate`, with the token's row (what a token it mints descends from)."""
        try:
            if not token:
                raise AuthenticationError("no bearer token: send 'Authorization: Bearer <token>'")
            row = self._valid(self._tokens.get(_digest(token)), API)
            return self._person(row), row
        except AuthenticationError as exc:
            raise self.kernel.refuse_unauthenticated("auth", source, "token", exc) from None

    # --- dashboard sessions ---

    def open_session(self, token: str | None, source: str | None = None) -> tuple[str, Person, datetime]:
        """Log in to the dashboard with an API token: (the opaque session id for the cookie, the
        person, its expiry). The session is bound to the token: it ends when the token does."""
        kernel = self.kernel
        person, parent = self.authenticate_row(token, source)
        now = kernel.clock()
        expires = min(now + timedelta(hours=SESSION_HOURS), from_us(parent.expires_us))
        secret = secrets.token_urlsafe(32)
        row = TokenRow(
            secrets.token_hex(8), person.id, epoch_us(now), epoch_us(expires), None, parent.id, SESSION
        )
        audit = kernel.audit_row(
            "session.open", person.id, row.id, "allowed", token=parent.id, expires=expires.isoformat()
        )
        try:
            kernel.store.add_token(row, _digest(secret), [audit])
        except ConflictError as exc:  # the token was revoked or expired meanwhile
            raise kernel.refuse("auth", person.id, None, AuthenticationError(str(exc))) from None
        return secret, person, expires

    def session(self, secret: str | None, source: str | None = None) -> Person:
        """The person behind a dashboard session id; refused like a token."""
        try:
            if not secret:
                raise AuthenticationError("no dashboard session: log in at the dashboard")
            return self._person(self._valid(self._tokens.get(_digest(secret)), SESSION))
        except AuthenticationError as exc:
            raise self.kernel.refuse_unauthenticated("auth", source, "session", exc) from None

    def close_session(self, secret: str | None) -> list[str]:
        """Log out: revoke the token the session was opened with (and so the session, and all that
        token minted). A session already ended is nothing to close: no error, nothing revoked."""
        kernel = self.kernel
        row = kernel.store.find_token(_digest(secret)) if secret else None
        if row is None or row.kind != SESSION or row.parent_id is None:
            return []
        who = row.person_id
        return kernel.store.revoke_token(
            row.parent_id,
            epoch_us(kernel.clock()),
            lambda ids: [
                kernel.audit_row("token.revoke", who, row.parent_id, "allowed", revoked=ids, reason="logout")
            ],
        )
