"""Repository tests: the same assertions on SQLite and on PostgreSQL (fixture `database`)."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta

import pytest

from carepath.api.audit import AuditEvent, ChainedAuditSink, verify_chain
from carepath.api.db import UniqueViolation
from carepath.api.records import NewOverride, NewPlan, PlanFilter
from carepath.api.service import new_plan_id

T0 = datetime(2026, 3, 1, 9, 0, tzinfo=UTC)


def _org_user(tx, slug="clinic-a", email="alice@a.example", role="clinician"):
    org = tx.org_by_slug(slug) or tx.add_org(slug, slug, T0)
    return tx.add_user(org, email, "hash", role, T0)


def _plan(
    user, *, at=T0, previous=None, key=None, level="loc.outpatient", codes=(("hr.naloxone", "recommend"),)
):
    pid = new_plan_id()
    return NewPlan(
        id=pid,
        version=previous.version + 1 if previous else 1,
        previous_id=previous.id if previous else None,
        root_id=previous.root_id if previous else pid,
        org_id=user.org_id,
        author_id=user.id,
        created_at=at,
        intake_json='{"assessment_date":"2026-03-01","patient":{"age":30}}',
        intake_sha256="a" * 64,
        ruleset_id="carepath-oud",
        ruleset_version="1",
        ruleset_sha256="b" * 64,
        plan_json="{}",
        level_of_care=level,
        assessment_date=at.date(),
        jurisdiction="US",
        idempotency_key=key,
        request_sha256="c" * 64 if key else None,
        codes=codes,
    )


def _head_revision() -> str:
    from alembic.config import Config
    from alembic.script import ScriptDirectory

    from carepath.api.db import MIGRATIONS_DIR

    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    (head,) = ScriptDirectory.from_config(cfg).get_heads()  # one linear chain
    return str(head)


def test_migrations_match_the_model_and_are_idempotent(database):
    head = _head_revision()
    assert database.current_revision() == head
    assert database.schema_drift() == []
    database.upgrade()  # a second run is a no-op
    assert database.current_revision() == head


def test_sqlite_pragmas_on_every_connection(sqlite_url):
    from carepath.api.db import Database

    db = Database(sqlite_url)
    db.upgrade()
    for _ in range(3):  # fresh pooled connections too
        assert db.sqlite_pragmas() == {
            "journal_mode": "wal",
            "synchronous": 2,  # FULL
            "foreign_keys": 1,
            "busy_timeout": 15000,
        }
    assert db.integrity_check() == "ok"
    db.dispose()


def test_plan_round_trip_and_organisation_isolation(database):
    with database.transaction() as tx:
        alice = _org_user(tx)
        bob = _org_user(tx, "clinic-b", "bob@b.example")
        new = _plan(alice)
        tx.insert_plan(new)
    with database.transaction(readonly=True) as tx:
        got = tx.get_plan(new.id, alice.org_id)
        assert got is not None and got.created_at == T0 and got.author_email == "alice@a.example"
        assert got.intake_json == new.intake_json and got.next_id is None
        assert tx.get_plan(new.id, bob.org_id) is None  # other organisation: invisible
        assert tx.plan_org(new.id) == alice.org_id
        assert tx.plan_codes_of(new.id) == {("hr.naloxone", "recommend")}


def test_idempotency_key_is_unique_per_user_and_the_transaction_survives(database):
    with database.transaction() as tx:
        alice = _org_user(tx)
        rita = _org_user(tx, email="rita@a.example")
        tx.insert_plan(_plan(alice, key="k1"))
        with pytest.raises(UniqueViolation):
            tx.insert_plan(_plan(alice, key="k1"))
        tx.insert_plan(_plan(rita, key="k1"))  # another user may use the same key
        assert tx.plan_by_idempotency_key(alice.id, "k1") is not None
    with database.transaction(readonly=True) as tx:
        assert tx.count_plans(idempotency_key="k1") == 2


def test_versions_form_a_line_not_a_tree(database):
    with database.transaction() as tx:
        alice = _org_user(tx)
        v1 = _plan(alice)
        tx.insert_plan(v1)
        v2 = _plan(alice, previous=tx.get_plan(v1.id, alice.org_id), at=T0 + timedelta(hours=1))
        tx.insert_plan(v2)
        with pytest.raises(UniqueViolation):  # a second successor of v1
            tx.insert_plan(_plan(alice, previous=tx.get_plan(v1.id, alice.org_id)))
    with database.transaction(readonly=True) as tx:
        old, new = tx.get_plan(v1.id, alice.org_id), tx.get_plan(v2.id, alice.org_id)
        assert old.next_id == v2.id and new.previous_id == v1.id and new.version == 2
        assert new.root_id == v1.id


def test_plans_and_audit_rows_are_append_only(database):
    with database.transaction() as tx:
        alice = _org_user(tx)
        new = _plan(alice)
        tx.insert_plan(new)
        ChainedAuditSink().append(tx, AuditEvent("plan.create", "ok", "r1", alice.id, alice.org_id, new.id))
    for statement in (
        "UPDATE plans SET plan_json = 'x'",
        "DELETE FROM plans",
        "UPDATE audit_log SET outcome = 'x'",
        "DELETE FROM audit_log",
    ):
        with pytest.raises(Exception, match="append-only"), database.transaction() as tx:
            tx.conn.exec_driver_sql(statement)


def test_list_filters_and_cursor_pagination(database):
    with database.transaction() as tx:
        alice = _org_user(tx)
        bob = _org_user(tx, "clinic-b", "bob@b.example")
        ids = []
        for i in range(7):
            p = _plan(
                alice,
                at=T0 + timedelta(days=i),
                level="loc.otp" if i % 2 else "loc.outpatient",
                codes=(("moud.methadone", "recommend"),) if i % 2 else (("moud.buprenorphine", "avoid"),),
            )
            tx.insert_plan(p)
            ids.append(p.id)
        tx.insert_plan(_plan(bob))
    with database.transaction(readonly=True) as tx:
        seen, cursor = [], None
        while True:
            page, cursor = tx.list_plans(alice.org_id, PlanFilter(), 3, cursor)
            seen += [s.id for s in page]
            if cursor is None:
                break
        assert seen == list(reversed(ids))  # newest first, every plan once, only clinic-a
        otp, _ = tx.list_plans(alice.org_id, PlanFilter(level_of_care="loc.otp"), 50)
        assert {s.id for s in otp} == {ids[i] for i in (1, 3, 5)}
        avoid, _ = tx.list_plans(alice.org_id, PlanFilter(code="moud.buprenorphine", kind="avoid"), 50)
        assert {s.id for s in avoid} == {ids[i] for i in (0, 2, 4, 6)}
        window = PlanFilter(created_from=T0 + timedelta(days=2), created_before=T0 + timedelta(days=4))
        assert [s.id for s in tx.list_plans(alice.org_id, window, 50)[0]] == [ids[3], ids[2]]
        with pytest.raises(ValueError):
            tx.list_plans(alice.org_id, PlanFilter(), 3, "not-a-cursor")


def test_superseded_versions_are_hidden_unless_asked(database):
    with database.transaction() as tx:
        alice = _org_user(tx)
        v1 = _plan(alice)
        tx.insert_plan(v1)
        v2 = _plan(alice, previous=tx.get_plan(v1.id, alice.org_id), at=T0 + timedelta(minutes=5))
        tx.insert_plan(v2)
    with database.transaction(readonly=True) as tx:
        assert [s.id for s in tx.list_plans(alice.org_id, PlanFilter(), 10)[0]] == [v2.id]
        every = tx.list_plans(alice.org_id, PlanFilter(include_superseded=True), 10)[0]
        assert [s.id for s in every] == [v2.id, v1.id]


def test_override_counts_per_rule(database):
    with database.transaction() as tx:
        alice = _org_user(tx)
        bob = _org_user(tx, "clinic-b", "bob@b.example")
        p1, p2, pb = _plan(alice), _plan(alice), _plan(bob)
        for p in (p1, p2, pb):
            tx.insert_plan(p)

        def override(p, user, code, action, rules):
            return NewOverride(p.id, user.org_id, user.id, T0, "item", code, action, "why", None, None, rules)

        tx.insert_override(override(p1, alice, "moud.buprenorphine", "override", ("OUD-MOUD-100",)))
        tx.insert_override(
            override(p2, alice, "moud.buprenorphine", "edit", ("OUD-MOUD-100", "OUD-MOUD-101"))
        )
        tx.insert_override(override(p2, alice, "hr.naloxone", "edit", ("OUD-HR-001",)))
        tx.insert_override(override(pb, bob, "hr.naloxone", "override", ("OUD-HR-001",)))
        assert [o.code for o in tx.overrides_of(p2.id)] == ["moud.buprenorphine", "hr.naloxone"]
    with database.transaction(readonly=True) as tx:
        counts = {c.rule_id: c for c in tx.override_counts(alice.org_id)}
    assert set(counts) == {"OUD-MOUD-100", "OUD-MOUD-101", "OUD-HR-001"}
    assert counts["OUD-MOUD-100"].overrides == 2 and counts["OUD-MOUD-100"].plans == 2
    assert counts["OUD-MOUD-100"].by_action == {"edit": 1, "override": 1}
    assert counts["OUD-HR-001"].overrides == 1  # clinic-b's override is not counted for clinic-a


def test_audit_chain_verifies_and_detects_tampering(database):
    sink = ChainedAuditSink()
    with database.transaction() as tx:
        alice = _org_user(tx)
    for i in range(5):
        with database.transaction() as tx:
            sink.append(tx, AuditEvent("plan.read", "ok", f"req-{i}", alice.id, alice.org_id, None))
    assert verify_chain(database).ok and verify_chain(database).entries == 5
    _bypass_append_only(database, "UPDATE audit_log SET outcome = 'denied' WHERE seq = 3")
    result = verify_chain(database)
    assert not result.ok and result.broken_seq == 3


def test_audit_chain_detects_a_deleted_tail(database):
    sink = ChainedAuditSink()
    for i in range(3):
        with database.transaction() as tx:
            sink.append(tx, AuditEvent("plan.list", "ok", f"req-{i}"))
    _bypass_append_only(database, "DELETE FROM audit_log WHERE seq = 3")
    result = verify_chain(database)
    assert not result.ok and result.broken_seq == 3


def test_concurrent_audit_appends_keep_one_chain(database):
    sink = ChainedAuditSink()
    errors: list[BaseException] = []

    def work(n: int) -> None:
        try:
            for i in range(15):
                with database.transaction() as tx:
                    sink.append(tx, AuditEvent("plan.read", "ok", f"t{n}-{i}"))
        except BaseException as exc:  # surfaced below
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(n,)) for n in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    result = verify_chain(database)
    assert result.ok and result.entries == 60


def test_a_failed_transaction_leaves_nothing(database):
    with database.transaction() as tx:
        alice = _org_user(tx)
    new = _plan(alice)
    with pytest.raises(RuntimeError), database.transaction() as tx:
        tx.insert_plan(new)
        ChainedAuditSink().append(tx, AuditEvent("plan.create", "ok", "r", alice.id, alice.org_id, new.id))
        raise RuntimeError("fail after both writes")
    with database.transaction(readonly=True) as tx:
        assert tx.count_plans() == 0 and list(tx.audit_entries()) == []
        assert tx.audit_head() == (0, "0" * 64)


def _bypass_append_only(database, statement: str) -> None:
    """What an attacker with database access could do: drop the guard, then edit."""
    with database.transaction() as tx:
        if database.dialect == "sqlite":
            tx.conn.exec_driver_sql("DROP TRIGGER audit_log_no_update")
            tx.conn.exec_driver_sql("DROP TRIGGER audit_log_no_delete")
        else:
            tx.conn.exec_driver_sql("DROP TRIGGER audit_log_append_only ON audit_log")
        tx.conn.exec_driver_sql(statement)
