"""Persistence: THE ONLY importer of SQLAlchemy (with its migrations in api/migrations/).

SQLite (default) runs in WAL mode with ``synchronous=FULL`` and foreign keys on, set on every
connection; every write transaction starts with ``BEGIN IMMEDIATE`` so concurrent writers
queue instead of dead-locking on a lock upgrade. PostgreSQL (psycopg 3) is used when the URL
says so. The schema is owned by Alembic; ``Database.upgrade()`` runs it (at startup and from
``carepath db upgrade``).

Callers use one transaction at a time::

    with db.transaction() as tx:          # commits on success, rolls back on any exception
        tx.insert_plan(...)
        tx.append_audit(...)              # same transaction: no plan without its audit row

``Tx`` methods take and return the plain records of ``api.records``.
"""

from __future__ import annotations

import base64
import json
import os
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import IntegrityError, OperationalError

from carepath.api.records import (
    AuditEntry,
    CdsCardRecord,
    CommentRecord,
    FeedbackStat,
    NewCdsCard,
    NewComment,
    NewFeedback,
    NewOverride,
    NewPlan,
    NewSignature,
    Organisation,
    OverrideCount,
    OverrideRecord,
    PlanFilter,
    PlanRecord,
    PlanSummary,
    Prefill,
    SignatureRecord,
    User,
)

__all__ = ["Database", "Tx", "UniqueViolation", "DatabaseBusy", "GENESIS_HASH", "MIGRATIONS_DIR"]

GENESIS_HASH = "0" * 64
_DISAGREEMENTS = frozenset({"modify", "decline", "edit", "override"})
MIGRATIONS_DIR = Path(__file__).resolve().parent / "migrations"
_PG_MIGRATION_LOCK = 0x6361726570  # "carep": serialises concurrent migrators on PostgreSQL


class UniqueViolation(Exception):
    """An insert hit a unique constraint (idempotency key reused, or a version already exists)."""


class DatabaseBusy(Exception):
    """A lock wait ran out (SQLite ``database is locked`` after busy_timeout): nothing was
    written; the caller may retry (the service answers 503 + Retry-After, never 500)."""


def _is_lock_timeout(exc: OperationalError) -> bool:
    text = str(getattr(exc, "orig", exc)).lower()
    return "database is locked" in text or "database table is locked" in text


class UTCDateTime(sa.types.TypeDecorator[datetime]):
    """Aware UTC datetimes in and out, on SQLite (no time zones) and PostgreSQL alike."""

    impl = sa.DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to the database")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


# -- the schema as the code sees it (Alembic's 0001 migration creates exactly this) ---------

metadata = sa.MetaData()

organisations = sa.Table(
    "organisations",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("slug", sa.String(64), nullable=False, unique=True),
    sa.Column("name", sa.String(200), nullable=False),
    sa.Column("created_at", UTCDateTime, nullable=False),
)

users = sa.Table(
    "users",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("org_id", sa.Integer, sa.ForeignKey("organisations.id"), nullable=False),
    sa.Column("email", sa.String(254), nullable=False, unique=True),
    sa.Column("password_hash", sa.String(200), nullable=False),
    sa.Column("role", sa.String(16), nullable=False),
    sa.Column("active", sa.Boolean, nullable=False),
    sa.Column("created_at", UTCDateTime, nullable=False),
    # 0004: optional TOTP second factor (secret sealed with the data keys, api.vault)
    sa.Column("totp_secret", sa.Text, nullable=True),
    sa.Column("totp_enabled", sa.Boolean, nullable=True),
    sa.Column("totp_last_step", sa.BigInteger, nullable=True),
    sa.CheckConstraint("role IN ('clinician', 'reviewer', 'admin')", name="ck_users_role"),
)

api_tokens = sa.Table(
    "api_tokens",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("user_id", sa.Integer, sa.ForeignKey("users.id"), nullable=False),
    sa.Column("token_sha256", sa.String(64), nullable=False, unique=True),
    sa.Column("label", sa.String(100), nullable=False),
    sa.Column("created_at", UTCDateTime, nullable=False),
    sa.Column("revoked_at", UTCDateTime, nullable=True),
    sa.Column("expires_at", UTCDateTime, nullable=True),  # 0004; NULL: created_at + token_max_age_days
)

sessions = sa.Table(
    "sessions",
    metadata,
    sa.Column("token_sha256", sa.String(64), primary_key=True),
    sa.Column("user_id", sa.Integer, sa.ForeignKey("users.id"), nullable=False),
    sa.Column("created_at", UTCDateTime, nullable=False),
    sa.Column("expires_at", UTCDateTime, nullable=False),
)

plans = sa.Table(
    "plans",
    metadata,
    sa.Column("id", sa.String(40), primary_key=True),
    sa.Column("version", sa.Integer, nullable=False),
    sa.Column("previous_id", sa.String(40), sa.ForeignKey("plans.id"), nullable=True, unique=True),
    sa.Column("root_id", sa.String(40), nullable=False),
    sa.Column("org_id", sa.Integer, sa.ForeignKey("organisations.id"), nullable=False),
    sa.Column("author_id", sa.Integer, sa.ForeignKey("users.id"), nullable=False),
    sa.Column("created_at", UTCDateTime, nullable=False),
    sa.Column("intake_json", sa.Text, nullable=False),
    sa.Column("intake_sha256", sa.String(64), nullable=False),
    sa.Column("ruleset_id", sa.String(100), nullable=False),
    sa.Column("ruleset_version", sa.String(40), nullable=False),
    sa.Column("ruleset_sha256", sa.String(64), nullable=False),
    sa.Column("plan_json", sa.Text, nullable=False),
    sa.Column("level_of_care", sa.String(64), nullable=False),
    sa.Column("assessment_date", sa.Date, nullable=False),
    sa.Column("jurisdiction", sa.String(8), nullable=False),
    sa.Column("idempotency_key", sa.String(200), nullable=True),
    sa.Column("request_sha256", sa.String(64), nullable=True),
    sa.UniqueConstraint("author_id", "idempotency_key", name="uq_plans_author_idempotency_key"),
    sa.Index("ix_plans_org_created", "org_id", "created_at"),
)

plan_codes = sa.Table(
    "plan_codes",
    metadata,
    sa.Column("plan_id", sa.String(40), sa.ForeignKey("plans.id"), primary_key=True),
    sa.Column("code", sa.String(64), primary_key=True),
    sa.Column("kind", sa.String(16), primary_key=True),
    sa.Index("ix_plan_codes_code", "code"),
)

overrides = sa.Table(
    "overrides",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("plan_id", sa.String(40), sa.ForeignKey("plans.id"), nullable=False),
    sa.Column("org_id", sa.Integer, sa.ForeignKey("organisations.id"), nullable=False),
    sa.Column("author_id", sa.Integer, sa.ForeignKey("users.id"), nullable=False),
    sa.Column("created_at", UTCDateTime, nullable=False),
    sa.Column("section", sa.String(16), nullable=False),
    sa.Column("code", sa.String(64), nullable=False),
    sa.Column("action", sa.String(16), nullable=False),
    sa.Column("reason", sa.Text, nullable=False),
    sa.Column("replacement_text", sa.Text, nullable=True),
    sa.Column("replacement_kind", sa.String(16), nullable=True),
    sa.Column("rule_ids", sa.Text, nullable=False),
    sa.Column("dose", sa.Text, nullable=True),
    sa.Column("basis_sha256", sa.String(64), nullable=True),
    sa.Column("carried_from", sa.Integer, nullable=True),
    sa.Index("ix_overrides_plan", "plan_id"),
)

override_rules = sa.Table(
    "override_rules",
    metadata,
    sa.Column("override_id", sa.Integer, sa.ForeignKey("overrides.id"), primary_key=True),
    sa.Column("rule_id", sa.String(40), primary_key=True),
    sa.Column("org_id", sa.Integer, nullable=False),
    sa.Column("plan_id", sa.String(40), nullable=False),
    sa.Column("action", sa.String(16), nullable=False),
    sa.Column("code", sa.String(64), nullable=False),
    sa.Column("created_at", UTCDateTime, nullable=False),
    sa.Index("ix_override_rules_org_rule", "org_id", "rule_id"),
)

# -- decisions of record, sign-off, comments, worklist (migration 0002) -------------------------

