"""The audit trail: one append-only, keyed-hash-chained row per read or write of patient data.

Each row records who (user id, organisation, client address), when, which plan, the action,
the outcome and the request id; never patient data.

Tamper evidence that survives someone who can write to the database (docs/security.md):

- **Keyed chain.** Row ``n`` stores ``hash_n = HMAC(chain key, hash_{n-1} + canonical(row_n))``
  (``v = 2``). The key comes from ``CAREPATH_AUDIT_KEY`` or ``data_dir/audit.key`` (api.keys),
  never from the database, so editing a row and re-hashing the chain after it is detected.
  Rows written before 0004 (``v = 1``, plain SHA-256) are accepted only as a prefix.
- **Content in the chain.** The row that stores a plan (``plan.create``, ``plan.reevaluate``)
  or an override (``plan.override``) carries ``content_mac``, a keyed hash of what was stored;
  ``audit verify`` recomputes it from the stored (decrypted) row, so an edited or deleted plan
  or override, or one inserted without its audit row, is caught.
- **Signed checkpoints** of the head (seq, hash), Ed25519-signed, appended at most every
  ``audit_checkpoint_interval_s`` to a file outside the database (and syslog, if set). A
  truncated tail with the head row rewound to match is caught: a checkpoint names a row that
  is no longer there, or whose hash differs.

Concurrency: a write's audit row is appended in the SAME transaction as the write, and the
head row is locked as late as possible (after the plan is inserted and its content hashed),
so writers queue only for the append itself. A read, a refusal or an anonymous attempt goes
through ``record_event``: group commit on a background thread (one transaction, one head
lock, one fsync for every row waiting), and the caller waits until its row is durable, so
readers never take a write lock themselves and a failed audit write still fails the request.

Actions: ``plan.create``, ``plan.reevaluate``, ``plan.read``, ``plan.report_html``,
``plan.report_pdf``, ``plan.list``, ``plan.override``, ``auth.login``, ``auth.logout``,
``auth.lockout``, ``token.*``, ``mfa.*``, ``consent.*``, ``disclosure.*``,
``audit.anonymous_summary`` (adapters add theirs, e.g. ``plan.fhir``). Outcomes: ``ok``,
``replayed``, ``invalid``, ``refused``, ``conflict``, ``unauthenticated``, ``denied``,
``locked``, ``not_found``, ``other_org``, ``error``.
"""

from __future__ import annotations

import base64
import contextvars
import hashlib
import hmac
import json
import logging
import logging.handlers
import os
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import Future
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol

from cryptography.exceptions import InvalidSignature

from carepath.api.db import GENESIS_HASH, Database, Tx
from carepath.api.keys import AuditKeys
from carepath.api.records import AuditEntry, OverrideRecord, PlanRecord, is_plan_id

__all__ = [
    "AuditEvent",
    "AuditSink",
    "ChainedAuditSink",
    "AuditWriteError",
    "CheckpointLog",
    "VerifyResult",
    "address_var",
    "canonical_row",
    "chain_hash",
    "record_event",
    "plan_mac",
    "override_mac",
    "verify_chain",
]

log = logging.getLogger("carepath.audit")

address_var: contextvars.ContextVar[str | None] = contextvars.ContextVar(
    "carepath_client_address", default=None
)
"""The client address of the current request (set by api.guard); every audit row takes it."""

CONTENT_ACTIONS = frozenset({"plan.create", "plan.reevaluate"})
OVERRIDE_ACTION = "plan.override"
BATCH_MAX = 256


class AuditWriteError(Exception):
    """The audit row could not be written: the request must fail (fail closed)."""


@dataclass(frozen=True)
class AuditEvent:
    action: str
    outcome: str
    request_id: str
    actor_id: int | None = None
    org_id: int | None = None
    plan_id: str | None = None
    address: str | None = None  # default: address_var
    detail: str | None = None  # short, never patient data


class AuditSink(Protocol):
    """Where audit rows go. Must write inside ``tx`` and raise if it cannot."""

    def append(self, tx: Tx, event: AuditEvent) -> AuditEntry: ...


