"""Request and response bodies of the JSON API (OpenAPI documents these).

A stored plan is returned as the contract's plan (§2; ``plan_id`` is the stored plan's id, so
``GET /v1/plans/{plan_id}`` finds it) plus one extra key, ``record``: version history, author,
links and the overrides recorded against it. The intake is never returned by the API.
"""

from __future__ import annotations

from datetime import date, datetime
from typing import TYPE_CHECKING, Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, model_validator

from carepath.api.decisions import activity_status, decisions_of, verify_signature
from carepath.api.records import (
    CommentRecord,
    OverrideCount,
    OverrideRecord,
    PlanRecord,
    PlanSummary,
    SignatureRecord,
)
from carepath.engine import CarePlan, RulePack
from carepath.reports.record import Change, Decision, ReviewFlag

if TYPE_CHECKING:
    from carepath.api.service import PlanView

__all__ = [
    "ErrorBody",
    "ValidationErrorBody",
    "Links",
    "OverrideIn",
    "OverrideOut",
    "PlanRecordMeta",
    "StoredPlan",
    "PlanListItem",
    "PlanPage",
    "OverrideSummary",
    "RuleCatalogue",
    "SignIn",
    "SignatureOut",
    "CommentIn",
    "CommentOut",
    "DecisionOut",
    "DecisionsOut",
    "PlanSearch",
    "Health",
    "plan_links",
]


class _Out(BaseModel):
    model_config = ConfigDict(frozen=True)


class ErrorBody(_Out):
    error: str = Field(examples=["not_found"])
    message: str = Field(examples=["No such plan."])
    request_id: str = Field(examples=["3f6c1b9e2a7d4e0f9b8a7c6d5e4f3a2b"])


class FieldError(_Out):
    field: str = Field(examples=["patient.age"])
    message: str = Field(examples=["must be at least 12"])


class ValidationErrorBody(_Out):
    errors: list[FieldError]
    request_id: str


class Links(_Out):
    self: str
    report_html: str
    report_pdf: str
    fhir: str
    reevaluate: str
    overrides: str
    previous: str | None = None
    next: str | None = None
    decisions: str | None = None
    sign: str | None = None
    comments: str | None = None


def plan_links(plan_id: str, previous_id: str | None, next_id: str | None) -> Links:
    base = f"/v1/plans/{plan_id}"
    return Links(
        self=base,
        report_html=f"{base}/report.html",
        report_pdf=f"{base}/report.pdf",
        fhir=f"{base}/fhir",
        reevaluate=f"{base}/reevaluate",
        overrides=f"{base}/overrides",
        previous=f"/v1/plans/{previous_id}" if previous_id else None,
        next=f"/v1/plans/{next_id}" if next_id else None,
        decisions=f"{base}/decisions",
        sign=f"{base}/sign",
        comments=f"{base}/comments",
    )


Text = Annotated[str, StringConstraints(min_length=1, max_length=2000, strip_whitespace=True)]


class OverrideIn(BaseModel):
    """A clinician's decision on one line of the plan (accept, modify, decline), a missing-information
    row marked not applicable, or an older-style edit/override. Declines and overrides need a
    reason; a modification needs new wording or a dose."""

    model_config = ConfigDict(
        extra="forbid",
        frozen=True,
        json_schema_extra={
            "examples": [
                {
                    "code": "moud.buprenorphine",
                    "action": "modify",
                    "dose": "4 mg sublingual, then 4 mg after 1 hour if COWS still 8 or more",
                    "reason": "Home start agreed; night-shift worker.",
                },
                {"code": "psy.group", "action": "decline", "reason": "Already in a group programme."},
                {
                    "code": "social.days_since_release",
                    "action": "not_applicable",
                    "reason": "Never incarcerated.",
                },
            ]
        },
    )

    code: Annotated[str, StringConstraints(pattern=r"^[a-z][a-z_]*\.[a-z0-9_]+$", max_length=64)] = Field(
        description="The item, alert or level-of-care code as it appears in the plan (for not_applicable: "
        "the missing-information field, e.g. social.days_since_release)."
    )
    action: Literal["accept", "modify", "decline", "not_applicable", "edit", "override"] = Field(
        description="accept / modify (new text or dose) / decline (with a reason) a line; not_applicable: a "
        "missing-information row that does not apply. edit and override: the older wording of modify "
        "and decline (override with a replacement kind)."
    )
    reason: Text | None = Field(default=None, description="Required to decline, edit or override.")
    section: Literal["item", "alert", "level_of_care", "missing_information"] | None = None
    phase: str | None = Field(default=None, max_length=40, description="Disambiguates an item code.")
    replacement_text: Text | None = Field(default=None, description="modify/edit: the new wording.")
    replacement_kind: Literal["recommend", "consider", "caution", "avoid", "remove"] | None = None
    dose: Annotated[str, StringConstraints(min_length=1, max_length=200, strip_whitespace=True)] | None = (
        Field(default=None, description="modify: the dose or induction method, as it should be printed.")
    )

    @model_validator(mode="after")
    def _complete(self) -> OverrideIn:
        if self.action in ("decline", "edit", "override") and not self.reason:
            raise ValueError("reason: give the reason for this decision")
        if self.action == "modify" and not (self.replacement_text or self.dose):
            raise ValueError("replacement_text: give the new wording or the dose")
        return self