signatures = sa.Table(
    "signatures",
    metadata,
    sa.Column("plan_id", sa.String(40), sa.ForeignKey("plans.id"), primary_key=True),
    sa.Column("org_id", sa.Integer, sa.ForeignKey("organisations.id"), nullable=False),
    sa.Column("signer_id", sa.Integer, sa.ForeignKey("users.id"), nullable=False),
    sa.Column("signed_at", UTCDateTime, nullable=False),
    sa.Column("signer_name", sa.String(200), nullable=False),
    sa.Column("credentials", sa.String(200), nullable=False),
    sa.Column("content_sha256", sa.String(64), nullable=False),
)

comments = sa.Table(
    "comments",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("plan_id", sa.String(40), sa.ForeignKey("plans.id"), nullable=False),
    sa.Column("org_id", sa.Integer, sa.ForeignKey("organisations.id"), nullable=False),
    sa.Column("author_id", sa.Integer, sa.ForeignKey("users.id"), nullable=False),
    sa.Column("created_at", UTCDateTime, nullable=False),
    sa.Column("code", sa.String(64), nullable=True),
    sa.Column("text", sa.Text, nullable=False),
    sa.Index("ix_comments_plan", "plan_id"),
)

plan_patients = sa.Table(
    "plan_patients",
    metadata,
    sa.Column("plan_id", sa.String(40), sa.ForeignKey("plans.id"), primary_key=True),
    sa.Column("org_id", sa.Integer, nullable=False),
    # Text: sealed (AES-GCM, api.vault) under encryption at rest; search_text then holds keyed
    # hashes of the name's words and the MRN, never the name (migration 0004 widens them)
    sa.Column("patient_ref", sa.Text, nullable=True),
    sa.Column("patient_name", sa.Text, nullable=True),
    sa.Column("search_text", sa.Text, nullable=False),
    sa.Index("ix_plan_patients_org", "org_id"),
)

audit_log = sa.Table(
    "audit_log",
    metadata,
    sa.Column(
        "seq", sa.BigInteger().with_variant(sa.Integer, "sqlite"), primary_key=True, autoincrement=False
    ),
    sa.Column("at", sa.String(40), nullable=False),
    sa.Column("request_id", sa.String(64), nullable=False),
    sa.Column("actor_id", sa.Integer, nullable=True),
    sa.Column("org_id", sa.Integer, nullable=True),
    sa.Column("plan_id", sa.String(40), nullable=True),
    sa.Column("action", sa.String(40), nullable=False),
    sa.Column("outcome", sa.String(40), nullable=False),
    sa.Column("prev_hash", sa.String(64), nullable=False),
    sa.Column("hash", sa.String(64), nullable=False),
    # 0004 (keyed chain, api.audit): chain version, client address, detail, content MAC
    sa.Column("v", sa.SmallInteger, nullable=False, server_default="1"),
    sa.Column("address", sa.String(64), nullable=True),
    sa.Column("detail", sa.String(200), nullable=True),
    sa.Column("content_mac", sa.String(64), nullable=True),
    sa.Index("ix_audit_log_plan", "plan_id"),
)

audit_head = sa.Table(
    "audit_head",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("seq", sa.BigInteger().with_variant(sa.Integer, "sqlite"), nullable=False),
    sa.Column("hash", sa.String(64), nullable=False),
)

# -- 0004 hardening: encryption keys, patients, consent and disclosures, sign-in failures ------

content_keys = sa.Table(
    "content_keys",  # one data key per plan (or user), wrapped by a key-encryption key (api.vault)
    metadata,
    sa.Column("owner_id", sa.String(64), primary_key=True),
    sa.Column("kek_id", sa.String(32), nullable=False),
    sa.Column("wrapped", sa.Text, nullable=False),
)

plan_subjects = sa.Table(
    "plan_subjects",  # which patient a plan is about: a keyed hash of the intake's patient.id
    metadata,
    sa.Column("plan_id", sa.String(40), sa.ForeignKey("plans.id"), primary_key=True),
    sa.Column("org_id", sa.Integer, nullable=False),
    sa.Column("patient_key", sa.String(64), nullable=False),
    sa.Index("ix_plan_subjects_patient", "org_id", "patient_key"),
)

consents = sa.Table(
    "consents",  # 42 CFR Part 2 written consent to disclose, per patient (api.part2)
    metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("org_id", sa.Integer, sa.ForeignKey("organisations.id"), nullable=False),
    sa.Column("patient_key", sa.String(64), nullable=False),
    sa.Column("recipient", sa.String(200), nullable=False),
    sa.Column("purpose", sa.String(100), nullable=False),
    sa.Column("scope", sa.String(200), nullable=False),
    sa.Column("expires_on", sa.Date, nullable=True),
    sa.Column("recorded_by", sa.Integer, sa.ForeignKey("users.id"), nullable=False),
    sa.Column("recorded_at", UTCDateTime, nullable=False),
    sa.Column("revoked_at", UTCDateTime, nullable=True),
    sa.Column("revoked_by", sa.Integer, sa.ForeignKey("users.id"), nullable=True),
    sa.Index("ix_consents_patient", "org_id", "patient_key"),
)

disclosures = sa.Table(
    "disclosures",  # a plan given to someone outside carepath (accounting of disclosures)
    metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("org_id", sa.Integer, sa.ForeignKey("organisations.id"), nullable=False),
    sa.Column("patient_key", sa.String(64), nullable=False),
    sa.Column("plan_id", sa.String(40), sa.ForeignKey("plans.id"), nullable=False),
    sa.Column("at", UTCDateTime, nullable=False),
    sa.Column("recipient", sa.String(200), nullable=False),
    sa.Column("purpose", sa.String(100), nullable=False),
    sa.Column("consent_id", sa.Integer, sa.ForeignKey("consents.id"), nullable=True),
    sa.Column("recorded_by", sa.Integer, sa.ForeignKey("users.id"), nullable=False),
    sa.Index("ix_disclosures_patient", "org_id", "patient_key"),
)

login_failures = sa.Table(
    "login_failures",  # sign-in lockout with back-off, shared by every worker (api.throttle)
    metadata,
    sa.Column("account_key", sa.String(64), primary_key=True),
    sa.Column("failures", sa.Integer, nullable=False),
    sa.Column("lockouts", sa.Integer, nullable=False),
    sa.Column("locked_until", UTCDateTime, nullable=True),
    sa.Column("last_at", UTCDateTime, nullable=False),
)


# -- CDS Hooks (migration 0003): cards shown, clinicians' feedback, JWT replay guard, form prefills

cds_cards = sa.Table(
    "cds_cards",
    metadata,
    sa.Column("card_uuid", sa.String(64), primary_key=True),
    sa.Column("org_id", sa.Integer, sa.ForeignKey("organisations.id"), nullable=False),
    sa.Column("service_id", sa.String(64), nullable=False),
    sa.Column("hook_instance", sa.String(100), nullable=False),
    sa.Column("kind", sa.String(16), nullable=False),
    sa.Column("code", sa.String(64), nullable=False),
    sa.Column("suggestions", sa.Text, nullable=False),
    sa.Column("ruleset_id", sa.String(100), nullable=False),
    sa.Column("ruleset_version", sa.String(40), nullable=False),
    sa.Column("issued_at", UTCDateTime, nullable=False),
    sa.Index("ix_cds_cards_org_issued", "org_id", "issued_at"),
)

cds_card_rules = sa.Table(
    "cds_card_rules",
    metadata,
    sa.Column("card_uuid", sa.String(64), sa.ForeignKey("cds_cards.card_uuid"), primary_key=True),
    sa.Column("rule_id", sa.String(40), primary_key=True),
    sa.Index("ix_cds_card_rules_rule", "rule_id"),
)