# -- canonical forms and hashes --------------------------------------------------------------


def canonical_row(
    seq: int,
    at: str,
    request_id: str,
    actor_id: int | None,
    org_id: int | None,
    plan_id: str | None,
    action: str,
    outcome: str,
) -> str:
    """The v1 (pre-0004) canonical row."""
    row = {
        "seq": seq,
        "at": at,
        "request_id": request_id,
        "actor_id": actor_id,
        "org_id": org_id,
        "plan_id": plan_id,
        "action": action,
        "outcome": outcome,
    }
    return _canonical(row)


def _canonical(obj: Any) -> str:
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=True)


def chain_hash(prev_hash: str, canonical: str) -> str:
    """The v1 link: plain SHA-256 (anyone can recompute it: kept only for old rows)."""
    return hashlib.sha256((prev_hash + canonical).encode()).hexdigest()


def _canonical_v2(e: AuditEntry) -> str:
    return _canonical(
        {
            "v": 2,
            "seq": e.seq,
            "at": e.at,
            "request_id": e.request_id,
            "actor_id": e.actor_id,
            "org_id": e.org_id,
            "plan_id": e.plan_id,
            "action": e.action,
            "outcome": e.outcome,
            "address": e.address,
            "detail": e.detail,
            "content_mac": e.content_mac,
        }
    )


def _keyed(key: bytes, prev_hash: str, canonical: str) -> str:
    return hmac.new(key, (prev_hash + canonical).encode(), hashlib.sha256).hexdigest()


def _entry_hash(e: AuditEntry, keys: AuditKeys | None) -> str | None:
    if e.v == 1:
        args = (e.seq, e.at, e.request_id, e.actor_id, e.org_id, e.plan_id, e.action, e.outcome)
        return chain_hash(e.prev_hash, canonical_row(*args))
    if e.v == 2 and keys is not None:
        return _keyed(keys.chain, e.prev_hash, _canonical_v2(e))
    return None


def _iso(value: datetime) -> str:
    return value.astimezone(UTC).isoformat(timespec="microseconds")


def plan_mac(keys: AuditKeys, r: PlanRecord) -> str:
    """Keyed hash of everything stored for a plan (as decrypted): what ``content_mac`` holds."""
    content = {
        "id": r.id,
        "version": r.version,
        "previous_id": r.previous_id,
        "root_id": r.root_id,
        "org_id": r.org_id,
        "author_id": r.author_id,
        "created_at": _iso(r.created_at),
        "intake_json": r.intake_json,
        "intake_sha256": r.intake_sha256,
        "ruleset": [r.ruleset_id, r.ruleset_version, r.ruleset_sha256],
        "plan_json": r.plan_json,
        "level_of_care": r.level_of_care,
        "idempotency_key": r.idempotency_key,
        "request_sha256": r.request_sha256,
    }
    return hmac.new(keys.content, ("plan\n" + _canonical(content)).encode(), hashlib.sha256).hexdigest()


def override_mac(keys: AuditKeys, o: OverrideRecord) -> str:
    content = {
        "id": o.id,
        "plan_id": o.plan_id,
        "author_id": o.author_id,
        "created_at": _iso(o.created_at),
        "section": o.section,
        "code": o.code,
        "action": o.action,
        "reason": o.reason,
        "replacement_text": o.replacement_text,
        "replacement_kind": o.replacement_kind,
        "rule_ids": list(o.rule_ids),
    }
    return hmac.new(keys.content, ("override\n" + _canonical(content)).encode(), hashlib.sha256).hexdigest()


# -- checkpoints: signed heads in an append-only file outside the database ------------------


def _checkpoint_message(seq: int, head: str, at: str) -> bytes:
    return f"carepath-audit-checkpoint\n{seq}\n{head}\n{at}".encode()


