"""/v1/plans: create, re-evaluate, read (JSON, HTML, PDF), list and search, decisions of record,
sign-off and review comments."""

from __future__ import annotations

import json
from datetime import UTC, date, datetime, time, timedelta
from typing import Annotated, Any, Literal, TypeVar

from fastapi import APIRouter, Header, Query, Response
from fastapi.responses import HTMLResponse
from pydantic import BaseModel, ValidationError
from starlette.concurrency import run_in_threadpool

from carepath.api.decisions import activity_status, decisions_of
from carepath.api.deps import (
    PlanCommenter,
    PlanLister,
    PlanOverrider,
    PlanReader,
    PlanReevaluator,
    PlansDep,
    PlanSigner,
    PlanWriter,
    RawBody,
    ReportHtmlReader,
    ReportPdfReader,
    RuntimeDep,
)
from carepath.api.errors import InvalidRequest
from carepath.api.middleware import DEFAULT_CSP
from carepath.api.records import PlanFilter, PlanRecord
from carepath.api.rendering import render_html_report, render_pdf_report, style_hashes
from carepath.api.schemas import (
    CommentIn,
    CommentOut,
    DecisionOut,
    DecisionsOut,
    ErrorBody,
    OverrideIn,
    OverrideOut,
    PlanListItem,
    PlanPage,
    PlanSearch,
    SignIn,
    StoredPlan,
    ValidationErrorBody,
    fresh_stored_plan_json,
)
from carepath.api.service import OverrideRequest, PlanView, SignRequest
from carepath.engine.errors import FieldProblem, problems_from_validation

router = APIRouter(tags=["plans"])  # full paths, no prefix: the access log shows route.path

IdempotencyKey = Annotated[
    str | None,
    Header(
        alias="Idempotency-Key",
        description="Makes retries safe: the same key with the same intake returns the stored plan "
        "(header Idempotent-Replayed: true); with a different intake, 409. Unique per user.",
        max_length=400,
    ),
]
Audience = Annotated[Literal["clinician", "patient"], Query(description="clinician draft or patient summary")]
Language = Annotated[
    Literal["en", "es", "de"] | None,
    Query(description="Patient summary language (default: the intake's preferences.language)."),
]
CODE = r"^[a-z]+\.[a-z0-9_]+$"
FIRST_DAY, LAST_DAY = date(2000, 1, 1), date(2999, 12, 31)  # 9999-12-31 + 1 day overflowed (500)
Appendix = Annotated[
    bool,
    Query(
        description="Clinician draft: print the evidence appendix (rationale, rule ids, sources, the "
        "original suggestions). The JSON always carries them."
    ),
]

_ERRORS: dict[int | str, dict[str, Any]] = {
    401: {"model": ErrorBody, "description": "No or invalid credentials."},
    403: {"model": ErrorBody, "description": "Your role may not do this (or CSRF check failed)."},
}
_NOT_FOUND: dict[int | str, dict[str, Any]] = {
    404: {"model": ErrorBody, "description": "No such plan in your organisation."}
}
_INVALID: dict[int | str, dict[str, Any]] = {
    422: {"model": ValidationErrorBody, "description": "One entry per offending field; values never echoed."}
}
_EXAMPLE_INTAKE = {
    "assessment_date": "2026-03-02",
    "jurisdiction": "US",
    "patient": {"age": 34, "sex_at_birth": "male"},
    "stage": "active_use",
    "readiness": "preparation",
    "substance_use": {"opioids": ["fentanyl"], "route": "injection", "cows_score": 6, "last_use_hours": 20},
    "preferences": {"medication": "buprenorphine", "setting": "outpatient"},
}


def _intake_body(required: bool) -> dict[str, Any]:
    return {
        "requestBody": {
            "required": required,
            "content": {
                "application/json": {
                    "schema": {"$ref": "#/components/schemas/Intake"},
                    "example": _EXAMPLE_INTAKE,
                }
            },
        }
    }