class OverrideOut(_Out):
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
    rule_ids: list[str]
    dose: str | None = None
    carried_from: int | None = None
    author_email: str | None = None

    @classmethod
    def of(cls, o: OverrideRecord) -> OverrideOut:
        return cls(
            dose=o.dose,
            carried_from=o.carried_from,
            author_email=o.author_email,
            id=o.id,
            plan_id=o.plan_id,
            author_id=o.author_id,
            created_at=o.created_at,
            section=o.section,
            code=o.code,
            action=o.action,
            reason=o.reason,
            replacement_text=o.replacement_text,
            replacement_kind=o.replacement_kind,
            rule_ids=list(o.rule_ids),
        )


class PlanRecordMeta(_Out):
    version: int = Field(description="1 for a new plan; n+1 for a re-evaluation of version n.")
    previous_id: str | None
    next_id: str | None = Field(description="The newer version, if this one was re-evaluated.")
    root_id: str = Field(description="Id of version 1 of this plan's history.")
    created_at: datetime
    author_id: int
    author_email: str
    ruleset_sha256: str
    intake_sha256: str
    links: Links
    overrides: list[OverrideOut]
    status: Literal["draft", "signed"] = "draft"
    signature: SignatureOut | None = None
    decisions: dict[str, DecisionOut] = Field(
        default_factory=dict,
        description="The decision of record per code (latest decision; on a "
        "signed version, undecided lines are accepted at signing).",
    )
    review_flags: list[FlagOut] = Field(
        default_factory=list, description="Decisions on the previous version that were not carried over."
    )
    changes: list[ChangeOut] = Field(
        default_factory=list, description="What differs from the previous version."
    )
    comments: list[CommentOut] = Field(default_factory=list)