class CheckpointLog:
    """One JSON line per checkpoint, appended (O_APPEND, 0600, fsync), optionally to syslog."""

    def __init__(self, path: Path, keys: AuditKeys, syslog: str | None = None) -> None:
        self.path = path
        self.keys = keys
        self._syslog: logging.Logger | None = None
        if syslog:
            self._syslog = _syslog_logger(syslog)

    def write(self, seq: int, head: str, at: str) -> None:
        sig = base64.b64encode(self.keys.signing.sign(_checkpoint_message(seq, head, at))).decode()
        line = _canonical({"seq": seq, "hash": head, "at": at, "key": self.keys.key_id(), "sig": sig})
        self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        try:
            os.write(fd, (line + "\n").encode())
            os.fsync(fd)
        finally:
            os.close(fd)
        if self._syslog is not None:
            self._syslog.info("carepath-audit-checkpoint %s", line)

    @staticmethod
    def read(path: Path) -> Iterator[tuple[int, dict[str, Any] | None]]:
        """(line number, parsed line or None if it is not a checkpoint)."""
        if not path.exists():
            return
        with open(path, encoding="utf-8", errors="replace") as f:
            for n, raw in enumerate(f, 1):
                try:
                    obj = json.loads(raw)
                    yield n, obj if isinstance(obj, dict) else None
                except ValueError:
                    yield n, None

    def signature_ok(self, cp: dict[str, Any]) -> bool:
        try:
            seq, head, at = int(cp["seq"]), str(cp["hash"]), str(cp["at"])
            self.keys.public.verify(base64.b64decode(cp["sig"]), _checkpoint_message(seq, head, at))
            return True
        except (InvalidSignature, KeyError, TypeError, ValueError):
            return False


def _syslog_logger(target: str) -> logging.Logger:
    address: str | tuple[str, int] = target
    if not target.startswith("/"):
        host, _, port = target.rpartition(":")
        address = (host or "localhost", int(port or 514))
    logger = logging.getLogger("carepath.audit.checkpoints")
    logger.propagate = False
    logger.setLevel(logging.INFO)
    if not logger.handlers:
        logger.addHandler(
            logging.handlers.SysLogHandler(address=address, facility=logging.handlers.SysLogHandler.LOG_AUTH)
        )
    return logger


class _Checkpointer:
    """Keeps the newest committed head and writes it every ``interval_s`` from its own thread
    (request threads never touch the file), and once more on close."""

    def __init__(self, log_: CheckpointLog, interval_s: float, clock: Callable[[], datetime]) -> None:
        self.log = log_
        self.interval_s = interval_s
        self.clock = clock
        self._latest: tuple[int, str] | None = None
        self._written = 0
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="carepath-audit-checkpoints", daemon=True)
        self._thread.start()

    def committed(self, seq: int, head: str) -> None:
        with self._lock:
            if self._latest is None or seq > self._latest[0]:
                self._latest = (seq, head)

    def flush(self) -> None:
        with self._lock:
            latest = self._latest
            if latest is None or latest[0] <= self._written:
                return
            try:
                self.log.write(latest[0], latest[1], _iso(self.clock()))
                self._written = latest[0]
            except OSError as exc:  # reported by readiness (api.health); the chain itself is intact
                log.error("could not write an audit checkpoint: %s", type(exc).__name__)

    def _loop(self) -> None:
        while not self._stop.wait(self.interval_s):
            self.flush()

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        self.flush()


# -- the sink ----------------------------------------------------------------------------------