def _created(record: PlanRecord, replayed: bool) -> Response:
    """201 with the stored plan. A plan written just now is serialized straight from its
    stored JSON (schemas.fresh_stored_plan_json); a replayed one goes through StoredPlan."""
    body = StoredPlan.of(record).model_dump_json().encode() if replayed else fresh_stored_plan_json(record)
    headers = {"Location": f"/v1/plans/{record.id}"}
    if replayed:
        headers["Idempotent-Replayed"] = "true"
    return Response(body, status_code=201, media_type="application/json", headers=headers)


@router.post(
    "/v1/plans",
    name="plan.create",
    status_code=201,
    response_model=StoredPlan,
    summary="Evaluate an intake and store the draft plan",
    responses={**_ERRORS, **_INVALID, 409: {"model": ErrorBody, "description": "Idempotency-Key reused."}},
    openapi_extra=_intake_body(required=True),
)
def create_plan(caller: PlanWriter, plans: PlansDep, body: RawBody, key: IdempotencyKey = None) -> Response:
    record, replayed = plans.create(caller, body, idempotency_key=key)
    return _created(record, replayed)


@router.post(
    "/v1/plans/{plan_id}/reevaluate",
    name="plan.reevaluate",
    status_code=201,
    response_model=StoredPlan,
    summary="Make a new version of a plan (corrected intake, or the stored one under the current rules)",
    description="With a body: the corrected intake. Without one: the stored intake is evaluated again "
    "under the rule pack now loaded. Only the latest version can be re-evaluated (409 otherwise, "
    "with latest_id).",
    responses={**_ERRORS, **_NOT_FOUND, **_INVALID, 409: {"model": ErrorBody}},
    openapi_extra=_intake_body(required=False),
)
def reevaluate_plan(
    plan_id: str,
    caller: PlanReevaluator,
    plans: PlansDep,
    body: RawBody,
    key: IdempotencyKey = None,
) -> Response:
    record, replayed = plans.reevaluate(caller, plan_id, body if body.strip() else None, idempotency_key=key)
    return _created(record, replayed)


@router.get(
    "/v1/plans",
    name="plan.list",
    response_model=PlanPage,
    summary="List and search your organisation's plans (by plan metadata only)",
    responses={**_ERRORS, **_INVALID},
)
def list_plans(
    caller: PlanLister,
    plans: PlansDep,
    created_from: Annotated[
        date | None, Query(ge=FIRST_DAY, le=LAST_DAY, description="Created on or after this day (UTC).")
    ] = None,
    created_to: Annotated[
        date | None, Query(ge=FIRST_DAY, le=LAST_DAY, description="Created on or before this day (UTC).")
    ] = None,
    level_of_care: Annotated[str | None, Query(pattern=CODE, max_length=64, examples=["loc.otp"])] = None,
    code: Annotated[
        str | None, Query(pattern=CODE, max_length=64, description="Any item, alert or level code.")
    ] = None,
    kind: Annotated[
        Literal["recommend", "consider", "caution", "avoid", "alert", "level"] | None,
        Query(description="With code: only where the code has this kind."),
    ] = None,
    author: Annotated[Literal["any", "me"], Query()] = "any",
    include_superseded: Annotated[bool, Query(description="Also versions that were re-evaluated.")] = False,
    status: Annotated[Literal["draft", "signed"] | None, Query(description="Draft or signed.")] = None,
    limit: Annotated[int, Query(ge=1, le=100)] = 20,
    cursor: Annotated[str | None, Query(max_length=200)] = None,
) -> PlanPage:
    flt = PlanFilter(
        status=status,
        created_from=_day(created_from),
        created_before=_day(created_to + timedelta(days=1)) if created_to else None,
        level_of_care=level_of_care,
        code=code,
        kind=kind,
        author_id=caller.user.id if author == "me" else None,
        include_superseded=include_superseded,
    )
    items, next_cursor = plans.list_plans(caller, flt, limit=limit, cursor=cursor)
    return PlanPage(items=[PlanListItem.of(s) for s in items], next_cursor=next_cursor)


