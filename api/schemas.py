"""Request and response bodies of the JSON API (OpenAPI documents these).

A stored plan is returned as the contract's plan (§2; ``plan_id`` is the stored plan's id, so
``GET /v1/plans/{plan_id}`` finds it) plus one extra key, ``record``: version history, author,
links and the overrides recorded against it. The intake is never returned by the API.
"""

from __future__ import annotations

from datetime import date, datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints

from carepath.api.records import OverrideCount, OverrideRecord, PlanRecord, PlanSummary
from carepath.engine import CarePlan, RulePack

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
    )


Text = Annotated[str, StringConstraints(min_length=1, max_length=2000, strip_whitespace=True)]


class OverrideIn(BaseModel):
    """A clinician's edit or override of one part of the plan, with the reason."""

    model_config = ConfigDict(
        extra="forbid",
        frozen=True,
        json_schema_extra={
            "examples": [
                {
                    "code": "moud.buprenorphine",
                    "action": "override",
                    "reason": "Patient chose methadone after discussion; OTP has capacity this week.",
                    "replacement_kind": "consider",
                }
            ]
        },
    )

    code: Annotated[str, StringConstraints(pattern=r"^[a-z]+\.[a-z0-9_]+$", max_length=64)] = Field(
        description="The item, alert or level-of-care code as it appears in the plan."
    )
    action: Literal["edit", "override"] = Field(
        description="edit: wording or detail changed, intent kept; override: the clinician decides otherwise."
    )
    reason: Text
    section: Literal["item", "alert", "level_of_care"] | None = None
    phase: str | None = Field(default=None, max_length=40, description="Disambiguates an item code.")
    replacement_text: Text | None = None
    replacement_kind: Literal["recommend", "consider", "caution", "avoid", "remove"] | None = None


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

    @classmethod
    def of(cls, o: OverrideRecord) -> OverrideOut:
        return cls(
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


class StoredPlan(CarePlan):
    """The contract's care plan (§2) plus ``record`` (storage metadata)."""

    record: PlanRecordMeta

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

    @classmethod
    def of(cls, s: PlanSummary) -> PlanListItem:
        return cls(
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