class ChainedAuditSink:
    """The real sink. With ``keys`` it writes the keyed chain (v2) with content MACs and, with
    ``checkpoints``, signed heads; without (a bare ``ChainedAuditSink()``) the v1 chain."""

    def __init__(
        self,
        clock: Callable[[], datetime] | None = None,
        *,
        keys: AuditKeys | None = None,
        checkpoints: CheckpointLog | None = None,
        checkpoint_interval_s: float = 1.0,
    ) -> None:
        self._clock = clock or (lambda: datetime.now(UTC))
        self.keys = keys
        self._checkpointer = (
            _Checkpointer(checkpoints, checkpoint_interval_s, self._clock)
            if checkpoints is not None
            else None
        )
        self._batchers: dict[int, _GroupCommit] = {}
        self._batchers_lock = threading.Lock()

    def append(self, tx: Tx, event: AuditEvent) -> AuditEntry:
        try:
            content_mac = self._content_mac(tx, event)  # before the head lock: writers queue less
            seq, prev = tx.lock_audit_head()
            entry = self._entry(seq + 1, prev, event, content_mac)
            tx.append_audit(entry)
        except Exception as exc:
            raise AuditWriteError(type(exc).__name__) from exc
        if self._checkpointer is not None:
            checkpointer = self._checkpointer
            tx.on_commit(lambda: checkpointer.committed(entry.seq, entry.hash))
        return entry

    def record(self, db: Database, event: AuditEvent) -> AuditEntry:
        """Append in a transaction of its own, group-committed with whatever else is waiting;
        returns once the row is durable. Raises AuditWriteError if it could not be written."""
        event = self._with_address(event)
        with self._batchers_lock:
            batcher = self._batchers.get(id(db))
            if batcher is None:
                batcher = self._batchers[id(db)] = _GroupCommit(self, db)
        return batcher.submit(event)

    def close(self) -> None:
        with self._batchers_lock:
            batchers, self._batchers = list(self._batchers.values()), {}
        for b in batchers:
            b.close()
        if self._checkpointer is not None:
            self._checkpointer.close()

    def flush_checkpoint(self) -> None:
        if self._checkpointer is not None:
            self._checkpointer.flush()

    @staticmethod
    def _with_address(event: AuditEvent) -> AuditEvent:
        if event.address is None and address_var.get() is not None:
            from dataclasses import replace

            return replace(event, address=address_var.get())
        return event

    def _entry(self, seq: int, prev: str, event: AuditEvent, content_mac: str | None) -> AuditEntry:
        event = self._with_address(event)
        at = self._clock().astimezone(UTC).isoformat(timespec="microseconds")
        plan_id = event.plan_id if event.plan_id and is_plan_id(event.plan_id) else None
        base = AuditEntry(
            seq,
            at,
            event.request_id[:64],
            event.actor_id,
            event.org_id,
            plan_id,
            event.action,
            event.outcome,
            prev_hash=prev,
            hash="",
        )
        if self.keys is None:
            args = (
                seq,
                at,
                base.request_id,
                event.actor_id,
                event.org_id,
                plan_id,
                event.action,
                event.outcome,
            )
            return AuditEntry(*args, prev_hash=prev, hash=chain_hash(prev, canonical_row(*args)))
        from dataclasses import replace

        entry = replace(
            base,
            v=2,
            address=(event.address or None) and event.address[:64],
            detail=(event.detail or None) and event.detail[:200],
            content_mac=content_mac,
        )
        return replace(entry, hash=_keyed(self.keys.chain, prev, _canonical_v2(entry)))

    def _content_mac(self, tx: Tx, event: AuditEvent) -> str | None:
        if self.keys is None or event.outcome != "ok" or not event.plan_id or event.org_id is None:
            return None
        if event.action in CONTENT_ACTIONS:
            record = tx.get_plan(event.plan_id, event.org_id)
            if record is None:
                raise RuntimeError("the plan this row records is not in the transaction")
            return plan_mac(self.keys, record)
        if event.action == OVERRIDE_ACTION:
            stored = tx.overrides_of(event.plan_id)
            if not stored:
                raise RuntimeError("the override this row records is not in the transaction")
            return override_mac(self.keys, stored[-1])
        return None


