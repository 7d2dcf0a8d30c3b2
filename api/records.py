"""What the storage hands back: plain frozen dataclasses, no SQLAlchemy (that stays in db.py).

Callers (routes, the web form, FHIR/CDS adapters) depend on these, never on table rows.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Literal

from carepath.engine import CarePlan, Intake, parse_intake_json

__all__ = [
    "ROLES",
    "Role",
    "Organisation",
    "User",
    "Principal",
    "NewPlan",
    "PlanRecord",
    "PlanSummary",
    "PlanFilter",
    "NewOverride",
    "OverrideRecord",
    "OverrideCount",
    "AuditEntry",
    "NewSignature",
    "SignatureRecord",
    "NewComment",
    "CommentRecord",
    "DECISION_ACTIONS",
    "PLAN_STATUSES",
    "MISSING_SECTION",
    "NewCdsCard",
    "CdsCardRecord",
    "NewFeedback",
    "FeedbackStat",
    "Prefill",
    "PLAN_ID_RE",
    "is_plan_id",
]

Role = Literal["clinician", "reviewer", "admin"]
ROLES: tuple[Role, ...] = ("clinician", "reviewer", "admin")

PLAN_ID_RE = re.compile(r"^pl_[A-Za-z0-9_-]{22}$")
DECISION_ACTIONS = ("accept", "modify", "decline")
"""Decisions of record on a plan line (overrides' ``action``); ``edit`` and ``override`` are the
older wording of modify/decline and are still read; ``not_applicable`` marks a missing-information row."""
PLAN_STATUSES = ("draft", "signed")
MISSING_SECTION = "missing"
"""``overrides.section`` of a "not applicable" mark on a missing-information row (the API says
``section: missing_information``)."""


def is_plan_id(value: str) -> bool:
    return bool(PLAN_ID_RE.match(value))


@dataclass(frozen=True)
class Organisation:
    id: int
    slug: str
    name: str


@dataclass(frozen=True)
class User:
    id: int
    email: str
    role: Role
    org_id: int
    org_slug: str
    active: bool = True


@dataclass(frozen=True)
class Principal:
    """An authenticated caller: the user and how they proved it."""

    user: User
    via: Literal["bearer", "session"]
    session_token: str | None = None  # the raw session cookie value (CSRF tokens derive from it)

    @property
    def org_id(self) -> int:
        return self.user.org_id


@dataclass(frozen=True)
class NewPlan:
    id: str
    version: int
    previous_id: str | None
    root_id: str
    org_id: int
    author_id: int
    created_at: datetime
    intake_json: str
    intake_sha256: str
    ruleset_id: str
    ruleset_version: str
    ruleset_sha256: str
    plan_json: str
    level_of_care: str
    assessment_date: date
    jurisdiction: str
    idempotency_key: str | None
    request_sha256: str | None
    codes: tuple[tuple[str, str], ...]  # (code, kind) incl. alerts ("alert") and the level ("level")
    patient_ref: str | None = None  # MRN as typed (worklist search; plan_patients)
    patient_name: str | None = None


@dataclass(frozen=True)
class PlanRecord:
    id: str
    version: int
    previous_id: str | None
    root_id: str
    org_id: int
    author_id: int
    author_email: str
    created_at: datetime
    intake_json: str
    intake_sha256: str
    ruleset_id: str
    ruleset_version: str
    ruleset_sha256: str
    plan_json: str
    level_of_care: str
    idempotency_key: str | None
    request_sha256: str | None
    next_id: str | None = None

    def plan(self) -> CarePlan:
        return CarePlan.model_validate_json(self.plan_json)

    @classmethod
    def of_new(cls, new: NewPlan, author_email: str) -> PlanRecord:
        """The record a just-inserted plan reads back as (no newer version yet), without
        reading it back."""
        return cls(
            id=new.id,
            version=new.version,
            previous_id=new.previous_id,
            root_id=new.root_id,
            org_id=new.org_id,
            author_id=new.author_id,
            author_email=author_email,
            created_at=new.created_at,
            intake_json=new.intake_json,
            intake_sha256=new.intake_sha256,
            ruleset_id=new.ruleset_id,
            ruleset_version=new.ruleset_version,
            ruleset_sha256=new.ruleset_sha256,
            plan_json=new.plan_json,
            level_of_care=new.level_of_care,
            idempotency_key=new.idempotency_key,
            request_sha256=new.request_sha256,
        )

    def intake(self) -> Intake:
        return parse_intake_json(self.intake_json)


@dataclass(frozen=True)
class PlanSummary:
    id: str
    version: int
    previous_id: str | None
    next_id: str | None
    created_at: datetime
    assessment_date: date
    jurisdiction: str
    level_of_care: str
    ruleset_id: str
    ruleset_version: str
    author_id: int
    author_email: str | None = None
    status: str = "draft"
    signed_at: datetime | None = None
    signer_email: str | None = None
    patient_ref: str | None = None
    patient_name: str | None = None
    alerts: tuple[str, ...] = ()


@dataclass(frozen=True)
class PlanFilter:
    """Search by plan metadata only (never patient data)."""

    created_from: datetime | None = None
    created_before: datetime | None = None
    level_of_care: str | None = None
    code: str | None = None
    kind: str | None = None
    author_id: int | None = None
    include_superseded: bool = False
    status: str | None = None  # "draft" | "signed"
    patient: str | None = None
    """Part of the patient's name or MRN (case-insensitive). Comes from a request BODY only:
    patient data never travels in a URL."""


@dataclass(frozen=True)
class NewOverride:
    plan_id: str
    org_id: int
    author_id: int
    created_at: datetime
    section: str
    code: str
    action: str
    reason: str
    replacement_text: str | None
    replacement_kind: str | None
    rule_ids: tuple[str, ...]
    dose: str | None = None
    basis_sha256: str | None = None
    carried_from: int | None = None


@dataclass(frozen=True)
class OverrideRecord:
    id: int
    plan_id: str
    author_id: int
    created_at: datetime
    section: str
    code: str
    action: str
    reason: str
    replacement_text: str | None
    replacement_kind: str | None
    rule_ids: tuple[str, ...]
    dose: str | None = None
    basis_sha256: str | None = None
    carried_from: int | None = None
    author_email: str | None = None


@dataclass(frozen=True)
class NewSignature:
    plan_id: str
    org_id: int
    signer_id: int
    signed_at: datetime
    signer_name: str
    credentials: str
    content_sha256: str


@dataclass(frozen=True)
class SignatureRecord:
    plan_id: str
    signer_id: int
    signer_email: str
    signed_at: datetime
    signer_name: str
    credentials: str
    content_sha256: str


@dataclass(frozen=True)
class NewComment:
    plan_id: str
    org_id: int
    author_id: int
    created_at: datetime
    text: str
    code: str | None = None


@dataclass(frozen=True)
class CommentRecord:
    id: int
    plan_id: str
    author_id: int
    author_email: str
    author_role: str
    created_at: datetime
    text: str
    code: str | None = None


@dataclass(frozen=True)
class OverrideCount:
    rule_id: str
    overrides: int
    plans: int
    by_action: dict[str, int] = field(default_factory=dict)
    codes: tuple[str, ...] = ()


@dataclass(frozen=True)
class AuditEntry:
    """One audit row. ``at`` is kept as text so its canonical form never changes."""

    seq: int
    at: str
    request_id: str
    actor_id: int | None
    org_id: int | None
    plan_id: str | None
    action: str
    outcome: str
    prev_hash: str
    hash: str
    v: int = 1  # 1: SHA-256 chain (before 0004); 2: keyed chain (api.audit)
    address: str | None = None  # the client's address (sign-ins, anonymous attempts, every row)
    detail: str | None = None  # e.g. "count=480 window_s=60"; never patient data
    content_mac: str | None = None  # keyed hash of the stored plan/override this row wrote


# -- CDS Hooks (cards shown, feedback on them, form prefills) ------------------------------------


@dataclass(frozen=True)
class NewCdsCard:
    """A card as it was shown: what it was about and which rules made it (no patient data)."""

    card_uuid: str
    org_id: int
    service_id: str
    hook_instance: str
    kind: str  # "alert" | "summary" | "missing"
    code: str
    rule_ids: tuple[str, ...]
    suggestions: tuple[str, ...]  # suggestion uuids
    ruleset_id: str
    ruleset_version: str
    issued_at: datetime


CdsCardRecord = NewCdsCard


@dataclass(frozen=True)
class NewFeedback:
    card_uuid: str
    org_id: int
    outcome: str  # "accepted" | "overridden"
    reason_system: str | None
    reason_code: str | None
    reason_display: str | None
    has_comment: bool  # the free-text comment itself is not stored (it may hold patient data)
    accepted_suggestions: tuple[str, ...]
    outcome_at: datetime
    received_at: datetime
    actor_id: int | None
    client: str | None


@dataclass(frozen=True)
class FeedbackStat:
    """One rule in one period: cards shown, clinicians' outcomes and their override reasons."""

    rule_id: str
    period: str
    cards: int
    accepted: int
    overridden: int
    reasons: dict[str, int] = field(default_factory=dict)

    @property
    def override_rate(self) -> float | None:
        answered = self.accepted + self.overridden
        return round(self.overridden / answered, 4) if answered else None


@dataclass(frozen=True)
class Prefill:
    """What a CDS call read from the chart, kept for the web form behind an opaque token."""

    org_id: int
    intake_json: str
    readings_json: str
    expires_at: datetime
