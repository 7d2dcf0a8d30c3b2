"""Wiring of the hardening pieces (issue 10), so the shared modules change by a line or two.

open_database(settings)      Database with sealing (api.vault), the audit key and the
                             checkpoint file; a SQLite file must exist (``carepath db
                             upgrade`` creates it), never created on the side
Hardening.build(settings, db) the per-process pieces the routes use: audit sink (keyed,
                             checkpointed, group commit), anonymous-noise summaries, rate
                             limits, sign-in lockout, PDF pool
install(app, settings)       request guards (limits, timeouts, hostile input, rate per
                             address, HSTS), Part 2 labels on FHIR/CDS output, the token,
                             MFA, consent and disclosure routes
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from carepath.api.audit import AuditEvent, ChainedAuditSink, CheckpointLog, address_var, record_event
from carepath.api.db import Database
from carepath.api.errors import ServiceError
from carepath.api.keys import audit_keys, data_keys
from carepath.api.pdf_pool import Busy, PdfPool, configure_default
from carepath.api.settings import Settings
from carepath.api.throttle import AnonymousNoise, LoginLockout, TokenBuckets
from carepath.api.vault import Vault, tx_factory

log = logging.getLogger("carepath.hardening")

__all__ = [
    "DatabaseMissing",
    "open_database",
    "migrate",
    "Hardening",
    "install",
    "checkpoint_path",
    "audit_anonymous",
    "enforce_account_rate",
    "RateLimited",
    "Busy",
]
assert Busy  # re-exported


class DatabaseMissing(RuntimeError):
    """The SQLite file is not there: it is created only by ``carepath db upgrade``."""


def checkpoint_path(settings: Settings) -> Any:
    return settings.audit_checkpoint_path or settings.data_dir / "audit-checkpoints.log"


def open_database(settings: Settings, *, url: str | None = None, create: bool = False) -> Database:
    """The service's database, with encryption at rest and the audit key attached.

    ``create``: allow ``upgrade()`` to create a missing SQLite file (``carepath db upgrade``).
    Without it a missing file raises DatabaseMissing (message: what to run)."""
    db = Database(
        url or settings.resolved_database_url(), sqlite_busy_timeout_ms=settings.sqlite_busy_timeout_ms
    )
    try:
        if db.sqlite_file is not None and not create and not db.sqlite_file.exists():
            raise DatabaseMissing(
                f"no database at {db.sqlite_file}: create it with `carepath db upgrade` "
                "(it is never created implicitly, so a moved file is not replaced by an empty one)"
            )
        keys = audit_keys(settings)
        db.tx_factory = tx_factory(Vault(data_keys(settings), keys.patient_index))
        db.audit_keys = keys
        db.checkpoint_path = checkpoint_path(settings)
        # where the checkpoints go exists from the start (readiness checks its disk), also when
        # every key comes from the environment and nothing else is written to the data dir
        Path(db.checkpoint_path).parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    except Exception:
        db.dispose()
        raise
    return db


def migrate(settings: Settings, db: Database) -> None:
    """Apply migrations: as the schema owner when CAREPATH_MIGRATION_DATABASE_URL is set
    (PostgreSQL: the service's own role then cannot alter or drop what the owner made)."""
    if not settings.migration_database_url:
        db.upgrade()
        return
    owner = Database(settings.migration_database_url)
    try:
        owner.upgrade()
    finally:
        owner.dispose()


class RateLimited(ServiceError):
    status, code, message = 429, "rate_limited", "Too many requests for this account; slow down."


@dataclass
class Hardening:
    """What one service process holds for the hardening features (Runtime.hardening)."""

    settings: Settings
    db: Database
    audit: ChainedAuditSink
    per_account: TokenBuckets
    noise: AnonymousNoise
    lockout: LoginLockout
    pdf_pool: PdfPool
    closers: list[Callable[[], None]] = field(default_factory=list)

    @classmethod
    def build(
        cls, settings: Settings, db: Database, clock: Callable[[], datetime] | None = None
    ) -> Hardening:
        keys = db.audit_keys or audit_keys(settings)
        checkpoints = CheckpointLog(checkpoint_path(settings), keys, settings.audit_syslog)
        sink = ChainedAuditSink(
            clock or (lambda: datetime.now(UTC)),
            keys=keys,
            checkpoints=checkpoints,
            checkpoint_interval_s=settings.audit_checkpoint_interval_s,
        )
        h = cls(
            settings,
            db,
            sink,
            per_account=TokenBuckets(settings.rate_per_account),
            noise=AnonymousNoise(settings.anonymous_audit_window_s),
            lockout=LoginLockout(
                db, settings.login_lockout_after, settings.login_lockout_base_s, settings.login_lockout_max_s
            ),
            pdf_pool=PdfPool(settings.pdf_workers, settings.pdf_queue, settings.retry_after_s),
        )
        configure_default(h.pdf_pool)
        stop = threading.Event()
        flusher = threading.Thread(
            target=h._flush_noise_every, args=(stop,), name="carepath-noise", daemon=True
        )
        flusher.start()

        def close_flusher() -> None:
            stop.set()
            flusher.join(timeout=5)
            h.flush_noise(force=True)

        h.closers += [sink.close, close_flusher, h.pdf_pool.close]
        return h

    def close(self) -> None:
        for fn in reversed(self.closers):
            try:
                fn()
            except Exception as exc:  # noqa: BLE001 - closing goes on; the class is enough
                log.warning("while closing: %s", type(exc).__name__)

    def flush_noise(self, force: bool = False) -> None:
        """One ``audit.anonymous_summary`` row per (action, outcome, address) window that ended."""
        for action, outcome, address, count, window in self.noise.due(force):
            event = AuditEvent(
                "audit.anonymous_summary",
                outcome,
                "summary",
                address=address,
                detail=f"action={action} count={count} window_s={round(window)}",
            )
            try:
                record_event(self.audit, self.db, event)
            except Exception as exc:  # noqa: BLE001 - counted again next time would double: logged
                log.error("could not write an anonymous-attempts summary: %s", type(exc).__name__)

    def _flush_noise_every(self, stop: threading.Event) -> None:
        while not stop.wait(max(1.0, self.settings.anonymous_audit_window_s / 4)):
            self.flush_noise()


def audit_anonymous(rt: Any, request_id: str, action: str, outcome: str, plan_id: str | None) -> None:
    """An attempt without valid credentials on a patient-data route: the first per address and
    window is its own audit row; the rest are counted into a summary row (api.throttle)."""
    h: Hardening | None = getattr(rt, "hardening", None)
    address = address_var.get() or "-"
    if h is not None and not h.noise.admit(action, outcome, address):
        return
    rt.plans().record_anonymous(request_id, action, outcome, plan_id)


async def enforce_account_rate(rt: Any, principal: Any) -> None:
    h: Hardening | None = getattr(rt, "hardening", None)
    if h is None:
        return
    wait = h.per_account.take(f"user:{principal.user.id}")
    if wait:
        raise RateLimited(headers={"Retry-After": str(max(1, int(wait + 0.999)))})


def install(app: Any, settings: Settings) -> None:
    """Middlewares and routers of the hardening work. Call BEFORE ServiceMiddleware is added,
    so ServiceMiddleware stays outermost (its headers and access line cover our answers)."""
    from carepath.api.guard import GuardMiddleware
    from carepath.api.part2 import Part2Middleware

    app.add_middleware(Part2Middleware)
    app.add_middleware(GuardMiddleware, settings=settings)
