"""CDS Hooks: cards shown (with their rules), clinicians' feedback on them, the calling EHRs' JWT
ids (replay guard) and form prefills read from the chart.

Revision ID: 0003
Revises: 0002 (the lead re-links the chain at merge time)
Create Date: 2026-12-02
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

TS = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "cds_cards",
        sa.Column("card_uuid", sa.String(64), primary_key=True),
        sa.Column("org_id", sa.Integer, sa.ForeignKey("organisations.id"), nullable=False),
        sa.Column("service_id", sa.String(64), nullable=False),
        sa.Column("hook_instance", sa.String(100), nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("code", sa.String(64), nullable=False),
        sa.Column("suggestions", sa.Text, nullable=False),
        sa.Column("ruleset_id", sa.String(100), nullable=False),
        sa.Column("ruleset_version", sa.String(40), nullable=False),
        sa.Column("issued_at", TS, nullable=False),
    )
    op.create_index("ix_cds_cards_org_issued", "cds_cards", ["org_id", "issued_at"])
    op.create_table(
        "cds_card_rules",
        sa.Column("card_uuid", sa.String(64), sa.ForeignKey("cds_cards.card_uuid"), primary_key=True),
        sa.Column("rule_id", sa.String(40), primary_key=True),
    )
    op.create_index("ix_cds_card_rules_rule", "cds_card_rules", ["rule_id"])
    op.create_table(
        "cds_feedback",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("card_uuid", sa.String(64), sa.ForeignKey("cds_cards.card_uuid"), nullable=False),
        sa.Column("org_id", sa.Integer, sa.ForeignKey("organisations.id"), nullable=False),
        sa.Column("outcome", sa.String(16), nullable=False),
        sa.Column("reason_system", sa.String(200), nullable=True),
        sa.Column("reason_code", sa.String(100), nullable=True),
        sa.Column("reason_display", sa.String(200), nullable=True),
        sa.Column("has_comment", sa.Boolean, nullable=False),
        sa.Column("accepted_suggestions", sa.Text, nullable=False),
        sa.Column("outcome_at", TS, nullable=False),
        sa.Column("received_at", TS, nullable=False),
        sa.Column("actor_id", sa.Integer, nullable=True),
        sa.Column("client", sa.String(300), nullable=True),
        sa.CheckConstraint("outcome IN ('accepted', 'overridden')", name="ck_cds_feedback_outcome"),
    )
    op.create_index("ix_cds_feedback_card", "cds_feedback", ["card_uuid"])
    op.create_index("ix_cds_feedback_org_outcome_at", "cds_feedback", ["org_id", "outcome_at"])
    op.create_table(
        "cds_jwt_ids",
        sa.Column("issuer", sa.String(300), primary_key=True),
        sa.Column("jti", sa.String(200), primary_key=True),
        sa.Column("expires_at", TS, nullable=False),
    )
    op.create_index("ix_cds_jwt_ids_expires", "cds_jwt_ids", ["expires_at"])
    op.create_table(
        "cds_prefills",
        sa.Column("token_sha256", sa.String(64), primary_key=True),
        sa.Column("org_id", sa.Integer, sa.ForeignKey("organisations.id"), nullable=False),
        sa.Column("created_at", TS, nullable=False),
        sa.Column("expires_at", TS, nullable=False),
        sa.Column("intake_json", sa.Text, nullable=False),
        sa.Column("readings_json", sa.Text, nullable=False),
    )


def downgrade() -> None:
    for table in ("cds_prefills", "cds_jwt_ids", "cds_feedback", "cds_card_rules", "cds_cards"):
        op.drop_table(table)
