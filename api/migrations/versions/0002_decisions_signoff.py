"""Decisions of record, sign-off, review comments and the worklist's patient index.

- overrides gain ``dose`` (a modified dose or induction method), ``basis_sha256`` (the item as
  it stood when decided: a re-evaluation carries the decision over only while it is unchanged)
  and ``carried_from`` (the decision on the previous version it was copied from). New actions:
  accept, modify, decline, not_applicable (a missing-information row); edit and override stay.
- signatures: one per plan version (unique), append-only; a signed version takes no more
  decisions (service check, and a trigger on overrides).
- comments: reviewers' and clinicians' notes on a plan, append-only.
- plan_patients: patient name and MRN of each stored plan, for the organisation's worklist
  search (filled for existing plans from their stored intake), append-only.

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-02
"""

from __future__ import annotations

import json

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

TS = sa.DateTime(timezone=True)
APPEND_ONLY = ("signatures", "comments", "plan_patients")


def upgrade() -> None:
    # Plain ALTER TABLE ... ADD COLUMN (no table rebuild: 0001's append-only triggers stay).
    op.add_column("overrides", sa.Column("dose", sa.Text, nullable=True))
    op.add_column("overrides", sa.Column("basis_sha256", sa.String(64), nullable=True))
    op.add_column("overrides", sa.Column("carried_from", sa.Integer, nullable=True))
    op.create_table(
        "signatures",
        sa.Column("plan_id", sa.String(40), sa.ForeignKey("plans.id"), primary_key=True),
        sa.Column("org_id", sa.Integer, sa.ForeignKey("organisations.id"), nullable=False),
        sa.Column("signer_id", sa.Integer, sa.ForeignKey("users.id"), nullable=False),
        sa.Column("signed_at", TS, nullable=False),
        sa.Column("signer_name", sa.String(200), nullable=False),
        sa.Column("credentials", sa.String(200), nullable=False),
        sa.Column("content_sha256", sa.String(64), nullable=False),
    )
    op.create_table(
        "comments",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("plan_id", sa.String(40), sa.ForeignKey("plans.id"), nullable=False),
        sa.Column("org_id", sa.Integer, sa.ForeignKey("organisations.id"), nullable=False),
        sa.Column("author_id", sa.Integer, sa.ForeignKey("users.id"), nullable=False),
        sa.Column("created_at", TS, nullable=False),
        sa.Column("code", sa.String(64), nullable=True),
        sa.Column("text", sa.Text, nullable=False),
    )
    op.create_index("ix_comments_plan", "comments", ["plan_id"])
    patients = op.create_table(
        "plan_patients",
        sa.Column("plan_id", sa.String(40), sa.ForeignKey("plans.id"), primary_key=True),
        sa.Column("org_id", sa.Integer, nullable=False),
        sa.Column("patient_ref", sa.String(200), nullable=True),
        sa.Column("patient_name", sa.String(200), nullable=True),
        sa.Column("search_text", sa.String(402), nullable=False),
    )
    op.create_index("ix_plan_patients_org", "plan_patients", ["org_id"])
    _index_existing_plans(patients)
    _append_only_triggers()
    _no_decisions_once_signed()


def _index_existing_plans(patients: sa.Table) -> None:
    rows = op.get_bind().execute(sa.text("SELECT id, org_id, intake_json FROM plans")).all()
    values = []
    for plan_id, org_id, intake_json in rows:
        patient = json.loads(intake_json).get("patient", {})
        ref, name = patient.get("id"), patient.get("name")
        values.append(
            {
                "plan_id": plan_id,
                "org_id": org_id,
                "patient_ref": ref,
                "patient_name": name,
                "search_text": "\n".join(v.casefold() for v in (name, ref) if v),
            }
        )
    if values:
        op.bulk_insert(patients, values)


def _append_only_triggers() -> None:
    if op.get_bind().dialect.name == "postgresql":
        for table in APPEND_ONLY:  # carepath_append_only() comes from 0001
            op.execute(
                f"CREATE TRIGGER {table}_append_only BEFORE UPDATE OR DELETE ON {table} "
                "FOR EACH ROW EXECUTE FUNCTION carepath_append_only()"
            )
        return
    for table in APPEND_ONLY:
        for verb in ("UPDATE", "DELETE"):
            op.execute(
                f"CREATE TRIGGER {table}_no_{verb.lower()} BEFORE {verb} ON {table} "
                f"BEGIN SELECT RAISE(ABORT, '{table} is append-only'); END"
            )


def _no_decisions_once_signed() -> None:
    """Defence in depth: the service refuses first; the database refuses whatever gets past it."""
    if op.get_bind().dialect.name == "postgresql":
        op.execute(
            "CREATE FUNCTION carepath_unsigned_only() RETURNS trigger LANGUAGE plpgsql AS $$ "
            "BEGIN IF EXISTS (SELECT 1 FROM signatures WHERE plan_id = NEW.plan_id) THEN "
            "RAISE EXCEPTION 'plan % is signed', NEW.plan_id; END IF; RETURN NEW; END $$"
        )
        op.execute(
            "CREATE TRIGGER overrides_unsigned_only BEFORE INSERT ON overrides "
            "FOR EACH ROW EXECUTE FUNCTION carepath_unsigned_only()"
        )
        return
    op.execute(
        "CREATE TRIGGER overrides_unsigned_only BEFORE INSERT ON overrides "
        "WHEN EXISTS (SELECT 1 FROM signatures WHERE plan_id = NEW.plan_id) "
        "BEGIN SELECT RAISE(ABORT, 'plan is signed'); END"
    )


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP TRIGGER IF EXISTS overrides_unsigned_only ON overrides")
        op.execute("DROP FUNCTION IF EXISTS carepath_unsigned_only()")
    else:
        op.execute("DROP TRIGGER IF EXISTS overrides_unsigned_only")
    for table in ("plan_patients", "comments", "signatures"):
        op.drop_table(table)
    for column in ("carried_from", "basis_sha256", "dose"):
        op.drop_column("overrides", column)
