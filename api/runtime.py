"""What one service process holds: settings, the database, ONE rules engine, the audit sink,
the clock, the secret key and the templates. Built in the app's lifespan, never at import.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from fastapi.templating import Jinja2Templates

from carepath.api.audit import AuditSink
from carepath.api.db import Database
from carepath.api.hardening import Hardening, migrate, open_database
from carepath.api.service import PlanService
from carepath.api.settings import Settings
from carepath.engine import Engine, RulePack, load_rulepack
from carepath.engine.governance import require_clean

__all__ = ["Runtime", "build_runtime", "checked_rulepack", "TEMPLATES_DIR", "utc_now"]

TEMPLATES_DIR = Path(__file__).resolve().parent / "templates"


def utc_now() -> datetime:
    return datetime.now(UTC)


def checked_rulepack(settings: Settings) -> RulePack:
    """The configured rule pack, loaded and linted: RulePackError (one line) unless clean."""
    pack = load_rulepack(settings.rules_dir)
    require_clean(pack)
    return pack


@dataclass
class Runtime:
    settings: Settings
    db: Database
    engine: Engine
    audit: AuditSink
    clock: Callable[[], datetime]
    secret: bytes
    templates: Jinja2Templates
    hardening: Hardening | None = None  # limits, lockout, PDF pool, checkpoints (api.hardening)

    def plans(self) -> PlanService:
        return PlanService(self.db, self.engine, self.audit, self.clock)

    def close(self) -> None:
        if self.hardening is not None:
            self.hardening.close()
        self.db.dispose()


def build_runtime(
    settings: Settings,
    *,
    engine: Engine | None = None,
    audit_sink: AuditSink | None = None,
    clock: Callable[[], datetime] | None = None,
    template_globals: dict[str, Any] | None = None,
) -> Runtime:
    rules = engine or Engine(checked_rulepack(settings))  # the pack first: it needs no database
    require_clean(rules.pack)
    db = open_database(settings)  # SQLite must exist: `carepath db upgrade` creates it
    try:
        if settings.migrate_on_startup:
            migrate(settings, db)
    except Exception:
        db.dispose()
        raise
    clock = clock or utc_now
    hardening = Hardening.build(settings, db, clock)
    templates = Jinja2Templates(directory=str(TEMPLATES_DIR))
    templates.env.globals.update(template_globals or {})
    return Runtime(
        settings=settings,
        db=db,
        engine=rules,
        audit=audit_sink or hardening.audit,
        clock=clock,
        secret=settings.resolved_secret_key(),
        templates=templates,
        hardening=hardening,
    )