@router.post(
    "/v1/plans/search",
    name="plan.search",
    response_model=PlanPage,
    summary="Search your organisation's worklist by patient name or MRN (in the body, never the URL)",
    responses={**_ERRORS, **_INVALID},
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {"application/json": {"schema": {"$ref": "#/components/schemas/PlanSearch"}}},
        }
    },
)
def search_plans(caller: PlanLister, plans: PlansDep, body: RawBody) -> PlanPage:
    query = _json_body(body, PlanSearch)
    flt = PlanFilter(patient=query.patient, status=query.status, include_superseded=query.include_superseded)
    items, next_cursor = plans.list_plans(caller, flt, limit=query.limit, cursor=query.cursor)
    return PlanPage(items=[PlanListItem.of(s) for s in items], next_cursor=next_cursor)


def _day(d: date | None) -> datetime | None:
    return datetime.combine(d, time(0), tzinfo=UTC) if d else None


@router.get(
    "/v1/plans/{plan_id}",
    name="plan.read",
    response_model=StoredPlan,
    summary="One stored plan with its version links and overrides",
    responses={**_ERRORS, **_NOT_FOUND},
)
def read_plan(plan_id: str, caller: PlanReader, plans: PlansDep) -> Response:
    body = StoredPlan.of_view(plans.get(caller, plan_id)).model_dump_json()  # validated once, not twice
    return Response(body, media_type="application/json")


@router.get(
    "/v1/plans/{plan_id}/decisions",
    name="plan.decisions",
    response_model=DecisionsOut,
    summary="The decision of record for each line of this version (what FHIR and the reports print)",
    responses={**_ERRORS, **_NOT_FOUND},
)
def read_decisions(plan_id: str, caller: PlanReader, plans: PlansDep) -> DecisionsOut:
    view = plans.get(caller, plan_id)
    return DecisionsOut(
        plan_id=view.record.id,
        version=view.record.version,
        status="signed" if view.signed else "draft",
        decisions={c: DecisionOut.of(d, activity_status(d)) for c, d in decisions_of(view).items()},
    )


@router.post(
    "/v1/plans/{plan_id}/sign",
    name="plan.sign",
    response_model=StoredPlan,
    summary="Sign this version (clinicians): draft -> signed; the signed content is sealed by a hash",
    description="Only the latest version, only once. Lines without a decision are signed as suggested "
    "(accepted). A signed version never changes: to change it, re-evaluate (a new version).",
    responses={**_ERRORS, **_NOT_FOUND, **_INVALID, 409: {"model": ErrorBody}},
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {"application/json": {"schema": {"$ref": "#/components/schemas/SignIn"}}},
        }
    },
)
def sign_plan(plan_id: str, caller: PlanSigner, plans: PlansDep, body: RawBody) -> StoredPlan:
    data = _json_body(body, SignIn)
    return StoredPlan.of_view(plans.sign(caller, plan_id, SignRequest(data.name, data.credentials)))


@router.post(
    "/v1/plans/{plan_id}/comments",
    name="plan.comment",
    status_code=201,
    response_model=CommentOut,
    summary="Comment on a plan version (reviewers and clinicians; also on signed versions)",
    responses={**_ERRORS, **_NOT_FOUND, **_INVALID},
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {"application/json": {"schema": {"$ref": "#/components/schemas/CommentIn"}}},
        }
    },
)
def add_comment(plan_id: str, caller: PlanCommenter, plans: PlansDep, body: RawBody) -> CommentOut:
    data = _json_body(body, CommentIn)
    return CommentOut.of(plans.comment(caller, plan_id, data.text, data.code))


@router.get(
    "/v1/plans/{plan_id}/report.html",
    name="plan.report_html",
    response_class=HTMLResponse,
    summary="The clinician draft or the patient summary as HTML",
    responses={**_ERRORS, **_NOT_FOUND, 503: {"model": ErrorBody, "description": "Reports not available."}},
)
def report_html(
    plan_id: str,
    caller: ReportHtmlReader,
    plans: PlansDep,
    rt: RuntimeDep,
    audience: Audience = "clinician",
    language: Language = None,
    appendix: Appendix = True,
) -> HTMLResponse:
    view = plans.get(caller, plan_id, action="plan.report_html")
    intake = view.record.intake()
    lang = language or intake.preferences.language
    html = render_html_report(
        view.plan, intake, rt.engine.pack, audience, lang, **_as_recorded(view, appendix)
    )
    styles = " ".join(style_hashes(html))
    csp = DEFAULT_CSP + f"; style-src 'self' {styles}; img-src 'self' data:"
    return HTMLResponse(html, headers={"Content-Security-Policy": csp})


