"""FHIR over HTTP (application/fhir+json): plans out, the intake Questionnaire, QuestionnaireResponse in,
and the rule pack as knowledge artifacts.

    GET  /v1/plans/{plan_id}/fhir             the stored plan as a Bundle; ?subject=Patient/<id> files
                                              it to a chart; activities follow the decisions of
                                              record (api.decisions), CarePlan active once signed
    GET  /fhir/Questionnaire/carepath-intake  the intake Questionnaire (versioned, item codes, enableWhen)
    POST /fhir/QuestionnaireResponse          a completed intake -> the plan is evaluated and stored
                                              (as POST /v1/plans); 201, the Bundle (or the plan JSON
                                              with Accept: application/json)
    GET  /v1/rules/fhir                       Library + PlanDefinition per rule + ActivityDefinition
                                              per code, with the HTI-1 source attributes
"""

from __future__ import annotations

import json
import re
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request, Response
from fastapi.responses import JSONResponse

from carepath.api.decisions import decisions_of
from carepath.api.deps import PlansDep, PlanWriter, RawBody, RuntimeDep, allow
from carepath.api.errors import InvalidRequest
from carepath.api.fhir import (
    QUESTIONNAIRE_ID,
    FhirInputError,
    care_plan_bundle,
    intake_from_questionnaire_response,
    intake_questionnaire,
    validate_resource,
)
from carepath.api.knowledge import knowledge_bundle
from carepath.api.schemas import StoredPlan
from carepath.api.service import Caller, PlanView
from carepath.engine.errors import FieldProblem
from carepath.engine.rulepack import RulePack

__all__ = ["router", "FHIR_JSON"]

FHIR_JSON = "application/fhir+json"
router = APIRouter(tags=["fhir"])
_PATIENT_REF = re.compile(r"^Patient/[A-Za-z0-9\-.]{1,64}$")

PlanFhirReader = Annotated[Caller, Depends(allow("plan.fhir"))]
QuestionnaireReader = Annotated[Caller, Depends(allow("fhir.questionnaire"))]
KnowledgeReader = Annotated[Caller, Depends(allow("knowledge.read"))]
_AUTH = {
    401: {"description": "No or invalid credentials."},
    403: {"description": "Your role may not do this."},
}


