"""Readiness that does not lie: what /health checks before it says "ok".

- database: a real round trip that touches the data (the audit head row), and on SQLite a
  write lock taken and released within a second (a file locked by another process, unreadable,
  moved or deleted fails here, where ``SELECT 1`` would still pass);
- disk: free space where the data and the audit checkpoints are written, at least
  ``min_free_disk_mb`` (a full disk fails every write: better to say so before);
- the audit checkpoint file can be appended to.

Each check answers in its own words (no paths, no data); any failure makes /health 503, and
it recovers by itself once the cause is gone (nothing is cached).
"""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

__all__ = ["Readiness", "readiness"]


@dataclass(frozen=True)
class Readiness:
    database: str  # "ok" | "unreachable" | "locked" | "missing"
    disk: str  # "ok" | "low" | "unknown"
    audit: str  # "ok" | "unwritable"

    @property
    def ok(self) -> bool:
        return self.database == "ok" and self.disk == "ok" and self.audit == "ok"


def _database(db: Any) -> str:
    if db.sqlite_file is not None and not db.sqlite_file.exists():
        return "missing"
    try:
        if db.dialect == "sqlite":
            raw = db.engine.raw_connection()  # the pool's checkout also checks the file's identity
            try:
                cur = raw.cursor()
                cur.execute("PRAGMA busy_timeout = 1000")
                cur.execute("BEGIN IMMEDIATE")  # the write lock every write will need
                cur.execute("SELECT seq FROM audit_head WHERE id = 1").fetchall()
                cur.execute("ROLLBACK")
            finally:
                raw.invalidate()  # never hand the short busy timeout back to the pool
            return "ok"
        with db.transaction(readonly=True) as tx:
            tx.probe_write_lock()
        return "ok"
    except Exception as exc:  # noqa: BLE001 - the kind of failure is the answer
        return "locked" if "locked" in str(exc).lower() or "busy" in str(exc).lower() else "unreachable"


def _disk(paths: list[Path], min_free_mb: int) -> str:
    for path in paths:
        probe = path if path.exists() else path.parent
        try:
            if shutil.disk_usage(probe).free < min_free_mb * 2**20:
                return "low"
        except OSError:
            return "unknown"
    return "ok"


def _audit_file(path: Path) -> str:
    folder = path.parent
    if path.exists():
        return "ok" if os.access(path, os.W_OK) else "unwritable"
    return "ok" if folder.exists() and os.access(folder, os.W_OK) else "unwritable"


def readiness(rt: Any) -> Readiness:
    settings = rt.settings
    db = rt.db
    folders = [Path(settings.data_dir)]
    if db.sqlite_file is not None:
        folders.append(db.sqlite_file.parent)
    checkpoint = db.checkpoint_path or Path(settings.data_dir) / "audit-checkpoints.log"
    folders.append(Path(checkpoint).parent)
    return Readiness(
        database=_database(db),
        disk=_disk(folders, settings.min_free_disk_mb),
        audit=_audit_file(Path(checkpoint)),
    )
