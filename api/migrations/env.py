"""Alembic environment. Run through ``api.db.Database.upgrade`` (which passes a connection
inside an open transaction), or ``carepath db upgrade``; there is no alembic.ini."""

from __future__ import annotations

from alembic import context

connection = context.config.attributes.get("connection")
if connection is None:  # pragma: no cover - always driven by Database.upgrade
    raise RuntimeError("run migrations through `carepath db upgrade` (api.db.Database.upgrade)")

context.configure(connection=connection, target_metadata=None, render_as_batch=True)
with context.begin_transaction():
    context.run_migrations()