class SignIn(BaseModel):
    """Sign this version: status draft -> signed. Clinicians only; the latest version only, once."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    name: Annotated[str, StringConstraints(min_length=1, max_length=200, strip_whitespace=True)] = Field(
        description='The signer\'s name as it should print ("Dr Ana Ruiz").'
    )
    credentials: Annotated[str, StringConstraints(max_length=200, strip_whitespace=True)] = ""
    attest: Literal[True] = Field(
        description="I have reviewed every line; lines I did not change are accepted as suggested."
    )


class SignatureOut(_Out):
    signer: str
    name: str
    credentials: str
    signed_at: datetime
    content_sha256: str
    verified: bool = Field(description="The signed content still hashes to content_sha256.")

    @classmethod
    def of(cls, sig: SignatureRecord, verified: bool) -> SignatureOut:
        return cls(
            signer=sig.signer_email,
            name=sig.signer_name,
            credentials=sig.credentials,
            signed_at=sig.signed_at,
            content_sha256=sig.content_sha256,
            verified=verified,
        )


class CommentIn(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    text: Text
    code: Annotated[str, StringConstraints(pattern=r"^[a-z]+\.[a-z0-9_]+$", max_length=64)] | None = None


class CommentOut(_Out):
    id: int
    author: str
    role: str
    created_at: datetime
    text: str
    code: str | None = None

    @classmethod
    def of(cls, c: CommentRecord) -> CommentOut:
        return cls(
            id=c.id,
            author=c.author_email,
            role=c.author_role,
            created_at=c.created_at,
            text=c.text,
            code=c.code,
        )


class DecisionOut(_Out):
    status: Literal["accepted", "modified", "declined"]
    reason: str
    by: str
    at: datetime
    text: str | None = None
    dose: str | None = None
    kind: str | None = None
    carried: bool = False
    at_signing: bool = False
    fhir_activity_status: str

    @classmethod
    def of(cls, d: Decision, fhir_status: str) -> DecisionOut:
        return cls(
            status=d.status,
            reason=d.reason,
            by=d.by,
            at=d.at,
            text=d.text,
            dose=d.dose,
            kind=d.kind,
            carried=d.carried,
            at_signing=d.at_signing,
            fhir_activity_status=fhir_status,
        )


class DecisionsOut(_Out):
    plan_id: str
    version: int
    status: Literal["draft", "signed"]
    decisions: dict[str, DecisionOut]


class FlagOut(_Out):
    code: str
    previous: str
    why: str

    @classmethod
    def of(cls, f: ReviewFlag) -> FlagOut:
        return cls(code=f.code, previous=f.previous, why=f.why)


class ChangeOut(_Out):
    what: str
    code: str
    text: str

    @classmethod
    def of(cls, c: Change) -> ChangeOut:
        return cls(what=c.what, code=c.code, text=c.text)


class PlanSearch(BaseModel):
    """Search the worklist by patient (in the body: patient data never goes in a URL)."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    patient: Annotated[str, StringConstraints(min_length=1, max_length=200, strip_whitespace=True)] | None = (
        Field(default=None, description="Part of the patient's name or MRN (case-insensitive).")
    )
    status: Literal["draft", "signed"] | None = None
    include_superseded: bool = False
    limit: Annotated[int, Field(ge=1, le=100)] = 20
    cursor: Annotated[str, StringConstraints(max_length=200)] | None = None


PlanRecordMeta.model_rebuild()


class StoredPlan(CarePlan):
    """The contract's care plan (§2) plus ``record`` (storage metadata)."""

    record: PlanRecordMeta

    @classmethod
    def of_view(cls, view: PlanView) -> StoredPlan:
        """With the decisions of record, the sign-off, the review flags, changes and comments."""
        base = cls.of(view.record, view.overrides)
        rec = view.recorded
        sig = view.signature
        verified = sig is not None and verify_signature(view)
        meta = base.record.model_copy(
            update={
                "status": rec.status,
                "signature": SignatureOut.of(sig, verified) if sig is not None else None,
                "decisions": {
                    c: DecisionOut.of(d, activity_status(d)) for c, d in decisions_of(view).items()
                },
                "review_flags": [FlagOut.of(f) for f in rec.flags],
                "changes": [ChangeOut.of(c) for c in rec.changes],
                "comments": [CommentOut.of(c) for c in view.comments],
            }
        )
        return base.model_copy(update={"record": meta})

    @classmethod
    def of(
        cls, rec: PlanRecord, overrides: tuple[OverrideRecord, ...] | list[OverrideRecord] = ()
    ) -> StoredPlan:
        data: dict[str, Any] = rec.plan().model_dump()
        return cls.model_validate({**data, "record": record_meta(rec, overrides)})


def record_meta(
    rec: PlanRecord, overrides: tuple[OverrideRecord, ...] | list[OverrideRecord] = ()
) -> PlanRecordMeta:
    return PlanRecordMeta(
        version=rec.version,
        previous_id=rec.previous_id,
        next_id=rec.next_id,
        root_id=rec.root_id,
        created_at=rec.created_at,
        author_id=rec.author_id,
        author_email=rec.author_email,
        ruleset_sha256=rec.ruleset_sha256,
        intake_sha256=rec.intake_sha256,
        links=plan_links(rec.id, rec.previous_id, rec.next_id),
        overrides=[OverrideOut.of(o) for o in overrides],
    )