class _GroupCommit:
    """One writer thread per database: takes every event waiting, appends them in one
    transaction, commits, then wakes each caller with its entry (or the failure)."""

    def __init__(self, sink: ChainedAuditSink, db: Database) -> None:
        self.sink = sink
        self.db = db
        self._pending: list[tuple[AuditEvent, Future[AuditEntry]]] = []
        self._cond = threading.Condition()
        self._closed = False
        self._thread = threading.Thread(target=self._loop, name="carepath-audit-writer", daemon=True)
        self._thread.start()

    def submit(self, event: AuditEvent) -> AuditEntry:
        fut: Future[AuditEntry] = Future()
        with self._cond:
            if self._closed:
                raise AuditWriteError("audit writer closed")
            self._pending.append((event, fut))
            self._cond.notify()
        return fut.result()

    def _loop(self) -> None:
        while True:
            with self._cond:
                while not self._pending and not self._closed:
                    self._cond.wait()
                if not self._pending and self._closed:
                    return
                batch, self._pending = self._pending[:BATCH_MAX], self._pending[BATCH_MAX:]
            self._write(batch)

    def _write(self, batch: list[tuple[AuditEvent, Future[AuditEntry]]]) -> None:
        try:
            with self.db.transaction() as tx:
                entries = [self.sink.append(tx, event) for event, _ in batch]
        except Exception as exc:  # noqa: BLE001 - every waiting caller hears about it
            error = exc if isinstance(exc, AuditWriteError) else AuditWriteError(type(exc).__name__)
            for _, fut in batch:
                fut.set_exception(error)
            return
        for (_, fut), entry in zip(batch, entries, strict=True):
            fut.set_result(entry)

    def close(self) -> None:
        with self._cond:
            self._closed = True
            self._cond.notify()
        self._thread.join(timeout=10)


def record_event(sink: AuditSink, db: Database, event: AuditEvent) -> None:
    """A standalone audit row: group-committed when the sink can, else its own transaction."""
    record = getattr(sink, "record", None)
    if callable(record):
        record(db, event)
        return
    with db.transaction() as tx:
        sink.append(tx, event)


# -- verification ------------------------------------------------------------------------------


@dataclass(frozen=True)
class VerifyResult:
    ok: bool
    entries: int
    broken_seq: int | None = None
    reason: str = ""
    checkpoints: int = 0
    plans: int = 0
    overrides: int = 0
    legacy_rows: int = 0


class _Problem(Exception):
    def __init__(self, reason: str, seq: int | None = None) -> None:
        super().__init__(reason)
        self.reason, self.seq = reason, seq


