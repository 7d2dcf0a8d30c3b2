"""Tamper evidence that survives a database writer (api/audit.py), on SQLite and PostgreSQL.

Each attack is what someone with write access to the database (but not to the audit key or
the checkpoint file) can do; ``carepath audit verify`` (verify_chain) must name it:
- edit a row and re-hash the chain after it (plain SHA-256, as the old chain allowed);
- truncate the tail and rewind the head row to match;
- delete a stored plan (with its codes and keys); edit a stored plan; edit an override;
- insert a plan without an audit row; forge a checkpoint line.
The append-only triggers are dropped first (as a database owner could); on PostgreSQL the
application role cannot do even that (test_pg_roles.py).
"""

from __future__ import annotations

import hashlib
import json
import threading
import time

import pytest
import sqlalchemy as sa

from carepath.api.audit import (
    AuditEvent,
    AuditWriteError,
    ChainedAuditSink,
    canonical_row,
    record_event,
    verify_chain,
)
from carepath.api.hardening import open_database
from carepath.api.service import Caller, PlanService
from carepath.engine import Engine
from tests.service.helpers import make_users

CANARY = "Tamsin Tamperwood"


@pytest.fixture
def world(db_url, settings_for, engine: Engine, example_intake):
    """A migrated database opened like the service opens it, a sink, users and two plans."""
    settings = settings_for(db_url, audit_checkpoint_interval_s=0.05)
    db = open_database(settings, create=True)
    db.upgrade()
    from carepath.api.hardening import Hardening

    h = Hardening.build(settings, db)
    users = make_users(db)
    service = PlanService(db, engine, h.audit)
    from carepath.api.records import Principal

    caller = Caller(Principal(_user(db, users.clinician.email), "bearer"), "req-tamper-0001")
    intake = {**example_intake, "patient": {**example_intake["patient"], "name": CANARY, "id": "mrn-77"}}
    first, _ = service.create(caller, json.dumps(intake))
    second, _ = service.create(caller, json.dumps(example_intake))
    from carepath.api.service import OverrideRequest

    code = first.plan().phases[0].items[0].code
    service.add_override(
        caller, first.id, OverrideRequest(code=code, action="edit", reason="checked " + CANARY)
    )
    service.get(caller, first.id)
    h.audit.flush_checkpoint()
    time.sleep(0.2)
    h.audit.flush_checkpoint()
    yield {"db": db, "settings": settings, "first": first, "second": second, "h": h, "service": service}
    h.close()
    db.dispose()


def _user(db, email):
    with db.transaction(readonly=True) as tx:
        return tx.user_with_hash(email)[0]


def _sql(db, *statements: str) -> None:
    with db.engine.begin() as conn:
        for s in statements:
            conn.exec_driver_sql(s)


def _drop_guards(db) -> None:
    if db.dialect == "postgresql":
        _sql(
            db,
            "ALTER TABLE audit_log DISABLE TRIGGER ALL",
            "ALTER TABLE plans DISABLE TRIGGER ALL",
            "ALTER TABLE plan_codes DISABLE TRIGGER ALL",
            "ALTER TABLE overrides DISABLE TRIGGER ALL",
            "ALTER TABLE override_rules DISABLE TRIGGER ALL",
            "ALTER TABLE plan_subjects DISABLE TRIGGER ALL",
            "ALTER TABLE content_keys DISABLE TRIGGER ALL",
            "ALTER TABLE plan_patients DISABLE TRIGGER ALL",
        )
        return
    with db.engine.begin() as conn:
        names = [r[0] for r in conn.exec_driver_sql("SELECT name FROM sqlite_master WHERE type='trigger'")]
        for n in names:
            conn.exec_driver_sql(f"DROP TRIGGER {n}")


def test_an_untouched_log_verifies_with_content_and_checkpoints(world):
    result = verify_chain(world["db"])
    assert result.ok, result
    assert result.plans == 2 and result.overrides == 1 and result.checkpoints >= 1
    assert result.legacy_rows == 0


def test_a_row_edited_and_the_chain_rehashed_is_caught(world):
    db = world["db"]
    _drop_guards(db)
    with db.transaction(readonly=True) as tx:
        entries = list(tx.audit_entries())
    prev = entries[1].prev_hash
    with db.engine.begin() as conn:  # what the attacker can compute: SHA-256 links, no key
        for e in entries[1:]:
            actor = 999 if e.seq == entries[1].seq else e.actor_id
            row = canonical_row(e.seq, e.at, e.request_id, actor, e.org_id, e.plan_id, e.action, e.outcome)
            h = hashlib.sha256((prev + row).encode()).hexdigest()
            conn.execute(
                sa.text("UPDATE audit_log SET actor_id = :a, prev_hash = :p, hash = :h WHERE seq = :s"),
                {"a": actor, "p": prev, "h": h, "s": e.seq},
            )
            prev = h
        conn.execute(sa.text("UPDATE audit_head SET hash = :h WHERE id = 1"), {"h": prev})
    result = verify_chain(db)
    assert not result.ok and result.broken_seq == entries[1].seq, result


def test_truncation_with_the_head_rewound_is_caught(world):
    db = world["db"]
    _drop_guards(db)
    with db.transaction(readonly=True) as tx:
        entries = list(tx.audit_entries())
    keep = entries[-3]
    _sql(
        db,
        f"DELETE FROM audit_log WHERE seq > {keep.seq}",
        f"UPDATE audit_head SET seq = {keep.seq}, hash = '{keep.hash}' WHERE id = 1",
    )
    result = verify_chain(db)
    assert not result.ok and "removed" in result.reason, result