def fresh_stored_plan_json(rec: PlanRecord) -> bytes:
    """``StoredPlan.of(rec)`` as JSON for a plan THIS process just wrote (its ``plan_json`` is
    the current CarePlan's own ``model_dump_json``): the record metadata is spliced into the
    stored JSON instead of parsing, re-validating and re-serializing ~45 KB of plan. Rows
    read back from storage (possibly written by an older version) go through
    ``StoredPlan.of``, which fills in fields added since."""
    body = rec.plan_json.rstrip()
    if not body.endswith("}"):
        raise ValueError("stored plan JSON is not an object")
    return f'{body[:-1]},"record":{record_meta(rec).model_dump_json()}}}'.encode()


class PlanListItem(_Out):
    plan_id: str
    version: int
    previous_id: str | None
    next_id: str | None
    created_at: datetime
    assessment_date: date
    jurisdiction: str
    level_of_care: str
    ruleset: dict[str, str]
    author_id: int
    links: Links
    status: Literal["draft", "signed"] = "draft"
    signed_at: datetime | None = None
    signer: str | None = None
    author: str | None = Field(default=None, description="The clinician who created this version (email).")
    patient_id: str | None = Field(default=None, description="The patient's MRN from the intake, if given.")
    patient_name: str | None = None
    alerts: list[str] = Field(default_factory=list, description="Alert codes of the plan.")

    @classmethod
    def of(cls, s: PlanSummary) -> PlanListItem:
        return cls(
            status=s.status,  # type: ignore[arg-type]
            signed_at=s.signed_at,
            signer=s.signer_email,
            author=s.author_email,
            patient_id=s.patient_ref,
            patient_name=s.patient_name,
            alerts=list(s.alerts),
            plan_id=s.id,
            version=s.version,
            previous_id=s.previous_id,
            next_id=s.next_id,
            created_at=s.created_at,
            assessment_date=s.assessment_date,
            jurisdiction=s.jurisdiction,
            level_of_care=s.level_of_care,
            ruleset={"id": s.ruleset_id, "version": s.ruleset_version},
            author_id=s.author_id,
            links=plan_links(s.id, s.previous_id, s.next_id),
        )


class PlanPage(_Out):
    items: list[PlanListItem]
    next_cursor: str | None = Field(description="Pass as ?cursor= for the next page; null on the last.")


class OverrideRuleCount(_Out):
    rule_id: str
    overrides: int
    plans: int
    by_action: dict[str, int]
    codes: list[str]

    @classmethod
    def of(cls, c: OverrideCount) -> OverrideRuleCount:
        return cls(
            rule_id=c.rule_id,
            overrides=c.overrides,
            plans=c.plans,
            by_action=c.by_action,
            codes=list(c.codes),
        )


class OverrideSummary(_Out):
    organisation: str
    since: datetime | None
    before: datetime | None
    total_overrides: int
    rules: list[OverrideRuleCount]


class CatalogueCitation(_Out):
    key: str
    title: str
    locator: str


class CatalogueThen(_Out):
    code: str
    kind: str | None
    severity: str | None


class CatalogueRule(_Out):
    id: str
    version: int
    title: str
    phase: str
    then: list[CatalogueThen]
    rationale: str
    citations: list[CatalogueCitation]
    evidence_grade: str
    confirmation: str
    review_date: date


class RuleCatalogue(_Out):
    id: str
    version: str
    title: str
    effective_date: date
    sha256: str
    rules: list[CatalogueRule]

    @classmethod
    def of(cls, pack: RulePack) -> RuleCatalogue:
        rules = []
        for pr in pack.rules:
            r = pr.rule
            rules.append(
                CatalogueRule(
                    id=r.id,
                    version=r.version,
                    title=r.title,
                    phase=r.phase,
                    then=[CatalogueThen(code=t.code, kind=t.kind, severity=t.severity) for t in r.then],
                    rationale=r.rationale,
                    citations=[
                        CatalogueCitation(
                            key=c.key,
                            title=pack.citations[c.key].title if c.key in pack.citations else c.key,
                            locator=c.locator,
                        )
                        for c in r.citations
                    ],
                    evidence_grade=r.evidence_grade,
                    confirmation=r.confirmation,
                    review_date=r.review_date,
                )
            )
        return cls(
            id=pack.id,
            version=pack.version,
            title=pack.title,
            effective_date=pack.effective_date,
            sha256=pack.sha256,
            rules=rules,
        )


class Health(_Out):
    status: Literal["ok", "degraded"]
    database: Literal["ok", "unreachable"]
    ruleset: dict[str, str]
    version: str