cds_feedback = sa.Table(
    "cds_feedback",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("card_uuid", sa.String(64), sa.ForeignKey("cds_cards.card_uuid"), nullable=False),
    sa.Column("org_id", sa.Integer, sa.ForeignKey("organisations.id"), nullable=False),
    sa.Column("outcome", sa.String(16), nullable=False),
    sa.Column("reason_system", sa.String(200), nullable=True),
    sa.Column("reason_code", sa.String(100), nullable=True),
    sa.Column("reason_display", sa.String(200), nullable=True),
    sa.Column("has_comment", sa.Boolean, nullable=False),
    sa.Column("accepted_suggestions", sa.Text, nullable=False),
    sa.Column("outcome_at", UTCDateTime, nullable=False),
    sa.Column("received_at", UTCDateTime, nullable=False),
    sa.Column("actor_id", sa.Integer, nullable=True),
    sa.Column("client", sa.String(300), nullable=True),
    sa.CheckConstraint("outcome IN ('accepted', 'overridden')", name="ck_cds_feedback_outcome"),
    sa.Index("ix_cds_feedback_card", "card_uuid"),
    sa.Index("ix_cds_feedback_org_outcome_at", "org_id", "outcome_at"),
)

cds_jwt_ids = sa.Table(
    "cds_jwt_ids",
    metadata,
    sa.Column("issuer", sa.String(300), primary_key=True),
    sa.Column("jti", sa.String(200), primary_key=True),
    sa.Column("expires_at", UTCDateTime, nullable=False),
    sa.Index("ix_cds_jwt_ids_expires", "expires_at"),
)

cds_prefills = sa.Table(
    "cds_prefills",
    metadata,
    sa.Column("token_sha256", sa.String(64), primary_key=True),
    sa.Column("org_id", sa.Integer, sa.ForeignKey("organisations.id"), nullable=False),
    sa.Column("created_at", UTCDateTime, nullable=False),
    sa.Column("expires_at", UTCDateTime, nullable=False),
    sa.Column("intake_json", sa.Text, nullable=False),
    sa.Column("readings_json", sa.Text, nullable=False),
)


# -- the database -----------------------------------------------------------------------------


class Database:
    """One connection pool. Build it in the app's lifespan (or a CLI command), never at import."""

    def __init__(self, url: str, *, sqlite_busy_timeout_ms: int = 15000) -> None:
        self.url = url
        # A SQLite file is opened read-write, never created on connect (mode=rw): a moved or
        # deleted file is an error (readiness 503), not a new empty database. upgrade() creates.
        self.sqlite_file = sqlite_file_of(url)
        engine_url = url if self.sqlite_file is None else _sqlite_rw_url(self.sqlite_file)
        self.engine: Engine = sa.create_engine(engine_url, pool_pre_ping=True, future=True)
        self.dialect = self.engine.dialect.name
        self.tx_factory: Callable[[Connection], Tx] = Tx  # api.vault swaps in its sealing Tx
        self.audit_keys: Any = None  # api.keys.AuditKeys, for `audit verify` (api.hardening sets them)
        self.checkpoint_path: Path | None = None  # api.audit's signed checkpoints of the chain head
        self._writers: SQLiteWriterQueue | None = None
        if self.dialect == "sqlite":
            _configure_sqlite(self.engine, sqlite_busy_timeout_ms)
            lock_target = str(self.sqlite_file) if self.sqlite_file is not None else None
            self._writers = SQLiteWriterQueue(lock_target, sqlite_busy_timeout_ms / 1000)
        if self.sqlite_file is not None:
            _follow_sqlite_file(self.engine, self.sqlite_file)

    def dispose(self) -> None:
        self.engine.dispose()

    @contextmanager
    def transaction(self, *, readonly: bool = False) -> Iterator[Tx]:
        """One transaction: commit on success, roll back on any exception (then re-raise).
        A lock wait that runs out raises DatabaseBusy."""
        queue = self._writers if not readonly else None
        try:
            with queue.turn() if queue else _no_wait(), self.engine.connect() as conn:
                if readonly:
                    conn = conn.execution_options(carepath_readonly=True)
                with conn.begin():
                    tx = self.tx_factory(conn)
                    yield tx
                tx.run_after_commit()
        except OperationalError as exc:
            if _is_lock_timeout(exc):
                raise DatabaseBusy("database is busy") from None
            raise

    def upgrade(self, revision: str = "head") -> None:
        """Apply Alembic migrations up to ``revision`` (one transaction; concurrent-safe)."""
        from alembic import command
        from alembic.config import Config

        cfg = Config()
        cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
        if self.sqlite_file is not None and not self.sqlite_file.exists():
            create_sqlite_file(self.sqlite_file)
        with self.engine.connect() as conn, conn.begin():
            if self.dialect == "postgresql":
                conn.execute(sa.text("SELECT pg_advisory_xact_lock(:k)"), {"k": _PG_MIGRATION_LOCK})
            cfg.attributes["connection"] = conn
            command.upgrade(cfg, revision)

    def current_revision(self) -> str | None:
        with self.engine.connect() as conn:
            if not sa.inspect(conn).has_table("alembic_version"):
                return None
            return conn.execute(sa.text("SELECT version_num FROM alembic_version")).scalar()

    def schema_drift(self) -> list[Any]:
        """Differences between the migrated database and this module's tables (empty = none)."""
        from alembic.autogenerate import compare_metadata
        from alembic.migration import MigrationContext

        with self.engine.connect() as conn:
            ctx = MigrationContext.configure(conn, opts={"compare_type": False})
            return [d for d in compare_metadata(ctx, metadata) if not _ignorable_drift(d)]

    def ping(self) -> bool:
        try:
            with self.transaction(readonly=True) as tx:
                tx.conn.execute(sa.text("SELECT 1"))
            return True
        except Exception:
            return False

    def integrity_check(self) -> str:
        """SQLite: ``PRAGMA integrity_check`` ("ok" when sound). PostgreSQL: "ok" if reachable."""
        if self.dialect != "sqlite":
            return "ok" if self.ping() else "unreachable"
        with self.engine.connect() as conn:
            rows = conn.exec_driver_sql("PRAGMA integrity_check").fetchall()
        return "; ".join(str(r[0]) for r in rows)

    def sqlite_pragmas(self) -> dict[str, Any]:
        with self.engine.connect() as conn:
            return {
                name: conn.exec_driver_sql(f"PRAGMA {name}").scalar()
                for name in ("journal_mode", "synchronous", "foreign_keys", "busy_timeout")
            }


class SQLiteWriterQueue:
    """SQLite writers take turns here instead of in SQLite's busy handler, which sleeps in
    growing steps (up to 100 ms) and so leaves the write lock idle while writers sleep: one
    thread per process (a lock), one process per database file (``flock`` on a lock file
    beside it, released by the kernel if the process dies). A turn not had within the busy
    timeout raises DatabaseBusy. Re-entrant within a thread (as SQLite's own lock was not:
    a nested write transaction still waits on the outer one, as before)."""

    def __init__(self, path: str | None, timeout_s: float) -> None:
        self.timeout_s = timeout_s
        self._lock = threading.RLock()
        self._depth = 0
        self._path = f"{path}.writer-lock" if path and path != ":memory:" else None
        self._fd: int | None = None
        self._pid = os.getpid()

    @contextmanager
    def turn(self) -> Iterator[None]:
        if not self._lock.acquire(timeout=self.timeout_s):
            raise DatabaseBusy("database is busy")
        try:
            self._depth += 1
            if self._depth == 1:
                self._flock(True)
            try:
                yield
            finally:
                if self._depth == 1:
                    self._flock(False)
                self._depth -= 1
        finally:
            self._lock.release()

    def _flock(self, take: bool) -> None:
        try:
            import fcntl
        except ImportError:  # not POSIX: SQLite's busy handler alone
            return
        if self._path is None:
            return
        if self._fd is None or self._pid != os.getpid():  # a forked child opens its own
            self._fd, self._pid = os.open(self._path, os.O_RDWR | os.O_CREAT, 0o600), os.getpid()
        fcntl.flock(self._fd, fcntl.LOCK_EX if take else fcntl.LOCK_UN)


@contextmanager
def _no_wait() -> Iterator[None]:
    yield


def sqlite_file_of(url: str) -> Path | None:
    """The database file of a file-backed SQLite URL (None for other URLs and :memory:)."""
    parsed = sa.engine.make_url(url)
    if parsed.get_backend_name() != "sqlite" or not parsed.database or parsed.database == ":memory:":
        return None
    if parsed.database.startswith("file:"):
        return None  # already a URI: the caller chose its own mode
    return Path(parsed.database).resolve()


def _sqlite_rw_url(path: Path) -> str:
    from urllib.parse import quote

    return f"sqlite:///file:{quote(str(path))}?mode=rw&uri=true"


