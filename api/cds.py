"""CDS Hooks (1.0/2.0) service: ``patient-view`` -> cards from the draft care plan.

    GET  /cds-services                       discovery (no authentication, by the spec)
    POST /cds-services/carepath-oud-pathway  bearer token required; the intake comes in the
                                             prefetch as a QuestionnaireResponse (or a Bundle
                                             holding one), never fetched by this service

Cards: one per urgent (critical) or warning alert, then one summary card "Draft OUD care
pathway (requires clinician review)" with the level of care and the top recommendations. Each
card's source names the rule set and version; details list rule ids and citations. Cards carry
no patient data and no URLs with patient data. Errors name the problem, never the payload.

The pure part (``parse_hook_request``, ``cards_for``) knows nothing of HTTP; ``router`` is thin.
"""

from __future__ import annotations

import json
import logging
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool

from carepath.api.deps import RuntimeDep, allow
from carepath.api.errors import EngineRefused, request_id_of
from carepath.api.fhir import (
    CODE_SYSTEM,
    FhirInputError,
    code_labels,
    intake_from_fhir,
    questionnaire_response_from_bundle,
)
from carepath.api.service import Caller
from carepath.engine import CarepathError, CarePlan, FieldProblem, Intake, IntakeError
from carepath.engine.plan import Alert, CitationOut, Item

__all__ = [
    "SERVICE_ID",
    "HOOK",
    "SUMMARY_TITLE",
    "MAX_REQUEST_BYTES",
    "HookRequestError",
    "HookRequest",
    "discovery",
    "parse_hook_request",
    "cards_for",
    "router",
]

log = logging.getLogger("carepath.cds")

SERVICE_ID = "carepath-oud-pathway"
HOOK = "patient-view"
SUMMARY_TITLE = "Draft OUD care pathway (requires clinician review)"
MAX_REQUEST_BYTES = 1024 * 1024
TOP_RECOMMENDATIONS = 6
PREFETCH = {
    "intake": (
        "QuestionnaireResponse?subject={{context.patientId}}"
        "&questionnaire=carepath-intake&_sort=-authored&_count=1"
    )
}
_UUID_NS = uuid.UUID("0f3f6c3e-8f7e-4b0a-9c55-1d2e3f4a5b6c")
_INDICATOR = {"urgent": "critical", "warning": "warning"}


def discovery() -> dict[str, Any]:
    return {
        "services": [
            {
                "hook": HOOK,
                "id": SERVICE_ID,
                "title": "carepath: draft opioid use disorder care pathway",
                "description": (
                    "From the patient's latest carepath intake (a FHIR QuestionnaireResponse), a draft "
                    "OUD care pathway from cited rules: urgent and warning alerts as cards, then the "
                    "level of care and top recommendations. A draft that requires clinician review."
                ),
                "prefetch": dict(PREFETCH),
                "usageRequirements": "Bearer token of a carepath user (API key) in the Authorization header.",
            }
        ]
    }