@router.get(
    "/v1/plans/{plan_id}/report.pdf",
    name="plan.report_pdf",
    response_class=Response,
    summary="The clinician draft or the patient summary as PDF",
    responses={
        200: {"content": {"application/pdf": {}}},
        **_ERRORS,
        **_NOT_FOUND,
        503: {"model": ErrorBody, "description": "Reports not available."},
    },
)
async def report_pdf(
    plan_id: str,
    caller: ReportPdfReader,
    plans: PlansDep,
    rt: RuntimeDep,
    audience: Audience = "clinician",
    language: Language = None,
    appendix: Appendix = True,
) -> Response:
    view = await run_in_threadpool(plans.get, caller, plan_id, "plan.report_pdf")
    intake = view.record.intake()
    lang = language or intake.preferences.language
    extra = _as_recorded(view, appendix)
    pdf = await render_pdf_report(view.plan, intake, rt.engine.pack, audience, lang, **extra)
    state = "signed" if view.signed else "draft"
    name = f"carepath-{plan_id}-{audience}-{state}.pdf"
    return Response(
        pdf, media_type="application/pdf", headers={"Content-Disposition": f'inline; filename="{name}"'}
    )


def _as_recorded(view: PlanView, appendix: bool) -> dict[str, Any]:
    return {"recorded": view.recorded, "appendix": appendix}


@router.post(
    "/v1/plans/{plan_id}/overrides",
    name="plan.override",
    status_code=201,
    response_model=OverrideOut,
    summary="Record a decision on one line: accept, modify (text or dose) or decline with a reason",
    description="Append-only: the latest decision per code is the decision of record, printed by every "
    "output (web, PDF, patient summary, FHIR). Modifications and declines are counted per rule in GET "
    "/v1/overrides/summary. action=not_applicable marks a missing-information row (code = the field). "
    "409 once the version is signed or superseded.",
    responses={**_ERRORS, **_NOT_FOUND, **_INVALID, 409: {"model": ErrorBody}},
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {"application/json": {"schema": {"$ref": "#/components/schemas/OverrideIn"}}},
        }
    },
)
def add_override(plan_id: str, caller: PlanOverrider, plans: PlansDep, body: RawBody) -> OverrideOut:
    return OverrideOut.of(plans.add_override(caller, plan_id, override_request(_json_body(body, OverrideIn))))


def override_request(data: OverrideIn) -> OverrideRequest:
    return OverrideRequest(
        code=data.code,
        action=data.action,
        reason=data.reason or "",
        section=data.section,
        phase=data.phase,
        replacement_text=data.replacement_text,
        replacement_kind=data.replacement_kind,
        dose=data.dose,
    )


M = TypeVar("M", bound=BaseModel)


def _json_body(body: bytes, model: type[M]) -> M:
    try:
        json.loads(body or b"null")
    except ValueError:
        raise InvalidRequest([FieldProblem("body", "is not valid JSON: expected a JSON object")]) from None
    try:
        return model.model_validate_json(body or b"null")
    except ValidationError as exc:
        problems = [_body_problem(p) for p in problems_from_validation(exc)]
        raise InvalidRequest(problems) from None


def _body_problem(p: FieldProblem) -> FieldProblem:
    """A model-level message "reason: ..." names its field; others keep pydantic's location."""
    if p.field == "(intake)":
        field, _, message = p.message.partition(": ")
        if message and field.isidentifier():
            return FieldProblem(f"body.{field}", message)
        return FieldProblem("body", p.message)
    return FieldProblem(f"body.{p.field}", p.message)