def create_sqlite_file(path: Path) -> None:
    """An empty SQLite file readable by the service's user only (dir 0700, file 0600); the
    WAL and shared-memory files SQLite makes beside it take the same mode."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    os.close(os.open(path, os.O_WRONLY | os.O_CREAT, 0o600))
    os.chmod(path, 0o600)


def _follow_sqlite_file(engine: Engine, path: Path) -> None:
    """A pooled connection still open on a file that was moved, deleted or replaced would
    write into a ghost: on checkout, a connection whose file is no longer the one at ``path``
    is dropped and a fresh one opened (which fails while the file is gone: readiness 503,
    and works again, without a restart, once the file is back)."""

    def identity() -> tuple[int, int] | None:
        try:
            st = os.stat(path)
        except OSError:
            return None
        return st.st_dev, st.st_ino

    @event.listens_for(engine, "connect")
    def _remember(dbapi_conn: Any, record: Any) -> None:
        record.info["carepath_file"] = identity()

    @event.listens_for(engine, "checkout")
    def _check(dbapi_conn: Any, record: Any, proxy: Any) -> None:
        now = identity()
        if now is None or now != record.info.get("carepath_file"):
            raise sa.exc.DisconnectionError("the SQLite file was moved, deleted or replaced")


def _configure_sqlite(engine: Engine, busy_timeout_ms: int) -> None:
    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn: Any, _record: Any) -> None:
        dbapi_conn.isolation_level = None  # we issue BEGIN ourselves (below)
        cur = dbapi_conn.cursor()
        cur.execute(f"PRAGMA busy_timeout = {int(busy_timeout_ms)}")
        cur.execute("PRAGMA journal_mode = WAL")
        cur.execute("PRAGMA synchronous = FULL")
        cur.execute("PRAGMA foreign_keys = ON")
        cur.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Connection) -> None:
        readonly = conn.get_execution_options().get("carepath_readonly", False)
        conn.exec_driver_sql("BEGIN" if readonly else "BEGIN IMMEDIATE")


# -- one transaction's repository -------------------------------------------------------------


class Tx:
    """Repository methods bound to one open transaction."""

    def __init__(self, conn: Connection) -> None:
        self.conn = conn
        self._after_commit: list[Callable[[], None]] = []

    def on_commit(self, fn: Callable[[], None]) -> None:
        """Run ``fn`` once this transaction has committed (never after a rollback)."""
        self._after_commit.append(fn)

    def run_after_commit(self) -> None:
        callbacks, self._after_commit = self._after_commit, []
        for fn in callbacks:
            fn()

    # organisations and users

    def org_by_slug(self, slug: str) -> Organisation | None:
        row = self.conn.execute(sa.select(organisations).where(organisations.c.slug == slug)).first()
        return Organisation(row.id, row.slug, row.name) if row else None

    def add_org(self, slug: str, name: str, now: datetime) -> Organisation:
        oid = _pk(self.conn.execute(organisations.insert().values(slug=slug, name=name, created_at=now)))
        return Organisation(int(oid), slug, name)

    def add_user(self, org: Organisation, email: str, password_hash: str, role: str, now: datetime) -> User:
        try:
            with self.conn.begin_nested():
                uid = _pk(
                    self.conn.execute(
                        users.insert().values(
                            org_id=org.id,
                            email=email,
                            password_hash=password_hash,
                            role=role,
                            active=True,
                            created_at=now,
                        )
                    )
                )
        except IntegrityError:
            raise UniqueViolation("a user with this email exists") from None
        return User(int(uid), email, role, org.id, org.slug)  # type: ignore[arg-type]

    def _user_query(self) -> sa.Select[Any]:
        return sa.select(
            users.c.id,
            users.c.email,
            users.c.role,
            users.c.org_id,
            users.c.active,
            users.c.password_hash,
            organisations.c.slug.label("org_slug"),
        ).join(organisations, organisations.c.id == users.c.org_id)

    @staticmethod
    def _user(row: Any) -> User:
        return User(row.id, row.email, row.role, row.org_id, row.org_slug, bool(row.active))

    def user_with_hash(self, email: str) -> tuple[User, str] | None:
        row = self.conn.execute(self._user_query().where(users.c.email == email)).first()
        return (self._user(row), row.password_hash) if row else None

    def user_by_id(self, user_id: int) -> User | None:
        row = self.conn.execute(self._user_query().where(users.c.id == user_id)).first()
        return self._user(row) if row else None

    def set_password_hash(self, user_id: int, password_hash: str) -> None:
        self.conn.execute(users.update().where(users.c.id == user_id).values(password_hash=password_hash))

    def set_active(self, user_id: int, active: bool) -> None:
        self.conn.execute(users.update().where(users.c.id == user_id).values(active=active))

    def list_users(self) -> list[User]:
        rows = self.conn.execute(self._user_query().order_by(users.c.id)).all()
        return [self._user(r) for r in rows]

    def count_admins(self) -> int:
        q = sa.select(sa.func.count()).select_from(users).where(users.c.role == "admin", users.c.active)
        return int(self.conn.execute(q).scalar_one())

    # credentials (only hashes are stored)

    def add_token(
        self, user_id: int, token_sha256: str, label: str, now: datetime, expires_at: datetime | None = None
    ) -> int:
        return int(
            _pk(
                self.conn.execute(
                    api_tokens.insert().values(
                        user_id=user_id,
                        token_sha256=token_sha256,
                        label=label,
                        created_at=now,
                        expires_at=expires_at,
                    )
                )
            )
        )

    def revoke_tokens(self, user_id: int, now: datetime) -> int:
        res = self.conn.execute(
            api_tokens.update()
            .where(api_tokens.c.user_id == user_id, api_tokens.c.revoked_at.is_(None))
            .values(revoked_at=now)
        )
        return int(res.rowcount)

    def user_by_token(self, token_sha256: str) -> User | None:
        q = (
            self._user_query()
            .join(api_tokens, api_tokens.c.user_id == users.c.id)
            .where(api_tokens.c.token_sha256 == token_sha256, api_tokens.c.revoked_at.is_(None))
        )
        row = self.conn.execute(q).first()
        return self._user(row) if row else None

    def add_session(self, token_sha256: str, user_id: int, now: datetime, expires_at: datetime) -> None:
        self.conn.execute(
            sessions.insert().values(
                token_sha256=token_sha256, user_id=user_id, created_at=now, expires_at=expires_at
            )
        )

    def user_by_session(self, token_sha256: str, now: datetime) -> User | None:
        q = (
            self._user_query()
            .join(sessions, sessions.c.user_id == users.c.id)
            .where(sessions.c.token_sha256 == token_sha256, sessions.c.expires_at > now)
        )
        row = self.conn.execute(q).first()
        return self._user(row) if row else None

    def delete_session(self, token_sha256: str, now: datetime) -> None:
        self.conn.execute(
            sessions.delete().where(
                sa.or_(sessions.c.token_sha256 == token_sha256, sessions.c.expires_at <= now)
            )
        )

    # plans (immutable: inserted, never updated)

    def insert_plan(self, new: NewPlan) -> None:
        """Insert a plan and its searchable codes. Raises UniqueViolation (transaction intact)."""
        values = {col.name: getattr(new, col.name) for col in plans.columns}
        try:
            with self.conn.begin_nested():  # parameters, not .values(): one cached compiled INSERT
                self.conn.execute(plans.insert(), values)
        except IntegrityError:
            raise UniqueViolation("plan insert conflicts with an existing plan") from None
        if new.codes:
            self.conn.execute(
                plan_codes.insert(), [{"plan_id": new.id, "code": c, "kind": k} for c, k in new.codes]
            )
        self.conn.execute(
            plan_patients.insert().values(plan_id=new.id, org_id=new.org_id, **self._patient_index(new))
        )

    def _patient_index(self, new: NewPlan) -> dict[str, Any]:
        """The worklist's row for this plan's patient (api.vault.SealedTx seals it)."""
        return {
            "patient_ref": new.patient_ref,
            "patient_name": new.patient_name,
            "search_text": patient_search_text(new.patient_name, new.patient_ref),
        }

    def _patient_terms(self, org_id: int, text: str) -> list[str]:
        """What a worklist search looks for in search_text (every term must be found)."""
        return [text]

    def _plan_query(self) -> sa.Select[Any]:
        nxt = plans.alias("nxt")
        return (
            sa.select(plans, users.c.email.label("author_email"), nxt.c.id.label("next_id"))
            .join(users, users.c.id == plans.c.author_id)
            .outerjoin(nxt, nxt.c.previous_id == plans.c.id)
        )

    @staticmethod
    def _plan(row: Any) -> PlanRecord:
        return PlanRecord(
            id=row.id,
            version=row.version,
            previous_id=row.previous_id,
            root_id=row.root_id,
            org_id=row.org_id,
            author_id=row.author_id,
            author_email=row.author_email,
            created_at=row.created_at,
            intake_json=row.intake_json,
            intake_sha256=row.intake_sha256,
            ruleset_id=row.ruleset_id,
            ruleset_version=row.ruleset_version,
            ruleset_sha256=row.ruleset_sha256,
            plan_json=row.plan_json,
            level_of_care=row.level_of_care,
            idempotency_key=row.idempotency_key,
            request_sha256=row.request_sha256,
            next_id=row.next_id,
        )

    def get_plan(self, plan_id: str, org_id: int) -> PlanRecord | None:
        """The plan if it belongs to ``org_id``; None for unknown ids and other organisations."""
        row = self.conn.execute(
            self._plan_query().where(plans.c.id == plan_id, plans.c.org_id == org_id)
        ).first()
        return self._plan(row) if row else None

    def plan_org(self, plan_id: str) -> int | None:
        """Which organisation a plan id belongs to (for the audit trail only, never for replies)."""
        return self.conn.execute(sa.select(plans.c.org_id).where(plans.c.id == plan_id)).scalar()

    def plan_by_idempotency_key(self, author_id: int, key: str) -> PlanRecord | None:
        row = self.conn.execute(
            self._plan_query().where(plans.c.author_id == author_id, plans.c.idempotency_key == key)
        ).first()
        return self._plan(row) if row else None

    def count_plans(self, **where: Any) -> int:
        q = sa.select(sa.func.count()).select_from(plans)
        for col, value in where.items():
            q = q.where(plans.c[col] == value)
        return int(self.conn.execute(q).scalar_one())

    def plan_codes_of(self, plan_id: str) -> set[tuple[str, str]]:
        rows = self.conn.execute(
            sa.select(plan_codes.c.code, plan_codes.c.kind).where(plan_codes.c.plan_id == plan_id)
        ).all()
        return {(r.code, r.kind) for r in rows}

    def list_plans(
        self, org_id: int, flt: PlanFilter, limit: int, cursor: str | None = None
    ) -> tuple[list[PlanSummary], str | None]:
        """One page, newest first; the cursor is opaque (created_at + id of the last row)."""
        nxt = plans.alias("nxt")
        author = users.alias("author")
        signer = users.alias("signer")
        q = (
            sa.select(
                plans.c.id,
                plans.c.version,
                plans.c.previous_id,
                nxt.c.id.label("next_id"),
                plans.c.created_at,
                plans.c.assessment_date,
                plans.c.jurisdiction,
                plans.c.level_of_care,
                plans.c.ruleset_id,
                plans.c.ruleset_version,
                plans.c.author_id,
                author.c.email.label("author_email"),
                signatures.c.signed_at,
                signer.c.email.label("signer_email"),
                plan_patients.c.patient_ref,
                plan_patients.c.patient_name,
            )
            .outerjoin(nxt, nxt.c.previous_id == plans.c.id)
            .join(author, author.c.id == plans.c.author_id)
            .outerjoin(signatures, signatures.c.plan_id == plans.c.id)
            .outerjoin(signer, signer.c.id == signatures.c.signer_id)
            .outerjoin(plan_patients, plan_patients.c.plan_id == plans.c.id)
            .where(plans.c.org_id == org_id)
        )
        terms = self._patient_terms(org_id, flt.patient) if flt.patient else []
        for condition in _plan_conditions(flt, nxt, terms):
            q = q.where(condition)
        if cursor is not None:
            at, last_id = _decode_cursor(cursor)
            q = q.where(
                sa.or_(plans.c.created_at < at, sa.and_(plans.c.created_at == at, plans.c.id < last_id))
            )
        q = q.order_by(plans.c.created_at.desc(), plans.c.id.desc()).limit(limit + 1)
        found = self.conn.execute(q).all()
        more, rows = len(found) > limit, found[:limit]
        alerts = self._alerts_of([r.id for r in rows])
        items = [
            PlanSummary(
                id=r.id,
                version=r.version,
                previous_id=r.previous_id,
                next_id=r.next_id,
                created_at=r.created_at,
                assessment_date=_as_date(r.assessment_date),
                jurisdiction=r.jurisdiction,
                level_of_care=r.level_of_care,
                ruleset_id=r.ruleset_id,
                ruleset_version=r.ruleset_version,
                author_id=r.author_id,
                author_email=r.author_email,
                status="signed" if r.signed_at is not None else "draft",
                signed_at=r.signed_at,
                signer_email=r.signer_email,
                patient_ref=r.patient_ref,
                patient_name=r.patient_name,
                alerts=alerts.get(r.id, ()),
            )
            for r in rows
        ]
        return items, (_encode_cursor(items[-1].created_at, items[-1].id) if more and items else None)

    def _alerts_of(self, plan_ids: list[str]) -> dict[str, tuple[str, ...]]:
        if not plan_ids:
            return {}
        rows = self.conn.execute(
            sa.select(plan_codes.c.plan_id, plan_codes.c.code)
            .where(plan_codes.c.plan_id.in_(plan_ids), plan_codes.c.kind == "alert")
            .order_by(plan_codes.c.code)
        ).all()
        found: dict[str, list[str]] = {}
        for r in rows:
            found.setdefault(r.plan_id, []).append(r.code)
        return {k: tuple(v) for k, v in found.items()}

    # overrides (append-only)

    def insert_override(self, new: NewOverride) -> OverrideRecord:
        """Append a decision. Only disagreements made by hand (modify, decline and the older
        edit/override) count in the per-rule summary; accepted and carried-over rows do not."""
        oid = int(
            _pk(
                self.conn.execute(
                    overrides.insert().values(
                        plan_id=new.plan_id,
                        org_id=new.org_id,
                        author_id=new.author_id,
                        created_at=new.created_at,
                        section=new.section,
                        code=new.code,
                        action=new.action,
                        reason=new.reason,
                        replacement_text=new.replacement_text,
                        replacement_kind=new.replacement_kind,
                        rule_ids=json.dumps(list(new.rule_ids)),
                        dose=new.dose,
                        basis_sha256=new.basis_sha256,
                        carried_from=new.carried_from,
                    )
                )
            )
        )
        counted = new.action in _DISAGREEMENTS and new.carried_from is None
        if new.rule_ids and counted:
            self.conn.execute(
                override_rules.insert(),
                [
                    {
                        "override_id": oid,
                        "rule_id": rid,
                        "org_id": new.org_id,
                        "plan_id": new.plan_id,
                        "action": new.action,
                        "code": new.code,
                        "created_at": new.created_at,
                    }
                    for rid in sorted(set(new.rule_ids))
                ],
            )
        return self._override_record(oid, new)

    @staticmethod
    def _override_record(oid: int, r: Any, author_email: str | None = None) -> OverrideRecord:
        rule_ids = r.rule_ids if isinstance(r.rule_ids, tuple) else tuple(json.loads(r.rule_ids))
        return OverrideRecord(
            id=oid,
            plan_id=r.plan_id,
            author_id=r.author_id,
            created_at=r.created_at,
            section=r.section,
            code=r.code,
            action=r.action,
            reason=r.reason,
            replacement_text=r.replacement_text,
            replacement_kind=r.replacement_kind,
            rule_ids=rule_ids,
            dose=r.dose,
            basis_sha256=r.basis_sha256,
            carried_from=r.carried_from,
            author_email=author_email,
        )

    def overrides_of(self, plan_id: str) -> list[OverrideRecord]:
        rows = self.conn.execute(
            sa.select(overrides, users.c.email.label("author_email"))
            .join(users, users.c.id == overrides.c.author_id)
            .where(overrides.c.plan_id == plan_id)
            .order_by(overrides.c.id)
        ).all()
        return [self._override_record(r.id, r, r.author_email) for r in rows]

    # sign-off and comments (append-only; migration 0002)

    def insert_signature(self, new: NewSignature) -> None:
        """Raises UniqueViolation when the version is already signed (transaction intact)."""
        try:
            with self.conn.begin_nested():
                self.conn.execute(signatures.insert().values(**new.__dict__))
        except IntegrityError:
            raise UniqueViolation("this plan version is already signed") from None

    def signature_of(self, plan_id: str) -> SignatureRecord | None:
        row = self.conn.execute(
            sa.select(signatures, users.c.email.label("signer_email"))
            .join(users, users.c.id == signatures.c.signer_id)
            .where(signatures.c.plan_id == plan_id)
        ).first()
        if row is None:
            return None
        return SignatureRecord(
            plan_id=row.plan_id,
            signer_id=row.signer_id,
            signer_email=row.signer_email,
            signed_at=row.signed_at,
            signer_name=row.signer_name,
            credentials=row.credentials,
            content_sha256=row.content_sha256,
        )

    def insert_comment(self, new: NewComment) -> int:
        return _pk(self.conn.execute(comments.insert().values(**new.__dict__)))

    def comments_of(self, plan_id: str) -> list[CommentRecord]:
        rows = self.conn.execute(
            sa.select(comments, users.c.email, users.c.role)
            .join(users, users.c.id == comments.c.author_id)
            .where(comments.c.plan_id == plan_id)
            .order_by(comments.c.id)
        ).all()
        return [
            CommentRecord(r.id, r.plan_id, r.author_id, r.email, r.role, r.created_at, r.text, r.code)
            for r in rows
        ]

    def override_counts(
        self, org_id: int, since: datetime | None = None, before: datetime | None = None
    ) -> list[OverrideCount]:
        o = override_rules
        cond = [o.c.org_id == org_id]
        if since is not None:
            cond.append(o.c.created_at >= since)
        if before is not None:
            cond.append(o.c.created_at < before)
        rows = self.conn.execute(
            sa.select(
                o.c.rule_id,
                o.c.action,
                o.c.code,
                sa.func.count().label("n"),
            )
            .where(*cond)
            .group_by(o.c.rule_id, o.c.action, o.c.code)
        ).all()
        plan_counts: dict[str, int] = dict(
            self.conn.execute(
                sa.select(o.c.rule_id, sa.func.count(sa.distinct(o.c.plan_id)))
                .where(*cond)
                .group_by(o.c.rule_id)
            ).all()
        )
        acc: dict[str, dict[str, Any]] = {}
        for r in rows:
            a = acc.setdefault(r.rule_id, {"n": 0, "by_action": {}, "codes": set()})
            a["n"] += int(r.n)
            a["by_action"][r.action] = a["by_action"].get(r.action, 0) + int(r.n)
            a["codes"].add(r.code)
        out = [
            OverrideCount(
                rule_id=rid,
                overrides=a["n"],
                plans=int(plan_counts.get(rid, 0)),
                by_action=dict(sorted(a["by_action"].items())),
                codes=tuple(sorted(a["codes"])),
            )
            for rid, a in acc.items()
        ]
        return sorted(out, key=lambda c: (-c.overrides, c.rule_id))

    # audit (append-only, hash-chained; audit_head serialises appends)

    def lock_audit_head(self) -> tuple[int, str]:
        """The last (seq, hash), locked until this transaction ends."""
        row = self.conn.execute(
            sa.select(audit_head.c.seq, audit_head.c.hash).where(audit_head.c.id == 1).with_for_update()
        ).first()
        if row is None:
            raise RuntimeError("audit_head is missing: run the migrations")
        return int(row.seq), str(row.hash)

    def append_audit(self, entry: AuditEntry) -> None:
        self.conn.execute(
            audit_log.insert().values(
                seq=entry.seq,
                at=entry.at,
                request_id=entry.request_id,
                actor_id=entry.actor_id,
                org_id=entry.org_id,
                plan_id=entry.plan_id,
                action=entry.action,
                outcome=entry.outcome,
                prev_hash=entry.prev_hash,
                hash=entry.hash,
                v=entry.v,
                address=entry.address,
                detail=entry.detail,
                content_mac=entry.content_mac,
            )
        )
        self.conn.execute(
            audit_head.update().where(audit_head.c.id == 1).values(seq=entry.seq, hash=entry.hash)
        )

    def audit_entries(self, after_seq: int = 0, batch: int = 1000) -> Iterator[AuditEntry]:
        last = after_seq
        while True:
            rows = self.conn.execute(
                sa.select(audit_log).where(audit_log.c.seq > last).order_by(audit_log.c.seq).limit(batch)
            ).all()
            if not rows:
                return
            for r in rows:
                yield AuditEntry(
                    seq=int(r.seq),
                    at=r.at,
                    request_id=r.request_id,
                    actor_id=r.actor_id,
                    org_id=r.org_id,
                    plan_id=r.plan_id,
                    action=r.action,
                    outcome=r.outcome,
                    prev_hash=r.prev_hash,
                    hash=r.hash,
                    v=int(r.v),
                    address=r.address,
                    detail=r.detail,
                    content_mac=r.content_mac,
                )
            last = int(rows[-1].seq)

    def audit_head(self) -> tuple[int, str]:
        row = self.conn.execute(sa.select(audit_head.c.seq, audit_head.c.hash)).first()
        return (int(row.seq), str(row.hash)) if row else (0, GENESIS_HASH)

    # CDS Hooks: cards shown, feedback, JWT ids seen, form prefills (migration 0003)

    def insert_cds_cards(self, cards: list[NewCdsCard]) -> None:
        if not cards:
            return
        self.conn.execute(
            cds_cards.insert(),
            [
                {
                    "card_uuid": c.card_uuid,
                    "org_id": c.org_id,
                    "service_id": c.service_id,
                    "hook_instance": c.hook_instance,
                    "kind": c.kind,
                    "code": c.code,
                    "suggestions": json.dumps(list(c.suggestions)),
                    "ruleset_id": c.ruleset_id,
                    "ruleset_version": c.ruleset_version,
                    "issued_at": c.issued_at,
                }
                for c in cards
            ],
        )
        rules = [{"card_uuid": c.card_uuid, "rule_id": r} for c in cards for r in sorted(set(c.rule_ids))]
        if rules:
            self.conn.execute(cds_card_rules.insert(), rules)

    def cds_card(self, card_uuid: str, org_id: int) -> CdsCardRecord | None:
        """The card if it was shown to ``org_id`` (None for unknown cards and other organisations)."""
        row = self.conn.execute(
            sa.select(cds_cards).where(cds_cards.c.card_uuid == card_uuid, cds_cards.c.org_id == org_id)
        ).first()
        if row is None:
            return None
        rule_ids = self.conn.execute(
            sa.select(cds_card_rules.c.rule_id).where(cds_card_rules.c.card_uuid == card_uuid)
        ).scalars()
        return CdsCardRecord(
            card_uuid=row.card_uuid,
            org_id=row.org_id,
            service_id=row.service_id,
            hook_instance=row.hook_instance,
            kind=row.kind,
            code=row.code,
            rule_ids=tuple(sorted(rule_ids)),
            suggestions=tuple(json.loads(row.suggestions)),
            ruleset_id=row.ruleset_id,
            ruleset_version=row.ruleset_version,
            issued_at=row.issued_at,
        )

    def insert_feedback(self, fb: NewFeedback) -> int:
        return _pk(
            self.conn.execute(
                cds_feedback.insert().values(
                    card_uuid=fb.card_uuid,
                    org_id=fb.org_id,
                    outcome=fb.outcome,
                    reason_system=fb.reason_system,
                    reason_code=fb.reason_code,
                    reason_display=fb.reason_display,
                    has_comment=fb.has_comment,
                    accepted_suggestions=json.dumps(list(fb.accepted_suggestions)),
                    outcome_at=fb.outcome_at,
                    received_at=fb.received_at,
                    actor_id=fb.actor_id,
                    client=fb.client,
                )
            )
        )

    def feedback_stats(
        self,
        org_id: int | None,
        since: datetime | None,
        before: datetime | None,
        bucket: str = "month",
    ) -> list[FeedbackStat]:
        """Per rule and period (``month`` | ``week`` | ``all``): cards shown, accepted, overridden
        and the override reasons given. ``org_id`` None: every organisation (command line)."""

        def where(col: Any, org_col: Any) -> list[Any]:
            cond = [] if org_id is None else [org_col == org_id]
            if since is not None:
                cond.append(col >= since)
            if before is not None:
                cond.append(col < before)
            return cond

        shown = self.conn.execute(
            sa.select(cds_card_rules.c.rule_id, cds_cards.c.issued_at)
            .join(cds_cards, cds_cards.c.card_uuid == cds_card_rules.c.card_uuid)
            .where(*where(cds_cards.c.issued_at, cds_cards.c.org_id))
        ).all()
        answers = self.conn.execute(
            sa.select(
                cds_card_rules.c.rule_id,
                cds_feedback.c.outcome,
                cds_feedback.c.reason_code,
                cds_feedback.c.reason_display,
                cds_feedback.c.outcome_at,
            )
            .join(cds_card_rules, cds_card_rules.c.card_uuid == cds_feedback.c.card_uuid)
            .where(*where(cds_feedback.c.outcome_at, cds_feedback.c.org_id))
        ).all()
        acc: dict[tuple[str, str], dict[str, Any]] = {}

        def slot(rule_id: str, at: datetime) -> dict[str, Any]:
            key = (rule_id, _period(at, bucket))
            return acc.setdefault(key, {"cards": 0, "accepted": 0, "overridden": 0, "reasons": {}})

        for r in shown:
            slot(r.rule_id, r.issued_at)["cards"] += 1
        for r in answers:
            s = slot(r.rule_id, r.outcome_at)
            s[r.outcome] += 1
            if r.outcome == "overridden":
                reason = r.reason_display or r.reason_code or "(no reason given)"
                s["reasons"][reason] = s["reasons"].get(reason, 0) + 1
        return [
            FeedbackStat(rule_id=k[0], period=k[1], **v)
            for k, v in sorted(acc.items(), key=lambda kv: (kv[0][1], kv[0][0]))
        ]

    def use_jwt_id(self, issuer: str, jti: str, expires_at: datetime, now: datetime) -> bool:
        """Record a JWT id; False if it was seen before (a replay). Expired ids are forgotten."""
        self.conn.execute(cds_jwt_ids.delete().where(cds_jwt_ids.c.expires_at < now))
        try:
            with self.conn.begin_nested():
                self.conn.execute(cds_jwt_ids.insert().values(issuer=issuer, jti=jti, expires_at=expires_at))
        except IntegrityError:
            return False
        return True

    def insert_prefill(self, token_sha256: str, prefill: Prefill, now: datetime) -> None:
        self.conn.execute(cds_prefills.delete().where(cds_prefills.c.expires_at < now))
        self.conn.execute(
            cds_prefills.insert().values(
                token_sha256=token_sha256,
                org_id=prefill.org_id,
                created_at=now,
                expires_at=prefill.expires_at,
                intake_json=prefill.intake_json,
                readings_json=prefill.readings_json,
            )
        )

    def prefill(self, token_sha256: str, org_id: int, now: datetime) -> Prefill | None:
        row = self.conn.execute(
            sa.select(cds_prefills).where(
                cds_prefills.c.token_sha256 == token_sha256,
                cds_prefills.c.org_id == org_id,
                cds_prefills.c.expires_at > now,
            )
        ).first()
        if row is None:
            return None
        return Prefill(row.org_id, row.intake_json, row.readings_json, row.expires_at)

    def audit_rows_of_plans(self, plan_ids: list[str], actions: tuple[str, ...]) -> list[AuditEntry]:
        """Audit rows about these plans with one of these actions, oldest first."""
        if not plan_ids:
            return []
        rows = self.conn.execute(
            sa.select(audit_log)
            .where(audit_log.c.plan_id.in_(plan_ids), audit_log.c.action.in_(actions))
            .order_by(audit_log.c.seq)
        ).all()
        return [
            AuditEntry(
                int(r.seq),
                r.at,
                r.request_id,
                r.actor_id,
                r.org_id,
                r.plan_id,
                r.action,
                r.outcome,
                r.prev_hash,
                r.hash,
                int(r.v),
                r.address,
                r.detail,
                r.content_mac,
            )
            for r in rows
        ]

    # -- 0004 hardening: primitives for api.vault, api.audit, api.throttle, api.tokens, api.part2 --

    def add_content_key(self, owner_id: str, kek_id: str, wrapped: str) -> None:
        self.conn.execute(content_keys.insert().values(owner_id=owner_id, kek_id=kek_id, wrapped=wrapped))

    def content_key(self, owner_id: str) -> tuple[str, str] | None:
        row = self.conn.execute(
            sa.select(content_keys.c.kek_id, content_keys.c.wrapped).where(
                content_keys.c.owner_id == owner_id
            )
        ).first()
        return (str(row.kek_id), str(row.wrapped)) if row else None

    def content_keys_not_under(self, kek_id: str, limit: int = 500) -> list[tuple[str, str, str]]:
        rows = self.conn.execute(
            sa.select(content_keys.c.owner_id, content_keys.c.kek_id, content_keys.c.wrapped)
            .where(content_keys.c.kek_id != kek_id)
            .order_by(content_keys.c.owner_id)
            .limit(limit)
        ).all()
        return [(str(r.owner_id), str(r.kek_id), str(r.wrapped)) for r in rows]

    def rewrap_content_key(self, owner_id: str, kek_id: str, wrapped: str) -> None:
        self.conn.execute(
            content_keys.update()
            .where(content_keys.c.owner_id == owner_id)
            .values(kek_id=kek_id, wrapped=wrapped)
        )

    def count_content_keys(self) -> dict[str, int]:
        rows = self.conn.execute(
            sa.select(content_keys.c.kek_id, sa.func.count()).group_by(content_keys.c.kek_id)
        ).all()
        return {str(k): int(n) for k, n in rows}

    def add_plan_subject(self, plan_id: str, org_id: int, patient_key: str) -> None:
        self.conn.execute(
            plan_subjects.insert().values(plan_id=plan_id, org_id=org_id, patient_key=patient_key)
        )

    def plans_of_patient(self, org_id: int, patient_key: str) -> list[str]:
        rows = self.conn.execute(
            sa.select(plan_subjects.c.plan_id)
            .where(plan_subjects.c.org_id == org_id, plan_subjects.c.patient_key == patient_key)
            .order_by(plan_subjects.c.plan_id)
        ).all()
        return [str(r.plan_id) for r in rows]

    def patient_of_plan(self, plan_id: str) -> tuple[int, str] | None:
        row = self.conn.execute(
            sa.select(plan_subjects.c.org_id, plan_subjects.c.patient_key).where(
                plan_subjects.c.plan_id == plan_id
            )
        ).first()
        return (int(row.org_id), str(row.patient_key)) if row else None

    def all_plan_records(self, batch: int = 200) -> Iterator[PlanRecord]:
        """Every stored plan, in id order (audit verification)."""
        last = ""
        while True:
            rows = self.conn.execute(
                self._plan_query().where(plans.c.id > last).order_by(plans.c.id).limit(batch)
            ).all()
            if not rows:
                return
            for r in rows:
                yield self._plan(r)
            last = str(rows[-1].id)

    def all_overrides(self) -> Iterator[OverrideRecord]:
        """Every override, plan by plan, oldest first within a plan (audit verification)."""
        pids = self.conn.execute(sa.select(overrides.c.plan_id).distinct().order_by(overrides.c.plan_id))
        for pid in pids.scalars().all():
            yield from self.overrides_of(str(pid))

    def add_consent(self, values: dict[str, Any]) -> int:
        return _pk(self.conn.execute(consents.insert().values(**values)))

    def consents_of(self, org_id: int, patient_key: str) -> list[dict[str, Any]]:
        rows = self.conn.execute(
            sa.select(consents)
            .where(consents.c.org_id == org_id, consents.c.patient_key == patient_key)
            .order_by(consents.c.id)
        ).all()
        return [dict(r._mapping) for r in rows]

    def consent(self, consent_id: int, org_id: int) -> dict[str, Any] | None:
        row = self.conn.execute(
            sa.select(consents).where(consents.c.id == consent_id, consents.c.org_id == org_id)
        ).first()
        return dict(row._mapping) if row else None

    def revoke_consent(self, consent_id: int, org_id: int, user_id: int, now: datetime) -> int:
        res = self.conn.execute(
            consents.update()
            .where(consents.c.id == consent_id, consents.c.org_id == org_id, consents.c.revoked_at.is_(None))
            .values(revoked_at=now, revoked_by=user_id)
        )
        return int(res.rowcount)

    def add_disclosure(self, values: dict[str, Any]) -> int:
        return _pk(self.conn.execute(disclosures.insert().values(**values)))

    def disclosures_of(self, org_id: int, patient_key: str) -> list[dict[str, Any]]:
        rows = self.conn.execute(
            sa.select(disclosures)
            .where(disclosures.c.org_id == org_id, disclosures.c.patient_key == patient_key)
            .order_by(disclosures.c.id)
        ).all()
        return [dict(r._mapping) for r in rows]

    def user_emails(self, user_ids: set[int]) -> dict[int, str]:
        if not user_ids:
            return {}
        rows = self.conn.execute(sa.select(users.c.id, users.c.email).where(users.c.id.in_(user_ids))).all()
        return {int(r.id): str(r.email) for r in rows}

    def login_failure(self, account_key: str) -> tuple[int, int, datetime | None] | None:
        row = self.conn.execute(
            sa.select(login_failures).where(login_failures.c.account_key == account_key)
        ).first()
        return (int(row.failures), int(row.lockouts), row.locked_until) if row else None

    def put_login_failure(
        self, account_key: str, failures: int, lockouts: int, locked_until: datetime | None, now: datetime
    ) -> None:
        values = {"failures": failures, "lockouts": lockouts, "locked_until": locked_until, "last_at": now}
        res = self.conn.execute(
            login_failures.update().where(login_failures.c.account_key == account_key).values(**values)
        )
        if res.rowcount == 0:
            self.conn.execute(login_failures.insert().values(account_key=account_key, **values))

    def clear_login_failures(self, account_key: str) -> None:
        self.conn.execute(login_failures.delete().where(login_failures.c.account_key == account_key))

    def user_by_live_token(self, token_sha256: str, now: datetime, max_age: timedelta) -> User | None:
        """Like user_by_token, and the token has not expired (NULL expiry: created + max_age)."""
        t = api_tokens
        live = sa.or_(t.c.expires_at > now, sa.and_(t.c.expires_at.is_(None), t.c.created_at > now - max_age))
        q = (
            self._user_query()
            .join(t, t.c.user_id == users.c.id)
            .where(t.c.token_sha256 == token_sha256, t.c.revoked_at.is_(None), live)
        )
        row = self.conn.execute(q).first()
        return self._user(row) if row else None

    def tokens_of(self, org_id: int, user_id: int | None) -> list[dict[str, Any]]:
        """Token metadata (never the token): one user's, or (user_id None) the organisation's."""
        t = api_tokens
        q = (
            sa.select(
                t.c.id, t.c.user_id, users.c.email, t.c.label, t.c.created_at, t.c.expires_at, t.c.revoked_at
            )
            .join(users, users.c.id == t.c.user_id)
            .where(users.c.org_id == org_id)
            .order_by(t.c.id)
        )
        if user_id is not None:
            q = q.where(t.c.user_id == user_id)
        return [dict(r._mapping) for r in self.conn.execute(q).all()]

    def revoke_token(self, token_id: int, org_id: int, user_id: int | None, now: datetime) -> int:
        """Revoke one token of the organisation (and of ``user_id`` unless None)."""
        t = api_tokens
        owners = sa.select(users.c.id).where(users.c.org_id == org_id)
        if user_id is not None:
            owners = owners.where(users.c.id == user_id)
        res = self.conn.execute(
            t.update()
            .where(t.c.id == token_id, t.c.user_id.in_(owners), t.c.revoked_at.is_(None))
            .values(revoked_at=now)
        )
        return int(res.rowcount)

    def totp_of(self, user_id: int) -> tuple[str | None, bool, int | None]:
        row = self.conn.execute(
            sa.select(users.c.totp_secret, users.c.totp_enabled, users.c.totp_last_step).where(
                users.c.id == user_id
            )
        ).first()
        if row is None:
            return None, False, None
        return row.totp_secret, bool(row.totp_enabled), row.totp_last_step

    def set_totp(self, user_id: int, secret: str | None, enabled: bool, last_step: int | None = None) -> None:
        self.conn.execute(
            users.update()
            .where(users.c.id == user_id)
            .values(totp_secret=secret, totp_enabled=enabled, totp_last_step=last_step)
        )

    def use_totp_step(self, user_id: int, step: int) -> bool:
        """Record a used TOTP time step; False if it (or a later one) was used already (replay)."""
        res = self.conn.execute(
            users.update()
            .where(
                users.c.id == user_id,
                sa.or_(users.c.totp_last_step.is_(None), users.c.totp_last_step < step),
            )
            .values(totp_last_step=step)
        )
        return bool(res.rowcount)

    def probe_write_lock(self) -> None:
        """Readiness: take the write lock (SQLite) or touch the audit head (PostgreSQL)."""
        self.conn.execute(sa.select(audit_head.c.seq).where(audit_head.c.id == 1)).first()


def patient_search_text(name: str | None, ref: str | None) -> str:
    """What the worklist search matches: name and MRN, case-folded (migration 0002 does the same)."""
    return "\n".join(v.casefold() for v in (name, ref) if v)


def _like(text: str) -> str:
    escaped = text.casefold().replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return f"%{escaped}%"


def _plan_conditions(flt: PlanFilter, nxt: Any, patient_terms: list[str]) -> list[Any]:
    """WHERE clauses of the plan list (metadata filters, status, patient search)."""
    found: list[Any] = []
    if flt.created_from is not None:
        found.append(plans.c.created_at >= flt.created_from)
    if flt.created_before is not None:
        found.append(plans.c.created_at < flt.created_before)
    if flt.level_of_care is not None:
        found.append(plans.c.level_of_care == flt.level_of_care)
    if flt.author_id is not None:
        found.append(plans.c.author_id == flt.author_id)
    if not flt.include_superseded:
        found.append(nxt.c.id.is_(None))
    if flt.code is not None:
        sub = sa.select(plan_codes.c.plan_id).where(
            plan_codes.c.plan_id == plans.c.id, plan_codes.c.code == flt.code
        )
        if flt.kind is not None:
            sub = sub.where(plan_codes.c.kind == flt.kind)
        found.append(sub.exists())
    if flt.status == "signed":
        found.append(signatures.c.plan_id.is_not(None))
    elif flt.status == "draft":
        found.append(signatures.c.plan_id.is_(None))
    for term in patient_terms:
        found.append(plan_patients.c.search_text.like(_like(term), escape="\\"))
    return found


def _pk(result: Any) -> int:
    key = result.inserted_primary_key
    if key is None:
        raise RuntimeError("insert returned no primary key")
    return int(key[0])


def _ignorable_drift(diff: Any) -> bool:
    # Alembic's own bookkeeping table is not part of the model.
    return isinstance(diff, tuple) and diff[0] == "remove_table" and diff[1].name == "alembic_version"


def _period(at: datetime, bucket: str) -> str:
    """The reporting period of a moment: '2026-01' (month), '2026-W02' (ISO week) or 'all'."""
    if bucket == "all":
        return "all"
    at = at.astimezone(UTC)
    if bucket == "week":
        year, week, _ = at.isocalendar()
        return f"{year}-W{week:02d}"
    return f"{at.year}-{at.month:02d}"


def _as_date(value: Any) -> date:
    return value if isinstance(value, date) else date.fromisoformat(str(value))


def _encode_cursor(at: datetime, plan_id: str) -> str:
    raw = json.dumps([at.astimezone(UTC).isoformat(), plan_id]).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _decode_cursor(cursor: str) -> tuple[datetime, str]:
    """Raises ValueError for anything that is not a cursor this module made."""
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        at, plan_id = json.loads(raw)
        parsed = datetime.fromisoformat(at)
        if parsed.tzinfo is None or not isinstance(plan_id, str):
            raise ValueError
        return parsed, plan_id
    except Exception:
        raise ValueError("not a valid cursor") from None
