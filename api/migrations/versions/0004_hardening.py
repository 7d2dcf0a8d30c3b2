"""Hardening: keyed audit chain columns, token expiry, TOTP, encryption keys, patients,
consent and disclosures, sign-in lockout; TRUNCATE refused on append-only tables.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-02
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

TS = sa.DateTime(timezone=True)
APPEND_ONLY_BEFORE = (
    "plans",
    "plan_codes",
    "overrides",
    "override_rules",
    "audit_log",
    "signatures",
    "comments",
    "plan_patients",
)
APPEND_ONLY_NEW = (
    "plan_subjects",
    "disclosures",
    "cds_cards",  # 0003: cards shown and the feedback on them (the override-rate report)
    "cds_card_rules",
    "cds_feedback",
)


def upgrade() -> None:
    op.add_column("audit_log", sa.Column("v", sa.SmallInteger, nullable=False, server_default="1"))
    op.add_column("audit_log", sa.Column("address", sa.String(64), nullable=True))
    op.add_column("audit_log", sa.Column("detail", sa.String(200), nullable=True))
    op.add_column("audit_log", sa.Column("content_mac", sa.String(64), nullable=True))
    op.create_index("ix_audit_log_plan", "audit_log", ["plan_id"])
    op.add_column("api_tokens", sa.Column("expires_at", TS, nullable=True))
    op.add_column("users", sa.Column("totp_secret", sa.Text, nullable=True))
    op.add_column("users", sa.Column("totp_enabled", sa.Boolean, nullable=True))
    op.add_column("users", sa.Column("totp_last_step", sa.BigInteger, nullable=True))
    op.create_table(
        "content_keys",
        sa.Column("owner_id", sa.String(64), primary_key=True),
        sa.Column("kek_id", sa.String(32), nullable=False),
        sa.Column("wrapped", sa.Text, nullable=False),
    )
    op.create_table(
        "plan_subjects",
        sa.Column("plan_id", sa.String(40), sa.ForeignKey("plans.id"), primary_key=True),
        sa.Column("org_id", sa.Integer, nullable=False),
        sa.Column("patient_key", sa.String(64), nullable=False),
    )
    op.create_index("ix_plan_subjects_patient", "plan_subjects", ["org_id", "patient_key"])
    op.create_table(
        "consents",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("org_id", sa.Integer, sa.ForeignKey("organisations.id"), nullable=False),
        sa.Column("patient_key", sa.String(64), nullable=False),
        sa.Column("recipient", sa.String(200), nullable=False),
        sa.Column("purpose", sa.String(100), nullable=False),
        sa.Column("scope", sa.String(200), nullable=False),
        sa.Column("expires_on", sa.Date, nullable=True),
        sa.Column("recorded_by", sa.Integer, sa.ForeignKey("users.id"), nullable=False),
        sa.Column("recorded_at", TS, nullable=False),
        sa.Column("revoked_at", TS, nullable=True),
        sa.Column("revoked_by", sa.Integer, sa.ForeignKey("users.id"), nullable=True),
    )
    op.create_index("ix_consents_patient", "consents", ["org_id", "patient_key"])
    op.create_table(
        "disclosures",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("org_id", sa.Integer, sa.ForeignKey("organisations.id"), nullable=False),
        sa.Column("patient_key", sa.String(64), nullable=False),
        sa.Column("plan_id", sa.String(40), sa.ForeignKey("plans.id"), nullable=False),
        sa.Column("at", TS, nullable=False),
        sa.Column("recipient", sa.String(200), nullable=False),
        sa.Column("purpose", sa.String(100), nullable=False),
        sa.Column("consent_id", sa.Integer, sa.ForeignKey("consents.id"), nullable=True),
        sa.Column("recorded_by", sa.Integer, sa.ForeignKey("users.id"), nullable=False),
    )
    op.create_index("ix_disclosures_patient", "disclosures", ["org_id", "patient_key"])
    op.create_table(
        "login_failures",
        sa.Column("account_key", sa.String(64), primary_key=True),
        sa.Column("failures", sa.Integer, nullable=False),
        sa.Column("lockouts", sa.Integer, nullable=False),
        sa.Column("locked_until", TS, nullable=True),
        sa.Column("last_at", TS, nullable=False),
    )
    _widen_patient_index()
    _guards()


def _widen_patient_index() -> None:
    """The worklist's patient index (0002) is sealed under encryption at rest (api.vault): Text.
    SQLite rebuilds the table for this, which drops its append-only triggers: they are remade."""
    with op.batch_alter_table("plan_patients") as batch:
        for column in ("patient_ref", "patient_name", "search_text"):
            batch.alter_column(column, type_=sa.Text, existing_nullable=column != "search_text")
    if op.get_bind().dialect.name != "postgresql":
        op.execute("DROP TRIGGER IF EXISTS plan_patients_no_update")
        op.execute("DROP TRIGGER IF EXISTS plan_patients_no_delete")
        for verb in ("UPDATE", "DELETE"):
            op.execute(
                f"CREATE TRIGGER plan_patients_no_{verb.lower()} BEFORE {verb} ON plan_patients "
                "BEGIN SELECT RAISE(ABORT, 'plan_patients is append-only'); END"
            )


def _guards() -> None:
    """New append-only tables get the 0001 treatment; a data key is never deleted (its plan
    would become unreadable); on PostgreSQL TRUNCATE, which skips row triggers, is refused too."""
    if op.get_bind().dialect.name == "postgresql":
        for table in APPEND_ONLY_NEW:
            op.execute(
                f"CREATE TRIGGER {table}_append_only BEFORE UPDATE OR DELETE ON {table} "
                "FOR EACH ROW EXECUTE FUNCTION carepath_append_only()"
            )
        op.execute(
            "CREATE TRIGGER content_keys_no_delete BEFORE DELETE ON content_keys "
            "FOR EACH ROW EXECUTE FUNCTION carepath_append_only()"
        )
        for table in (*APPEND_ONLY_BEFORE, *APPEND_ONLY_NEW, "content_keys", "audit_head"):
            op.execute(
                f"CREATE TRIGGER {table}_no_truncate BEFORE TRUNCATE ON {table} "
                "FOR EACH STATEMENT EXECUTE FUNCTION carepath_append_only()"
            )
        return
    for table in APPEND_ONLY_NEW:
        for verb in ("UPDATE", "DELETE"):
            op.execute(
                f"CREATE TRIGGER {table}_no_{verb.lower()} BEFORE {verb} ON {table} "
                f"BEGIN SELECT RAISE(ABORT, '{table} is append-only'); END"
            )
    op.execute(
        "CREATE TRIGGER content_keys_no_delete BEFORE DELETE ON content_keys "
        "BEGIN SELECT RAISE(ABORT, 'content_keys rows are never deleted'); END"
    )


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        for table in (*APPEND_ONLY_BEFORE, *APPEND_ONLY_NEW, "content_keys", "audit_head"):
            op.execute(f"DROP TRIGGER IF EXISTS {table}_no_truncate ON {table}")
    for table in ("login_failures", "disclosures", "consents", "plan_subjects", "content_keys"):
        op.drop_table(table)
    with op.batch_alter_table("users") as batch:
        for column in ("totp_last_step", "totp_enabled", "totp_secret"):
            batch.drop_column(column)
    with op.batch_alter_table("api_tokens") as batch:
        batch.drop_column("expires_at")
    op.drop_index("ix_audit_log_plan", "audit_log")
    with op.batch_alter_table("audit_log") as batch:
        for column in ("content_mac", "detail", "address", "v"):
            batch.drop_column(column)
