"""Migration 0030: a release decision many outbox rows share is stored once (``decisions``, under the
SHA-256 of its text) and every reader of the outbox gets each row's own text back; a short decision
(a message that is not an item: ``{}``) stays in its row; the migration goes down (the texts back
into their rows) and up again. On both backends."""

from __future__ import annotations

import hashlib
import json
from importlib.resources import files

from alembic import command
from alembic.config import Config
from sqlalchemy import select

from gsomia.store import Store
from gsomia.store import _tables as t
from gsomia.store._federation import FederationStore, OutboxRow


def _decision(classification: str) -> str:
    checks = [
        {"passed": True, "reason": f"{classification}: rule {n} passed", "rule": f"r{n}"} for n in range(20)
    ]
    return json.dumps({"allowed": True, "checks": checks, "marking": classification}, ensure_ascii=False)


def _row(n: int, decision: str, kind: str = "item") -> OutboxRow:
    return OutboxRow(
        msg_id=f"m{n:03d}", kind=kind, item_id=f"i{n}", recipient="JPN", final_recipient="JPN",
        request=json.dumps({"item": f"i{n}"}), decision=decision, envelope="", state="pending",
        attempts=0, next_attempt_us=n, created_us=n, updated_us=n,
    )  # fmt: skip


def _stored(store: Store) -> tuple[dict[str, tuple[str, str | None]], dict[str, str]]:
    with store.engine.connect() as conn:
        rows = {
            r[0]: (r[1], r[2])
            for r in conn.execute(select(t.outbox.c.msg_id, t.outbox.c.decision, t.outbox.c.decision_id))
        }
        shared = {r[0]: r[1] for r in conn.execute(select(t.decisions.c.id, t.decisions.c.decision))}
    return rows, shared


def test_a_shared_decision_is_stored_once_and_each_row_reads_its_own(store: Store) -> None:
    fed = FederationStore(store)
    ii, iii = _decision("군사II급비밀"), _decision("군사III급비밀")
    # a selection: two decisions, interleaved, each shared by two items; and a message with none
    fed.enqueue([_row(1, ii), _row(2, iii), _row(3, ii), _row(4, iii), _row(5, "{}", kind="consent")])
    rows, shared = _stored(store)
    key = {d: hashlib.sha256(d.encode()).hexdigest() for d in (ii, iii)}
    assert shared == {key[ii]: ii, key[iii]: iii}  # once each
    assert rows == {
        "m001": ("", key[ii]), "m002": ("", key[iii]), "m003": ("", key[ii]), "m004": ("", key[iii]),
        "m005": ("{}", None),
    }  # fmt: skip
    wanted = {"m001": ii, "m002": iii, "m003": ii, "m004": iii, "m005": "{}"}
    assert {r.msg_id: r.decision for r in fed.outbox()} == wanted
    assert {m: fed.outbox_entry(m).decision for m in wanted} == wanted  # type: ignore[union-attr]
    assert [r.decision for r in fed.item_messages("i2")] == [iii]
    assert {i: [r.decision for r in rows] for i, rows in fed.item_messages_of(["i1", "i4"]).items()} == {
        "i1": [ii],
        "i4": [iii],
    }
    # the same decision in a later release (another transaction) is not stored again, nor refused
    fed.enqueue([_row(6, ii)])
    assert _stored(store)[1] == shared
    assert fed.outbox_entry("m006").decision == ii  # type: ignore[union-attr]


def test_the_migration_puts_the_shared_decisions_back_and_takes_them_out_again(store: Store) -> None:
    fed = FederationStore(store)
    ii = _decision("군사II급비밀")
    fed.enqueue([_row(1, ii), _row(2, ii)])
    config = Config()
    config.set_main_option("script_location", str(files("gsomia.store") / "migrations"))
    with store.engine.begin() as conn:
        config.attributes["connection"] = conn
        command.downgrade(config, "0029")
    with store.engine.connect() as conn:
        assert dict(conn.execute(select(t.outbox.c.msg_id, t.outbox.c.decision)).all()) == {
            "m001": ii,
            "m002": ii,
        }
    store.migrate()
    assert store.revision() == Store.head()
    assert [r.decision for r in fed.outbox()] == [ii, ii]
    fed.enqueue([_row(3, ii)])
    assert [r.decision for r in fed.outbox()] == [ii, ii, ii]