@dataclass
class _Verifier:
    keys: AuditKeys | None
    checkpoints: dict[int, str]
    entries: int = 0
    legacy: int = 0
    plans: int = 0
    overrides: int = 0
    plan_macs: dict[str, list[str]] = field(default_factory=dict)  # plan id -> MACs of its v2 rows
    legacy_plans: set[str] = field(default_factory=set)  # plans stored under v1 rows
    override_macs: dict[str, list[str]] = field(default_factory=dict)
    legacy_overrides: dict[str, int] = field(default_factory=dict)

    def rows(self, tx: Tx) -> None:
        expected, prev, keyed_seen = 1, GENESIS_HASH, False
        for e in tx.audit_entries():
            if e.seq != expected:
                raise _Problem(f"row {expected} is missing", expected)
            if e.prev_hash != prev:
                raise _Problem("previous-hash link does not match row before", e.seq)
            if e.v == 1 and keyed_seen:
                raise _Problem("an unkeyed (v1) row after keyed rows", e.seq)
            if e.v == 2 and self.keys is None:
                raise _Problem(
                    "keyed rows need the audit key (CAREPATH_AUDIT_KEY or data_dir/audit.key)", e.seq
                )
            if _entry_hash(e, self.keys) != e.hash:
                raise _Problem("row content does not match its hash", e.seq)
            if e.seq in self.checkpoints and self.checkpoints[e.seq] != e.hash:
                raise _Problem("row differs from the signed checkpoint of it", e.seq)
            keyed_seen = keyed_seen or e.v == 2
            self.legacy += e.v == 1
            self._content_row(e)
            prev, expected, self.entries = e.hash, expected + 1, self.entries + 1
        head_seq, head_hash = tx.audit_head()
        if head_seq != self.entries or head_hash != prev:
            raise _Problem("rows at the end of the log are missing", self.entries + 1)
        if self.checkpoints and max(self.checkpoints) > self.entries:
            last = max(self.checkpoints)
            raise _Problem(
                f"rows {self.entries + 1}..{last} were removed (a signed checkpoint names row {last})",
                self.entries + 1,
            )

    def _content_row(self, e: AuditEntry) -> None:
        if e.outcome != "ok" or not e.plan_id:
            return
        if e.action in CONTENT_ACTIONS:
            if e.v == 1:
                self.legacy_plans.add(e.plan_id)
            elif e.content_mac:
                self.plan_macs.setdefault(e.plan_id, []).append(e.content_mac)
        elif e.action == OVERRIDE_ACTION:
            if e.v == 1:
                self.legacy_overrides[e.plan_id] = self.legacy_overrides.get(e.plan_id, 0) + 1
            elif e.content_mac:
                self.override_macs.setdefault(e.plan_id, []).append(e.content_mac)

    def content(self, tx: Tx) -> None:
        keys = self.keys
        stored: set[str] = set()
        for record in tx.all_plan_records():
            stored.add(record.id)
            self.plans += 1
            macs = self.plan_macs.get(record.id)
            if macs is not None:
                if keys is None or plan_mac(keys, record) not in macs:
                    raise _Problem(f"plan {record.id} differs from what its audit row recorded")
            elif record.id not in self.legacy_plans:
                raise _Problem(f"plan {record.id} has no audit row that stored it")
        missing = sorted(set(self.plan_macs) - stored)
        if missing:
            raise _Problem(f"plan {missing[0]} was recorded as stored but is gone")
        by_plan: dict[str, list[OverrideRecord]] = {}
        for o in tx.all_overrides():
            by_plan.setdefault(o.plan_id, []).append(o)
            self.overrides += 1
        for plan_id in sorted(set(by_plan) | set(self.override_macs) | set(self.legacy_overrides)):
            self._overrides_of(plan_id, sorted(by_plan.get(plan_id, []), key=lambda o: o.id))

    def _overrides_of(self, plan_id: str, found: list[OverrideRecord]) -> None:
        macs = self.override_macs.get(plan_id, [])
        legacy = self.legacy_overrides.get(plan_id, 0)
        if len(found) != legacy + len(macs):
            raise _Problem(f"overrides of plan {plan_id} were added or removed outside the service")
        keyed = found[legacy:]
        if keyed and (self.keys is None or [override_mac(self.keys, o) for o in keyed] != macs):
            raise _Problem(f"an override of plan {plan_id} differs from what its audit row recorded")


def verify_chain(
    db: Database, keys: AuditKeys | None = None, checkpoint_path: Path | None = None
) -> VerifyResult:
    """Recompute every link and every content MAC and check every signed checkpoint; report the
    first problem. ``keys`` and ``checkpoint_path`` default to those the database was opened with
    (api.hardening.open_database)."""
    keys = keys or db.audit_keys
    checkpoint_path = checkpoint_path or db.checkpoint_path
    wanted: dict[int, str] = {}
    if checkpoint_path is not None and keys is not None:
        cp_log = CheckpointLog(checkpoint_path, keys)
        for n, cp in CheckpointLog.read(checkpoint_path):
            if cp is None or not cp_log.signature_ok(cp):
                return VerifyResult(False, 0, None, f"checkpoint line {n} is not signed by this audit key")
            seq, head = int(cp["seq"]), str(cp["hash"])
            if wanted.get(seq, head) != head:
                return VerifyResult(False, 0, seq, "two signed checkpoints disagree about one row")
            wanted[seq] = head
    v = _Verifier(keys, wanted)
    try:
        with db.transaction(readonly=True) as tx:
            v.rows(tx)
            try:
                v.content(tx)
            except RuntimeError as exc:  # api.vault.VaultError: a sealed value that does not open
                if isinstance(exc, _Problem):
                    raise
                raise _Problem(f"stored content was altered or its key is missing ({exc})") from None
    except _Problem as p:
        return VerifyResult(False, v.entries, p.seq, p.reason, len(wanted), v.plans, v.overrides, v.legacy)
    return VerifyResult(True, v.entries, None, "", len(wanted), v.plans, v.overrides, v.legacy)
