"""The audit trail: one append-only, hash-chained row per read or write of patient data.

Each row records who (user id, organisation), when, which plan, the action, the outcome and
the request id; never patient data. Row ``n`` stores
``hash_n = sha256(hash_{n-1} + canonical_json(row_n))`` (``hash_0`` = 64 zeros), so editing,
deleting or re-ordering any row breaks every later link; ``carepath audit verify`` recomputes
the chain and names the first broken row. The audit row is written in the SAME transaction as
the change it records: if it cannot be written, the request fails and nothing is stored.

Actions: ``plan.create``, ``plan.reevaluate``, ``plan.read``, ``plan.report_html``,
``plan.report_pdf``, ``plan.list``, ``plan.override``, ``auth.login``, ``auth.logout``
(adapters add theirs, e.g. ``plan.fhir``). Outcomes: ``ok``, ``replayed`` (idempotent retry),
``invalid`` (422), ``refused`` (engine refused), ``conflict`` (409), ``unauthenticated``
(401), ``denied`` (403, wrong role; or CSRF), ``not_found`` (unknown id), ``other_org`` (a
plan of another organisation: the caller sees 404), ``error`` (best effort, after a failure).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Protocol

from carepath.api.db import GENESIS_HASH, Database, Tx
from carepath.api.records import AuditEntry, is_plan_id

__all__ = [
    "AuditEvent",
    "AuditSink",
    "ChainedAuditSink",
    "AuditWriteError",
    "VerifyResult",
    "canonical_row",
    "chain_hash",
    "verify_chain",
]


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


class AuditSink(Protocol):
    """Where audit rows go. Must write inside ``tx`` and raise if it cannot."""

    def append(self, tx: Tx, event: AuditEvent) -> AuditEntry: ...


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
    return json.dumps(row, sort_keys=True, separators=(",", ":"), ensure_ascii=True)


def chain_hash(prev_hash: str, canonical: str) -> str:
    return hashlib.sha256((prev_hash + canonical).encode()).hexdigest()


def _entry_hash(e: AuditEntry) -> str:
    return chain_hash(
        e.prev_hash,
        canonical_row(e.seq, e.at, e.request_id, e.actor_id, e.org_id, e.plan_id, e.action, e.outcome),
    )


class ChainedAuditSink:
    """The real sink: appends to ``audit_log`` under the ``audit_head`` row lock."""

    def __init__(self, clock: Callable[[], datetime] | None = None) -> None:
        self._clock = clock or (lambda: datetime.now(UTC))

    def append(self, tx: Tx, event: AuditEvent) -> AuditEntry:
        try:
            seq, prev = tx.lock_audit_head()
            at = self._clock().astimezone(UTC).isoformat(timespec="microseconds")
            plan_id = event.plan_id if event.plan_id and is_plan_id(event.plan_id) else None
            row = (
                seq + 1,
                at,
                event.request_id[:64],
                event.actor_id,
                event.org_id,
                plan_id,
                event.action,
                event.outcome,
            )
            entry = AuditEntry(*row, prev_hash=prev, hash=chain_hash(prev, canonical_row(*row)))
            tx.append_audit(entry)
            return entry
        except Exception as exc:
            raise AuditWriteError(type(exc).__name__) from exc


@dataclass(frozen=True)
class VerifyResult:
    ok: bool
    entries: int
    broken_seq: int | None = None
    reason: str = ""


def verify_chain(db: Database) -> VerifyResult:
    """Recompute every link; report the first row whose link is broken."""
    expected_seq, prev = 1, GENESIS_HASH
    count = 0
    with db.transaction(readonly=True) as tx:
        for e in tx.audit_entries():
            if e.seq != expected_seq:
                return VerifyResult(False, count, expected_seq, f"row {expected_seq} is missing")
            if e.prev_hash != prev:
                return VerifyResult(False, count, e.seq, "previous-hash link does not match row before")
            if _entry_hash(e) != e.hash:
                return VerifyResult(False, count, e.seq, "row content does not match its hash")
            prev, expected_seq, count = e.hash, expected_seq + 1, count + 1
        head_seq, head_hash = tx.audit_head()
    if head_seq != count or head_hash != prev:
        return VerifyResult(False, count, count + 1, "rows at the end of the log are missing")
    return VerifyResult(True, count)