class HookRequestError(Exception):
    """A hook call that cannot be answered. ``status`` is the HTTP status; messages never quote input."""

    def __init__(self, status: int, message: str, problems: list[FieldProblem] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.problems = problems or []


@dataclass(frozen=True)
class HookRequest:
    hook_instance: str
    intake: Intake


def parse_hook_request(raw: bytes) -> HookRequest:
    """Raw request body -> the hook instance and the validated intake from the prefetch."""
    if len(raw) > MAX_REQUEST_BYTES:
        raise HookRequestError(413, f"request is too large: at most {MAX_REQUEST_BYTES} bytes")
    try:
        body = json.loads(raw)
    except (UnicodeDecodeError, ValueError):
        raise HookRequestError(400, "request body is not valid JSON: expected a CDS Hooks request") from None
    if not isinstance(body, Mapping):
        raise HookRequestError(400, "request body must be a JSON object (a CDS Hooks request)")
    instance = body.get("hookInstance")
    if not isinstance(instance, str) or not instance.strip():
        raise HookRequestError(400, "hookInstance is required (a string)")
    if body.get("hook") != HOOK:
        raise HookRequestError(400, f"hook must be '{HOOK}' for this service")
    context = body.get("context")
    if not isinstance(context, Mapping) or not isinstance(context.get("patientId"), str):
        raise HookRequestError(400, "context.patientId is required for patient-view")
    prefetch = body.get("prefetch")
    if not isinstance(prefetch, Mapping) or prefetch.get("intake") is None:
        raise HookRequestError(
            400,
            "prefetch.intake is missing: send the patient's carepath-intake QuestionnaireResponse "
            "(or a Bundle holding one) as prefetch 'intake'; this service does not query FHIR servers",
        )
    qr = questionnaire_response_from_bundle(prefetch["intake"])
    if qr is None:
        raise HookRequestError(
            400, "prefetch.intake must be a QuestionnaireResponse or a Bundle containing one"
        )
    try:
        intake = intake_from_fhir(qr)
    except FhirInputError as exc:
        raise HookRequestError(
            400, "prefetch.intake is not a usable QuestionnaireResponse", exc.problems
        ) from None
    except IntakeError as exc:  # the answers do not make a valid intake
        raise HookRequestError(422, "prefetch.intake does not make a valid intake", exc.problems) from None
    return HookRequest(hook_instance=instance, intake=intake)


# ---------------------------------------------------------------- plan -> cards


def _source(plan: CarePlan, code: str, display: str) -> dict[str, Any]:
    return {
        "label": f"carepath {plan.ruleset.id} {plan.ruleset.version}",
        "topic": {"system": CODE_SYSTEM, "code": code, "display": display},
    }


def _cite(citations: list[CitationOut]) -> str:
    return "; ".join(f"{c.key} {c.title} ({c.locator})" for c in citations)


def _md(text: str) -> str:
    """Plain rule-pack text in markdown, with markup characters neutralised."""
    out = text
    for ch in "\\`*_[]<>#|":
        out = out.replace(ch, "\\" + ch)
    return out


def _summary(text: str, limit: int = 140) -> str:
    return text if len(text) <= limit else text[: limit - 1].rstrip() + "\u2026"


def _card_id(plan: CarePlan, instance: str, n: int) -> str:
    return str(uuid.uuid5(_UUID_NS, f"{instance}/{plan.plan_id}/{n}"))


def _alert_card(
    plan: CarePlan, alert: Alert, instance: str, n: int, labels: Mapping[str, str]
) -> dict[str, Any]:
    detail = "\n".join(
        [
            _md(alert.text),
            "",
            f"**Rules:** {_md(', '.join(alert.rule_ids))}",
            "",
            f"**Citations:** {_md(_cite(alert.citations))}",
            "",
            f"_{_md(plan.draft_notice)}_",
        ]
    )
    return {
        "uuid": _card_id(plan, instance, n),
        "summary": _summary(alert.text),
        "indicator": _INDICATOR[alert.severity],
        "detail": detail,
        "source": _source(plan, alert.code, labels.get(alert.code, alert.code)),
    }


def _item_line(item: Item) -> str:
    verb = {"recommend": "", "consider": "Consider: ", "caution": "Caution: ", "avoid": "Do not: "}[item.kind]
    return (
        f"- {verb}{_md(item.text)} (rules {_md(', '.join(item.rule_ids))}; "
        f"evidence {_md(item.evidence_grade)}; {_md(_cite(item.citations))})"
    )


def _top_items(plan: CarePlan) -> list[Item]:
    items = [i for i in plan.items() if i.kind != "avoid" and i.code != plan.level_of_care.code]
    ranked = sorted(items, key=lambda i: ("recommend", "caution", "consider").index(i.kind))
    return ranked[:TOP_RECOMMENDATIONS]


def _summary_card(plan: CarePlan, instance: str, n: int) -> dict[str, Any]:
    loc = plan.level_of_care
    lines = [
        f"**{_md(plan.draft_notice)}**",
        "",
        f"**Level of care:** {_md(loc.label)} (ASAM {_md(loc.asam_level)}); "
        f"rules {_md(', '.join(loc.rule_ids))}",
        "",
        _md(loc.rationale),
        "",
        "**Top recommendations:**",
        *[_item_line(i) for i in _top_items(plan)],
    ]
    avoid = [i for i in plan.items() if i.kind == "avoid"]
    if avoid:
        lines += ["", "**Avoid:**", *[_item_line(i) for i in avoid]]
    info = [a for a in plan.alerts if a.severity == "info"]
    if info:
        lines += ["", "**Notes:**", *[f"- {_md(a.text)} (rules {_md(', '.join(a.rule_ids))})" for a in info]]
    if plan.missing_information:
        safety = [m.label for m in plan.missing_information if m.impact == "safety"]
        other = [m.label for m in plan.missing_information if m.impact != "safety"]
        if safety:
            lines += ["", f"**Missing, could change safety findings:** {_md(', '.join(safety))}"]
        if other:
            lines += ["", f"**Other missing information:** {_md(', '.join(other))}"]
    lines += [
        "",
        f"Rule set {_md(plan.ruleset.id)} {_md(plan.ruleset.version)} "
        f"(sha256 {plan.ruleset.sha256[:12]}...), assessment date {plan.assessment_date.isoformat()}.",
    ]
    return {
        "uuid": _card_id(plan, instance, n),
        "summary": SUMMARY_TITLE,
        "indicator": "info",
        "detail": "\n".join(lines),
        "source": _source(plan, loc.code, loc.label),
    }


def cards_for(plan: CarePlan, hook_instance: str, labels: Mapping[str, str] | None = None) -> dict[str, Any]:
    """The CDS Hooks response body for a plan: alert cards (urgent first), then the summary card."""
    labels = code_labels() if labels is None else labels
    alerts = sorted(
        (a for a in plan.alerts if a.severity in _INDICATOR), key=lambda a: a.severity != "urgent"
    )
    cards = [_alert_card(plan, a, hook_instance, n, labels) for n, a in enumerate(alerts)]
    cards.append(_summary_card(plan, hook_instance, len(cards)))
    return {"cards": cards}


# ---------------------------------------------------------------- HTTP (thin)

router = APIRouter(tags=["cds-hooks"])
CdsCaller = Annotated[Caller, Depends(allow("cds.evaluate"))]


@router.get(
    "/cds-services",
    name="cds.discovery",
    summary="CDS Hooks discovery (no authentication, by the CDS Hooks specification; no patient data)",
)
def cds_discovery() -> dict[str, Any]:
    return discovery()


async def _read_limited(request: Request, limit: int) -> bytes:
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        chunks.append(chunk)
        size += len(chunk)
        if size > limit:
            break
    return b"".join(chunks)


@router.post(
    "/cds-services/{service_id}",
    name="cds.evaluate",
    summary="CDS Hooks patient-view: cards from the draft care pathway (bearer token required)",
    responses={
        400: {"description": "Not a usable CDS Hooks request (e.g. prefetch.intake missing)."},
        404: {"description": "No CDS service with this id."},
        401: {"description": "No or invalid credentials."},
        422: {"description": "The prefetched intake is invalid: one entry per field, values never echoed."},
    },
)
async def cds_evaluate(service_id: str, request: Request, caller: CdsCaller, rt: RuntimeDep) -> JSONResponse:
    plans = rt.plans()
    rid = request_id_of(request)
    if service_id != SERVICE_ID:
        missing = {"error": "not_found", "message": "No CDS service with this id.", "request_id": rid}
        return JSONResponse(missing, status_code=404)
    try:
        hook = parse_hook_request(await _read_limited(request, MAX_REQUEST_BYTES))
    except HookRequestError as exc:
        await run_in_threadpool(plans.record, caller, "cds.evaluate", "invalid")
        body: dict[str, Any] = {"error": "invalid_hook_request", "message": exc.message, "request_id": rid}
        if exc.problems:
            body["errors"] = [{"field": p.field, "message": p.message} for p in exc.problems]
        return JSONResponse(body, status_code=exc.status)
    now = rt.clock().astimezone(UTC).replace(microsecond=0)
    try:
        plan = await run_in_threadpool(rt.engine.evaluate, hook.intake, now)
    except CarepathError as exc:
        log.warning("engine refused a CDS hook intake (%s, request %s)", type(exc).__name__, rid)
        await run_in_threadpool(plans.record, caller, "cds.evaluate", "refused")
        raise EngineRefused() from None
    await run_in_threadpool(plans.record, caller, "cds.evaluate", "ok")
    return JSONResponse(cards_for(plan, hook.hook_instance))