def _fhir(body: Any, status: int = 200, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse(body, status_code=status, media_type=FHIR_JSON, headers=headers)


@router.get(
    "/v1/plans/{plan_id}/fhir",
    name="plan.fhir",
    summary="The stored plan as a FHIR R4 Bundle (CarePlan, Condition, Goal, MedicationRequest, "
    "DetectedIssue, Device, Provenance)",
    response_class=JSONResponse,
    responses={
        200: {"content": {FHIR_JSON: {}}},
        **_AUTH,
        404: {"description": "No such plan in your organisation."},
    },
)
def plan_fhir(
    plan_id: str,
    caller: PlanFhirReader,
    plans: PlansDep,
    subject: Annotated[
        str | None,
        Query(
            description="The chart's Patient, e.g. Patient/123: the resources are filed to it.", max_length=80
        ),
    ] = None,
) -> JSONResponse:
    if subject is not None and not _PATIENT_REF.match(subject):
        raise InvalidRequest(
            [FieldProblem("query.subject", "must be a reference like Patient/123 (a FHIR id)")]
        )
    view = plans.get(caller, plan_id, action="plan.fhir")
    bundle = care_plan_bundle(
        view.plan,
        subject={"reference": subject} if subject else None,
        decisions=_fhir_decisions(view),
        signed=view.signed,
    )
    return _fhir(bundle)


_ACTIONS = {"accepted": "accept", "modified": "modify", "declined": "decline"}


def _fhir_decisions(view: PlanView) -> dict[str, dict[str, Any]]:
    """The decisions of record (api.decisions: explicit, carried over, or accepted at signing)
    in the shape api.fhir_plan reads: the CarePlan activities and proposals follow them."""
    out: dict[str, dict[str, Any]] = {}
    for code, d in decisions_of(view).items():
        out[code] = {"action": _ACTIONS[d.status], "text": d.text, "dose": d.dose, "reason": d.reason or None}
    return out


@router.get(
    f"/fhir/Questionnaire/{QUESTIONNAIRE_ID}",
    name="fhir.questionnaire",
    summary="The carepath intake as a FHIR Questionnaire (versioned; item codes; enableWhen)",
    response_class=JSONResponse,
    responses={200: {"content": {FHIR_JSON: {}}}, **_AUTH},
)
def questionnaire(caller: QuestionnaireReader) -> JSONResponse:
    return _fhir(intake_questionnaire())


def _qr_from(body: bytes) -> tuple[dict[str, Any], dict[str, Any] | None]:
    try:
        qr = json.loads(body or b"null")
    except ValueError:
        raise InvalidRequest(
            [FieldProblem("body", "is not valid JSON: expected a QuestionnaireResponse")]
        ) from None
    if not isinstance(qr, dict):
        raise InvalidRequest([FieldProblem("body", "must be a FHIR QuestionnaireResponse")])
    intake = intake_from_questionnaire_response(qr)  # FhirInputError (an IntakeError): 422 by field
    subject = qr.get("subject")
    ref = subject.get("reference") if isinstance(subject, dict) else None
    return intake, ({"reference": ref} if isinstance(ref, str) and _PATIENT_REF.match(ref) else None)


@router.post(
    "/fhir/QuestionnaireResponse",
    name="fhir.questionnaire_response",
    status_code=201,
    summary="Submit a completed carepath intake QuestionnaireResponse: the plan is evaluated and stored",
    response_class=JSONResponse,
    responses={
        201: {
            "content": {FHIR_JSON: {}, "application/json": {}},
            "description": "The plan (Bundle, or plan JSON).",
        },
        **_AUTH,
        422: {"description": "One entry per offending question; answers never echoed."},
    },
    openapi_extra={"requestBody": {"required": True, "content": {FHIR_JSON: {}, "application/json": {}}}},
)
def submit_questionnaire_response(
    request: Request, caller: PlanWriter, plans: PlansDep, body: RawBody
) -> Response:
    try:
        intake, subject = _qr_from(body)
    except (FhirInputError, InvalidRequest):
        plans.record(caller, "plan.create", "invalid")
        raise
    record, _ = plans.create(caller, intake)
    headers = {"Location": f"/v1/plans/{record.id}"}
    accept = request.headers.get("accept", "")
    if "application/json" in accept and FHIR_JSON not in accept:
        return JSONResponse(StoredPlan.of(record).model_dump(mode="json"), status_code=201, headers=headers)
    return _fhir(care_plan_bundle(record.plan(), subject=subject), 201, headers)


_KNOWLEDGE: dict[str, dict[str, Any]] = {}


def _knowledge(pack: RulePack) -> dict[str, Any]:
    """Built and validated once per rule pack (keyed by its sha256)."""
    if pack.sha256 not in _KNOWLEDGE:
        bundle = knowledge_bundle(pack)
        for entry in bundle["entry"]:
            validate_resource(entry["resource"])
        _KNOWLEDGE.clear()
        _KNOWLEDGE[pack.sha256] = bundle
    return _KNOWLEDGE[pack.sha256]


@router.get(
    "/v1/rules/fhir",
    name="rules.fhir",
    summary="The loaded rule pack as FHIR knowledge artifacts (Library, PlanDefinition, "
    "ActivityDefinition) with HTI-1 source attributes",
    response_class=JSONResponse,
    responses={200: {"content": {FHIR_JSON: {}}}, **_AUTH},
)
def rules_fhir(caller: KnowledgeReader, rt: RuntimeDep) -> JSONResponse:
    return _fhir(_knowledge(rt.engine.pack))