def test_a_deleted_plan_is_caught(world):
    db, pid = world["db"], world["second"].id
    _drop_guards(db)
    _sql(
        db,
        f"DELETE FROM plan_codes WHERE plan_id = '{pid}'",
        f"DELETE FROM plan_patients WHERE plan_id = '{pid}'",  # the worklist's index (issue 8)
        f"DELETE FROM content_keys WHERE owner_id = '{pid}'",
        f"DELETE FROM plans WHERE id = '{pid}'",
    )
    result = verify_chain(db)
    assert not result.ok and pid in result.reason and "gone" in result.reason, result


def test_an_edited_plan_is_caught(world):
    db, pid = world["db"], world["second"].id
    _drop_guards(db)
    _sql(db, f"UPDATE plans SET level_of_care = 'loc.residential' WHERE id = '{pid}'")
    result = verify_chain(db)
    assert not result.ok and pid in result.reason and "differs" in result.reason, result


def test_an_edited_override_is_caught(world):
    db = world["db"]
    _drop_guards(db)
    _sql(db, "UPDATE overrides SET action = 'override'")
    result = verify_chain(db)
    assert not result.ok and "override" in result.reason, result


def test_a_plan_inserted_without_its_audit_row_is_caught(world):
    db, first = world["db"], world["first"]
    _drop_guards(db)
    forged = "pl_" + "F" * 22
    with db.engine.begin() as conn:
        row = conn.execute(sa.text("SELECT * FROM plans WHERE id = :i"), {"i": first.id}).mappings().first()
        values = {**dict(row), "id": forged, "previous_id": None, "root_id": forged, "idempotency_key": None}
        cols = ", ".join(values)
        marks = ", ".join(f":{k}" for k in values)
        conn.execute(sa.text(f"INSERT INTO plans ({cols}) VALUES ({marks})"), values)
    result = verify_chain(db)
    assert not result.ok and forged in result.reason, result


def test_a_forged_checkpoint_line_is_caught(world):
    db = world["db"]
    path = db.checkpoint_path
    with open(path, "a", encoding="utf-8") as f:
        f.write(
            json.dumps(
                {"seq": 1, "hash": "0" * 64, "at": "2026-01-01T00:00:00+00:00", "key": "x", "sig": "AAAA"}
            )
            + "\n"
        )
    result = verify_chain(db)
    assert not result.ok and "not signed" in result.reason, result


def test_stored_content_is_ciphertext_and_the_canary_is_nowhere_in_the_database(world):
    db = world["db"]
    with db.engine.connect() as conn:
        for table in ("plans", "overrides", "audit_log", "plan_subjects", "content_keys"):
            for row in conn.exec_driver_sql(f"SELECT * FROM {table}").all():
                assert CANARY not in json.dumps([str(v) for v in row]), table
                assert "mrn-77" not in json.dumps([str(v) for v in row]), table
        sealed = conn.exec_driver_sql("SELECT intake_json, plan_json FROM plans").all()
    assert all(a.startswith("cp1:") and b.startswith("cp1:") for a, b in sealed)
    with db.transaction(readonly=True) as tx:
        record = tx.get_plan(world["first"].id, world["first"].org_id)
    assert CANARY in record.intake_json  # the service reads it back in clear


def test_reads_do_not_take_the_write_lock_and_their_rows_are_group_committed(world):
    """Twelve concurrent readers each get their audit row; batching shows as fewer write
    transactions than rows (the writer thread commits whatever is waiting together)."""
    db, service, first = world["db"], world["service"], world["first"]
    from carepath.api.records import Principal

    with db.transaction(readonly=True) as tx:
        user = tx.user_by_id(first.author_id)
    caller = Caller(Principal(user, "bearer"), "req-read-0000001")
    begins = {"n": 0}

    def count(conn, *a):
        if not conn.get_execution_options().get("carepath_readonly", False):
            begins["n"] += 1

    sa.event.listen(db.engine, "begin", count)
    errors: list[BaseException] = []

    def read() -> None:
        try:
            for _ in range(5):
                service.get(caller, first.id)
        except BaseException as exc:  # noqa: BLE001
            errors.append(exc)

    threads = [threading.Thread(target=read) for _ in range(12)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    sa.event.remove(db.engine, "begin", count)
    assert errors == []
    with db.transaction(readonly=True) as tx:
        reads = [
            e for e in tx.audit_entries() if e.action == "plan.read" and e.request_id == caller.request_id
        ]
    assert len(reads) == 60
    assert begins["n"] < 60, f"{begins['n']} write transactions for 60 read rows: no group commit"
    assert verify_chain(db).ok


def test_a_failing_group_commit_fails_every_waiting_read(world):
    db, h = world["db"], world["h"]
    _drop_guards(db)
    _sql(db, "DROP TABLE audit_head")  # every append now fails
    with pytest.raises(AuditWriteError):
        record_event(h.audit, db, AuditEvent("plan.read", "ok", "req-fail-000001"))


def test_a_bare_sink_still_writes_the_v1_chain_and_verifies_as_legacy(database):
    sink = ChainedAuditSink()
    for i in range(3):
        with database.transaction() as tx:
            sink.append(tx, AuditEvent("plan.read", "ok", f"req-{i:04d}"))
    result = verify_chain(database)
    assert result.ok and result.legacy_rows == 3
