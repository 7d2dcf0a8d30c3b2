"""PostgreSQL: a schema owner and an application role (``carepath db grant ROLE``).

The migrations run as the OWNER (``CAREPATH_MIGRATION_DATABASE_URL`` for the service's
startup migration, or ``carepath db upgrade`` run with the owner's ``DATABASE_URL``); the
service connects as the APPLICATION role, which gets exactly what the code needs:

- append-only tables (plans, plan_codes, overrides, override_rules, audit_log, plan_subjects,
  disclosures, signatures, comments, plan_patients, cds_cards, cds_card_rules, cds_feedback):
  SELECT and INSERT, nothing else;
- wrapped data keys (content_keys): SELECT and INSERT (re-wrapping runs as the owner);
- tables the service updates (users, api_tokens, consents, audit_head):
  SELECT, INSERT, UPDATE; sessions, login_failures, cds_jwt_ids and cds_prefills (expiring rows): also DELETE;
- no TRUNCATE, no REFERENCES/TRIGGER privileges, no ownership: it cannot drop, alter or
  disable the append-only triggers (only an owner or superuser can), nor drop a table.

Statements only; the role itself is created by the DBA (``CREATE ROLE carepath_app LOGIN``).
"""

from __future__ import annotations

import re
from typing import Any

__all__ = ["grant_app_role", "APPEND_ONLY", "UPDATED", "SCRATCH", "READ_ONLY"]

APPEND_ONLY = (
    "plans",
    "plan_codes",
    "overrides",
    "override_rules",
    "audit_log",
    "plan_subjects",
    "disclosures",
    "signatures",  # sign-off (issue 8): a signed version never changes
    "comments",
    "plan_patients",
    "cds_cards",  # CDS Hooks (issue 9): cards shown and the clinicians' feedback on them
    "cds_card_rules",
    "cds_feedback",
    "organisations",
    "content_keys",  # re-wrapping data keys (`carepath keys rotate`) runs as the owner
)
UPDATED = ("users", "api_tokens", "consents", "audit_head")
SCRATCH = ("sessions", "login_failures", "cds_jwt_ids", "cds_prefills")  # expired rows are deleted
READ_ONLY = ("alembic_version",)
_ROLE = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")


def grant_statements(role: str) -> list[str]:
    if not _ROLE.match(role):
        raise ValueError("a role name is lowercase letters, digits and '_' (at most 63)")
    r = f'"{role}"'
    out = [
        f"REVOKE ALL ON ALL TABLES IN SCHEMA public FROM {r}",
        f"GRANT USAGE ON SCHEMA public TO {r}",
        f"GRANT SELECT, INSERT ON {', '.join(APPEND_ONLY)} TO {r}",
        f"GRANT SELECT, INSERT, UPDATE ON {', '.join(UPDATED)} TO {r}",
        f"GRANT SELECT, INSERT, UPDATE, DELETE ON {', '.join(SCRATCH)} TO {r}",
        f"GRANT SELECT ON {', '.join(READ_ONLY)} TO {r}",
        f"GRANT USAGE, SELECT ON ALL SEQUENCES IN SCHEMA public TO {r}",
    ]
    return out


def grant_app_role(db: Any, role: str) -> None:
    if db.dialect != "postgresql":
        raise ValueError("roles are a PostgreSQL matter; SQLite has a file, kept 0600")
    statements = grant_statements(role)
    with db.engine.begin() as conn:
        exists = conn.exec_driver_sql("SELECT 1 FROM pg_roles WHERE rolname = %(r)s", {"r": role}).first()
        if exists is None:
            raise ValueError(f"role {role} does not exist: CREATE ROLE {role} LOGIN (as a DBA) first")
        for sql in statements:
            conn.exec_driver_sql(sql)
