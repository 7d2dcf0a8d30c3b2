"""CDS Hooks over HTTP: discovery, the patient-view service, feedback, and the feedback report.

    GET  /cds-services                          discovery (public: no patient data)
    POST /cds-services/carepath-oud-pathway     the hook: signed JWT of an allow-listed EHR
                                                (or a carepath API token, see settings)
    POST /cds-services/carepath-oud-pathway/feedback   accepted / overridden outcomes per card
    GET  /v1/cds/feedback/summary               override rates per rule and period (reviewers)

Thin: authentication (``api.jwt_auth``), fetching (``api.fhir_client``), storage and audit here;
everything clinical in ``api.cds`` and ``api.chart``. Every call is audited (``cds.evaluate``,
``cds.feedback``), refusals too; error bodies never quote the request.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query, Request
from fastapi.responses import JSONResponse
from fastapi.security import HTTPAuthorizationCredentials
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from starlette.concurrency import run_in_threadpool

from carepath.api import cds
from carepath.api.audit import AuditEvent
from carepath.api.chart import intake_from_chart
from carepath.api.deps import RuntimeDep, SummaryReader, allow, read_limited
from carepath.api.errors import AuthRequired, EngineRefused, Forbidden, request_id_of
from carepath.api.fhir import code_labels
from carepath.api.fhir_client import fetch, fill_template, server_allowed
from carepath.api.jwt_auth import JwksCache, JwtRejected, looks_like_jwt, verify_client_jwt
from carepath.api.prefill import new_prefill
from carepath.api.records import NewCdsCard, NewFeedback
from carepath.api.runtime import Runtime
from carepath.api.settings import SESSION_COOKIE
from carepath.engine import CarepathError

__all__ = ["router", "CdsCaller"]

log = logging.getLogger("carepath.cds")
router = APIRouter(tags=["cds-hooks"])


@dataclass(frozen=True)
class CdsCaller:
    org_id: int
    actor_id: int | None
    via: Literal["jwt", "bearer", "session"]
    client: str | None
    request_id: str


def _base_url(request: Request) -> str:
    configured = request.app.state.settings.public_base_url
    return (configured or str(request.base_url)).rstrip("/")


def _jwks(request: Request) -> JwksCache:
    cache = getattr(request.app.state, "cds_jwks", None)
    if cache is None:
        cache = request.app.state.cds_jwks = JwksCache()
    return cache


def _audit(
    rt: Runtime,
    rid: str,
    action: str,
    outcome: str,
    caller: CdsCaller | None,
    extra: Callable[[Any], None] | None = None,
) -> None:
    with rt.db.transaction() as tx:
        if extra is not None:
            extra(tx)
        rt.audit.append(
            tx,
            AuditEvent(
                action, outcome, rid, caller.actor_id if caller else None, caller.org_id if caller else None
            ),
        )


async def _authenticate(request: Request, rt: Runtime, action: str, audience: list[str]) -> CdsCaller:
    """A signed JWT from an allow-listed EHR, else (if allowed) a carepath token or session."""
    settings = request.app.state.settings
    rid = request_id_of(request)
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() == "bearer" and looks_like_jwt(token.strip()):
        return await _jwt_caller(request, rt, action, token.strip(), audience)
    if not settings.cds_accept_api_tokens:
        await run_in_threadpool(rt.plans().record_anonymous, rid, action, "unauthenticated")
        raise AuthRequired("Send the EHR's signed JWT: 'Authorization: Bearer <JWT>' (CDS Hooks 2.0).")
    bearer = (
        HTTPAuthorizationCredentials(scheme=scheme, credentials=token.strip())
        if scheme.lower() == "bearer"
        else None
    )
    caller = await allow(action)(request, rt, bearer, request.cookies.get(SESSION_COOKIE))
    return CdsCaller(caller.user.org_id, caller.user.id, caller.principal.via, None, rid)


async def _jwt_caller(
    request: Request, rt: Runtime, action: str, token: str, audience: list[str]
) -> CdsCaller:
    settings = request.app.state.settings
    rid = request_id_of(request)
    now = rt.clock().astimezone(UTC)

    def seen(issuer: str, jti: str, expires_at: datetime) -> bool:
        with rt.db.transaction() as tx:
            return tx.use_jwt_id(issuer, jti, expires_at, now)

    def verify() -> Any:
        return verify_client_jwt(
            token, clients=settings.cds_clients, audience=audience, now=now, jwks=_jwks(request), seen=seen
        )

    try:
        if not settings.cds_clients:
            raise JwtRejected("this service trusts no EHR yet (CAREPATH_CDS_CLIENTS is empty)")
        identity = await run_in_threadpool(verify)
    except JwtRejected as exc:
        await run_in_threadpool(rt.plans().record_anonymous, rid, action, "unauthenticated")
        raise AuthRequired(f"The EHR's JWT was refused: {exc}.") from None
    with rt.db.transaction(readonly=True) as tx:
        org = tx.org_by_slug(identity.organisation)
    if org is None:
        log.error("CDS client configured for a missing organisation (request %s)", rid)
        await run_in_threadpool(rt.plans().record_anonymous, rid, action, "denied")
        raise Forbidden("This EHR's carepath organisation does not exist; ask the carepath administrator.")
    request.state.user_id = f"cds:{org.id}"
    return CdsCaller(org.id, None, "jwt", identity.issuer, rid)


async def _service_caller(
    request: Request, rt: Runtime, action: str, service_id: str, suffix: str
) -> CdsCaller | None:
    """The authenticated caller of ``/cds-services/{service_id}{suffix}`` (its URL is the JWT
    audience; feedback also accepts the service's URL), or None for an unknown service."""
    endpoint = f"{_base_url(request)}/cds-services/{service_id}"
    caller = await _authenticate(request, rt, action, [endpoint + suffix, endpoint])
    return caller if service_id == cds.SERVICE_ID else None


def _error(rid: str, status: int, code: str, message: str, problems: list[Any] | None = None) -> JSONResponse:
    body: dict[str, Any] = {"error": code, "message": message, "request_id": rid}
    if problems:
        body["errors"] = [{"field": p.field, "message": p.message} for p in problems]
    return JSONResponse(body, status_code=status)


# ---------------------------------------------------------------- discovery


@router.get(
    "/cds-services",
    name="cds.discovery",
    summary="CDS Hooks discovery (no authentication, by the CDS Hooks specification; no patient data)",
)
def cds_discovery() -> dict[str, Any]:
    return cds.discovery()


# ---------------------------------------------------------------- the hook


async def _values(req: cds.HookRequest, request: Request) -> tuple[dict[str, Any], str | None]:
    """The prefetch values, completed from the FHIR server when it is allowed; and, when keys
    stay missing, why (for the 412)."""
    settings = request.app.state.settings
    values = dict(req.prefetch or {})
    gaps = cds.prefetch_gaps(req)
    if not gaps:
        return values, None
    if not req.fhir_server:
        return values, "the request has no fhirServer"
    if not server_allowed(req.fhir_server, settings.cds_fhir_servers):
        return values, "its fhirServer is not on this service's allow-list (no request was sent)"
    if not req.access_token:
        return values, "the request has no fhirAuthorization for its fhirServer"
    context = {**req.context, "patientId": req.patient_id}
    queries = {k: q for k in gaps if (q := fill_template(cds.PREFETCH[k], context))}
    result = await fetch(req.fhir_server, req.access_token, queries, timeout_s=settings.cds_fetch_timeout_s)
    values.update(result.values)
    return values, ("the FHIR server could not be read" if result.failed else None)


def _citation_shorts(rt: Runtime) -> dict[str, str]:
    return {k: c.short for k, c in rt.engine.pack.citations.items()}


@router.post(
    "/cds-services/{service_id}",
    name="cds.evaluate",
    summary="CDS Hooks patient-view: cards from the chart and the draft care pathway",
    responses={
        400: {"description": "Not a usable CDS Hooks request, or data about another patient."},
        401: {"description": "No, invalid, expired or replayed JWT (or token)."},
        404: {"description": "No CDS service with this id."},
        412: {"description": "Required data (the Patient) was not prefetched and cannot be fetched."},
        422: {"description": "The carepath questionnaire in the prefetch is invalid: one entry per field."},
    },
)
async def cds_evaluate(service_id: str, request: Request, rt: RuntimeDep) -> JSONResponse:
    rid, base = request_id_of(request), _base_url(request)
    caller = await _service_caller(request, rt, "cds.evaluate", service_id, "")
    if caller is None:
        return _error(rid, 404, "not_found", "No CDS service with this id.")
    settings = request.app.state.settings
    try:
        req = cds.parse_hook_request(await read_limited(request, cds.MAX_REQUEST_BYTES))
        values, why_missing = await _values(req, request)
        missing_required = [k for k in cds.REQUIRED_KEYS if k not in values]
        chart, qr = cds.chart_from_prefetch(values, req.patient_id)
        if missing_required and qr is None:
            await run_in_threadpool(_audit, rt, rid, "cds.evaluate", "precondition_failed", caller)
            reason = why_missing or "it was not prefetched"
            return _error(
                rid, 412, "precondition_failed", f"The Patient is needed and was not sent: {reason}."
            )
        now = rt.clock().astimezone(UTC).replace(microsecond=0)
        chart_intake = intake_from_chart(chart, as_of=now, jurisdiction=settings.cds_jurisdiction)
        if not chart_intake.relevant and qr is None:
            await run_in_threadpool(_audit, rt, rid, "cds.evaluate", "not_relevant", caller)
            return JSONResponse({"cards": []})
        intake, dropped = cds.intake_for(chart_intake, qr)
    except cds.HookRequestError as exc:
        await run_in_threadpool(_audit, rt, rid, "cds.evaluate", exc.outcome, caller)
        code = "patient_mismatch" if exc.outcome == "mismatch" else "invalid_hook_request"
        return _error(rid, exc.status, code, exc.message, exc.problems)
    plan = None
    if intake is not None:
        try:
            plan = await run_in_threadpool(rt.engine.evaluate, intake, now)
        except CarepathError as exc:
            log.warning("engine refused a CDS hook intake (%s, request %s)", type(exc).__name__, rid)
            await run_in_threadpool(_audit, rt, rid, "cds.evaluate", "refused", caller)
            raise EngineRefused() from None
    prefill_intake = intake.model_dump(mode="json", exclude_none=True) if intake else chart_intake.intake
    token_box: list[str] = []

    def store(tx: Any) -> None:
        token_box.append(new_prefill(rt, caller.org_id, prefill_intake, chart_intake.readings, now, tx))

    await run_in_threadpool(_tx_runner(rt), store)  # the prefill first: every card links to it
    ctx = cds.CardContext(
        hook_instance=req.hook_instance,
        patient_id=req.patient_id,
        encounter_id=req.encounter_id,
        labels=code_labels(),
        citation_shorts=_citation_shorts(rt),
        source_url=f"{base}/v1/rules/fhir",
        app_url=f"{base}/?prefill={token_box[0]}",
        smart_url=settings.cds_smart_launch_url,
        smart_context=f'{{"prefill":"{token_box[0]}"}}' if settings.cds_smart_launch_url else None,
        chart=chart_intake,
        dropped=frozenset(dropped),
        from_questionnaire=qr is not None,
    )
    issued = cds.cards_for(plan, ctx) if plan is not None else cds.missing_card(ctx)
    ruleset = rt.engine.pack
    records = [
        NewCdsCard(
            card_uuid=c.card["uuid"],
            org_id=caller.org_id,
            service_id=service_id,
            hook_instance=req.hook_instance,
            kind=c.kind,
            code=c.code,
            rule_ids=tuple(c.rule_ids),
            suggestions=tuple(c.suggestion_ids),
            ruleset_id=ruleset.id,
            ruleset_version=ruleset.version,
            issued_at=now,
        )
        for c in issued
    ]
    await run_in_threadpool(
        _audit, rt, rid, "cds.evaluate", "ok", caller, lambda tx: tx.insert_cds_cards(records)
    )
    return JSONResponse(cds.response_body(issued))


def _tx_runner(rt: Runtime) -> Callable[[Callable[[Any], None]], None]:
    def run(fn: Callable[[Any], None]) -> None:
        with rt.db.transaction() as tx:
            fn(tx)

    return run


# ---------------------------------------------------------------- feedback


class _Coding(BaseModel):
    model_config = ConfigDict(extra="ignore")
    system: str | None = Field(default=None, max_length=200)
    code: str | None = Field(default=None, max_length=100)
    display: str | None = Field(default=None, max_length=200)


class _OverrideReason(BaseModel):
    model_config = ConfigDict(extra="ignore")
    reason: _Coding | None = None
    userComment: str | None = Field(default=None, max_length=5000)


class _Accepted(BaseModel):
    model_config = ConfigDict(extra="ignore")
    id: str = Field(max_length=100)


class _Feedback(BaseModel):
    model_config = ConfigDict(extra="ignore")
    card: str = Field(min_length=1, max_length=64)
    outcome: Literal["accepted", "overridden"]
    acceptedSuggestions: list[_Accepted] = Field(default_factory=list, max_length=50)
    overrideReason: _OverrideReason | None = None
    outcomeTimestamp: datetime


class _FeedbackBody(BaseModel):
    model_config = ConfigDict(extra="ignore")
    feedback: list[_Feedback] = Field(min_length=1, max_length=200)


def _feedback_problems(exc: ValidationError) -> list[Any]:
    from carepath.engine.errors import FieldProblem

    out = []
    for err in exc.errors(include_input=False, include_url=False):
        where = ".".join(str(p) for p in err.get("loc", ()))
        out.append(FieldProblem(where or "body", str(err.get("msg", "is not valid")).split(",")[0]))
    return out


@router.post(
    "/cds-services/{service_id}/feedback",
    name="cds.feedback",
    summary="CDS Hooks feedback: accepted / overridden outcomes per card (stored with the card's rules)",
    responses={
        401: {"description": "No or invalid JWT."},
        404: {"description": "No such service."},
        422: {"description": "Not a feedback body."},
    },
)
async def cds_feedback(service_id: str, request: Request, rt: RuntimeDep) -> JSONResponse:
    rid = request_id_of(request)
    caller = await _service_caller(request, rt, "cds.feedback", service_id, "/feedback")
    if caller is None:
        return _error(rid, 404, "not_found", "No CDS service with this id.")
    try:
        body = _FeedbackBody.model_validate_json(await read_limited(request, 1024 * 1024) or b"null")
    except ValidationError as exc:
        await run_in_threadpool(_audit, rt, rid, "cds.feedback", "invalid", caller)
        return _error(rid, 422, "invalid_feedback", "Not a CDS Hooks feedback body.", _feedback_problems(exc))
    now = rt.clock().astimezone(UTC)
    unknown: list[str] = []
    stored = 0

    def save(tx: Any) -> None:
        nonlocal stored
        for fb in body.feedback:
            card = tx.cds_card(fb.card, caller.org_id)
            if card is None:
                unknown.append(fb.card)
                continue
            reason = fb.overrideReason.reason if fb.overrideReason else None
            at = (
                fb.outcomeTimestamp if fb.outcomeTimestamp.tzinfo else fb.outcomeTimestamp.replace(tzinfo=UTC)
            )
            tx.insert_feedback(
                NewFeedback(
                    card_uuid=card.card_uuid,
                    org_id=caller.org_id,
                    outcome=fb.outcome,
                    reason_system=reason.system if reason else None,
                    reason_code=reason.code if reason else None,
                    reason_display=reason.display if reason else None,
                    has_comment=bool(fb.overrideReason and fb.overrideReason.userComment),
                    accepted_suggestions=tuple(
                        s.id for s in fb.acceptedSuggestions if s.id in card.suggestions
                    ),
                    outcome_at=at,
                    received_at=now,
                    actor_id=caller.actor_id,
                    client=caller.client,
                )
            )
            stored += 1

    await run_in_threadpool(_audit, rt, rid, "cds.feedback", "ok", caller, save)
    return JSONResponse({"stored": stored, "unknownCards": unknown})


# ---------------------------------------------------------------- the report


class FeedbackRuleStat(BaseModel):
    rule_id: str
    period: str
    cards: int = Field(description="Cards shown that this rule contributed to.")
    accepted: int
    overridden: int
    override_rate: float | None = Field(
        description="overridden / (accepted + overridden); null without feedback."
    )
    reasons: dict[str, int] = Field(description="Override reasons given (coded; free text is never stored).")


class FeedbackSummary(BaseModel):
    organisation: str
    bucket: str
    since: datetime | None
    before: datetime | None
    rules: list[FeedbackRuleStat]


@router.get(
    "/v1/cds/feedback/summary",
    name="cds.feedback_summary",
    tags=["cds-hooks"],
    response_model=FeedbackSummary,
    summary="Override rates of CDS cards per rule and period, with the reasons (reviewers and admins)",
)
def feedback_summary(
    caller: SummaryReader,
    rt: RuntimeDep,
    created_from: Annotated[date | None, Query(description="From this day (UTC).")] = None,
    created_to: Annotated[date | None, Query(description="To this day, inclusive (UTC).")] = None,
    bucket: Annotated[Literal["month", "week", "all"], Query()] = "month",
) -> FeedbackSummary:
    since = datetime.combine(created_from, time(0), tzinfo=UTC) if created_from else None
    before = datetime.combine(created_to + timedelta(days=1), time(0), tzinfo=UTC) if created_to else None
    with rt.db.transaction(readonly=True) as tx:
        stats = tx.feedback_stats(caller.user.org_id, since, before, bucket)
    return FeedbackSummary(
        organisation=caller.user.org_slug,
        bucket=bucket,
        since=since,
        before=before,
        rules=[
            FeedbackRuleStat(
                rule_id=s.rule_id,
                period=s.period,
                cards=s.cards,
                accepted=s.accepted,
                overridden=s.overridden,
                override_rate=s.override_rate,
                reasons=dict(s.reasons),
            )
            for s in stats
        ],
    )
