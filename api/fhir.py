"""FHIR adapter: care plan -> FHIR R4 Bundle, and FHIR QuestionnaireResponse -> intake.

The ONLY importer of ``fhir.resources`` (R4B models; CarePlan, DetectedIssue, Provenance,
Questionnaire and QuestionnaireResponse are the same as in R4). Every resource is built as
plain JSON and then parsed back with fhir.resources, so a malformed resource is a bug found
here, not by the receiving EHR.

    care_plan_bundle(plan)                   Bundle (collection): CarePlan + DetectedIssue per
                                             alert + Provenance (rule set, intake hash, citations)
    intake_questionnaire()                   the Questionnaire whose linkIds are contract paths
    intake_from_questionnaire_response(qr)   QuestionnaireResponse -> intake dict (unvalidated)
    intake_from_fhir(qr)                     ... -> validated ``engine.Intake``
    questionnaire_response(intake)           the inverse: an intake as a QuestionnaireResponse

No patient identifier appears in a bundle unless the caller passes ``subject`` explicitly.
"""

from __future__ import annotations

import html
import uuid
from collections.abc import Mapping
from functools import cache
from typing import Any
from urllib.parse import quote

from fhir.resources.R4B.bundle import Bundle
from fhir.resources.R4B.questionnaire import Questionnaire
from fhir.resources.R4B.questionnaireresponse import QuestionnaireResponse

from carepath.api.intake_fields import (
    FIELD_BY_PATH,
    GROUPS,
    NONE_OPTION,
    FieldSpec,
    choice_label,
    list_answer,
    set_path,
)
from carepath.engine import CarePlan, FieldProblem, Intake, IntakeError, parse_intake_obj
from carepath.engine.plan import Alert, CitationOut, Item, MissingInfo

__all__ = [
    "CODE_SYSTEM",
    "code_labels",
    "QUESTIONNAIRE_ID",
    "QUESTIONNAIRE_URL",
    "care_plan_bundle",
    "intake_questionnaire",
    "intake_from_questionnaire_response",
    "intake_from_fhir",
    "questionnaire_response",
    "questionnaire_response_from_bundle",
    "FhirInputError",
]

BASE = "https://carepath.example"
CODE_SYSTEM = f"{BASE}/codes"
"""The carepath recommendation codes (contract §3) as a FHIR code system URI."""
INTAKE_VALUE_SYSTEM = f"{BASE}/intake-values"
EXT_RECOMMENDATION = f"{BASE}/fhir/StructureDefinition/recommendation"
EXT_ALERT = f"{BASE}/fhir/StructureDefinition/alert"
EXT_SHA256 = f"{BASE}/fhir/StructureDefinition/sha256"
PLAN_ID_SYSTEM = f"{BASE}/plan-id"
RULESET_SYSTEM = f"{BASE}/rulesets"
INTAKE_HASH_SYSTEM = f"{BASE}/intake-sha256"
CITATION_BASE = f"{BASE}/citations/"
QUESTIONNAIRE_ID = "carepath-intake"
QUESTIONNAIRE_URL = f"{BASE}/fhir/Questionnaire/{QUESTIONNAIRE_ID}"
DRAFT_DESCRIPTION = "DRAFT - requires clinician review"
_UUID_NS = uuid.UUID("6b1f5a4e-2d4c-4f0e-9a7a-3c2d1e0f9b88")
_SEVERITY = {"urgent": "high", "warning": "moderate", "info": "low"}
_PARTICIPANT = "http://terminology.hl7.org/CodeSystem/provenance-participant-type"


class FhirInputError(IntakeError):
    """A FHIR payload that is not what it claims to be. Messages never quote its content."""


# ---------------------------------------------------------------- plan -> Bundle


@cache
def code_labels() -> dict[str, str]:
    from carepath.engine import RulePackError, load_rulepack

    try:
        return {code: c.label for code, c in load_rulepack().codes.items()}
    except RulePackError:
        return {}


def _urn(plan: CarePlan, name: str) -> str:
    return "urn:uuid:" + str(uuid.uuid5(_UUID_NS, f"{plan.plan_id}/{name}"))


def _fhir_id(text: str) -> str:
    return "".join(ch if ch.isalnum() or ch in "-." else "-" for ch in text)[:64]


def _coding(code: str, labels: Mapping[str, str]) -> dict[str, Any]:
    display = labels.get(code, code)
    return {"coding": [{"system": CODE_SYSTEM, "code": code, "display": display}], "text": display}


def citation_uri(c: CitationOut) -> str:
    return f"{CITATION_BASE}{quote(c.key, safe='')}#{quote(c.locator, safe='')}"


def _strings(url: str, values: list[str]) -> list[dict[str, Any]]:
    return [{"url": url, "valueString": v} for v in values]


def _item_extension(item: Item, phase: str) -> dict[str, Any]:
    parts: list[dict[str, Any]] = [
        {"url": "kind", "valueCode": item.kind},
        {"url": "phase", "valueCode": phase},
    ]
    parts += _strings("ruleId", item.rule_ids)
    parts.append({"url": "evidenceGrade", "valueString": item.evidence_grade})
    parts += [{"url": "citation", "valueUri": citation_uri(c)} for c in item.citations]
    return {"url": EXT_RECOMMENDATION, "extension": parts}


def _activity(item: Item, phase: str, labels: Mapping[str, str]) -> dict[str, Any]:
    detail: dict[str, Any] = {
        "extension": [_item_extension(item, phase)],
        "code": _coding(item.code, labels),
        "status": "not-started",
        "description": item.text,
        "reasonCode": [{"text": item.rationale}],
    }
    if item.kind == "avoid":
        detail["doNotPerform"] = True
    return {"detail": detail}


def _alert_note(alert: Alert) -> dict[str, Any]:
    rules = ", ".join(alert.rule_ids)
    return {"text": f"{alert.severity.upper()} alert ({alert.code}): {alert.text} Rules: {rules}."}


def _missing_note(m: MissingInfo) -> str:
    return f"Missing information: {m.label} ({m.field}, {m.impact}): {m.why_it_matters}"


def _narrative(plan: CarePlan) -> dict[str, Any]:
    lines = [
        plan.draft_notice,
        f"Level of care: {plan.level_of_care.label} (ASAM {plan.level_of_care.asam_level}).",
    ]
    lines += [f"{a.severity.upper()}: {a.text}" for a in plan.alerts]
    body = "".join(f"<p>{html.escape(line)}</p>" for line in lines)
    return {"status": "generated", "div": f'<div xmlns="http://www.w3.org/1999/xhtml">{body}</div>'}


def _description(plan: CarePlan) -> str:
    notice = plan.draft_notice
    return notice if notice.startswith(DRAFT_DESCRIPTION) else f"{DRAFT_DESCRIPTION}. {notice}"


def _care_plan(
    plan: CarePlan, subject: Mapping[str, Any], labels: Mapping[str, str], issue_urls: list[str]
) -> dict[str, Any]:
    notes = [_alert_note(a) for a in plan.alerts]
    notes += [{"text": _missing_note(m)} for m in plan.missing_information]
    resource: dict[str, Any] = {
        "resourceType": "CarePlan",
        "id": _fhir_id(plan.plan_id),
        "text": _narrative(plan),
        "identifier": [{"system": PLAN_ID_SYSTEM, "value": plan.plan_id}],
        "status": "draft",
        "intent": "proposal",
        "category": [_coding(plan.level_of_care.code, labels)],
        "title": f"Draft OUD care pathway: {plan.level_of_care.label}",
        "description": _description(plan),
        "subject": dict(subject),
        "period": {"start": plan.assessment_date.isoformat()},
        "created": plan.generated_at.isoformat(),
        "supportingInfo": [{"reference": url} for url in issue_urls],
        "activity": [_activity(i, p.phase, labels) for p in plan.phases for i in p.items],
    }
    if notes:
        resource["note"] = notes
    if not resource["supportingInfo"]:
        del resource["supportingInfo"]
    if not resource["activity"]:
        del resource["activity"]
    return resource


def _detected_issue(
    plan: CarePlan, alert: Alert, subject: Mapping[str, Any], labels: Mapping[str, str]
) -> dict[str, Any]:
    resource: dict[str, Any] = {
        "resourceType": "DetectedIssue",
        "extension": [
            {
                "url": EXT_ALERT,
                "extension": [{"url": "severity", "valueCode": alert.severity}]
                + _strings("ruleId", alert.rule_ids)
                + [{"url": "citation", "valueUri": citation_uri(c)} for c in alert.citations],
            }
        ],
        "status": "preliminary",
        "code": _coding(alert.code, labels),
        "severity": _SEVERITY[alert.severity],
        "identifiedDateTime": plan.generated_at.isoformat(),
        "detail": alert.text,
        "reference": citation_uri(alert.citations[0]),
    }
    if "reference" in subject:
        resource["patient"] = dict(subject)
    return resource


def _provenance(plan: CarePlan, targets: list[str]) -> dict[str, Any]:
    rs = plan.ruleset
    cited = {citation_uri(c) for a in plan.alerts for c in a.citations}
    cited |= {citation_uri(c) for i in plan.items() for c in i.citations}
    return {
        "resourceType": "Provenance",
        "target": [{"reference": url} for url in targets],
        "occurredDateTime": plan.generated_at.isoformat(),
        "recorded": plan.generated_at.isoformat(),
        "policy": [f"{RULESET_SYSTEM}/{quote(rs.id, safe='')}/{quote(rs.version, safe='')}", *sorted(cited)],
        "agent": [
            {
                "type": {"coding": [{"system": _PARTICIPANT, "code": "assembler", "display": "Assembler"}]},
                "who": {"display": f"carepath rule engine, rule set {rs.id} {rs.version}"},
            }
        ],
        "entity": [
            {
                "role": "source",
                "what": {
                    "identifier": {"system": RULESET_SYSTEM, "value": f"{rs.id}|{rs.version}"},
                    "display": (
                        f"rule set {rs.id} {rs.version} (effective {rs.effective_date}, sha256 {rs.sha256})"
                    ),
                },
                "extension": [{"url": EXT_SHA256, "valueString": rs.sha256}],
            },
            {
                "role": "source",
                "what": {
                    "identifier": {"system": INTAKE_HASH_SYSTEM, "value": plan.intake_sha256},
                    "display": f"intake of {plan.assessment_date} (sha256 {plan.intake_sha256})",
                },
                "extension": [{"url": EXT_SHA256, "valueString": plan.intake_sha256}],
            },
        ],
    }


def care_plan_bundle(
    plan: CarePlan,
    *,
    subject: Mapping[str, Any] | None = None,
    labels: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    """The plan as a FHIR R4 Bundle of type collection, validated with fhir.resources.

    ``subject`` is a FHIR Reference (e.g. ``{"reference": "Patient/123"}``) and is the only way
    a patient identifier enters the bundle; without it the CarePlan's subject is a display-only
    reference that names nobody. ``labels`` maps codes to display text (default: the packaged
    rule set's code labels).
    """
    labels = code_labels() if labels is None else labels
    subject = subject or {"display": "Patient not identified in this export"}
    issues = [
        (_urn(plan, f"alert/{n}"), _detected_issue(plan, a, subject, labels))
        for n, a in enumerate(plan.alerts)
    ]
    plan_url = _urn(plan, "careplan")
    entries = [(plan_url, _care_plan(plan, subject, labels, [u for u, _ in issues])), *issues]
    entries.append((_urn(plan, "provenance"), _provenance(plan, [u for u, _ in entries])))
    bundle = {
        "resourceType": "Bundle",
        "id": _fhir_id(plan.plan_id + "-bundle"),
        "identifier": {"system": PLAN_ID_SYSTEM, "value": plan.plan_id},
        "type": "collection",
        "timestamp": plan.generated_at.isoformat(),
        "entry": [{"fullUrl": url, "resource": res} for url, res in entries],
    }
    Bundle.model_validate(bundle)  # a failure here is a defect in this adapter
    return bundle


# ---------------------------------------------------------------- Questionnaire


_QTYPE = {
    "date": "date",
    "int": "integer",
    "number": "decimal",
    "bool": "boolean",
    "choice": "choice",
    "multi": "choice",
    "text": "string",
    "textlist": "string",
}


def _question(spec: FieldSpec) -> dict[str, Any]:
    item: dict[str, Any] = {"linkId": spec.path, "text": spec.label, "type": _QTYPE[spec.kind]}
    if spec.required:
        item["required"] = True
    if spec.kind in ("multi", "textlist"):
        item["repeats"] = True
    if spec.choices:
        item["answerOption"] = [
            {"valueCoding": {"system": INTAKE_VALUE_SYSTEM, "code": c, "display": _display(spec, c)}}
            for c in _options(spec)
        ]
    if spec.help:
        item["item"] = [
            {"linkId": spec.path + ".help", "text": spec.help, "type": "display"},
        ]
    return item


def _options(spec: FieldSpec) -> tuple[str, ...]:
    """A list question also offers 'none': answered and empty, where no answer means unknown."""
    return (*spec.choices, NONE_OPTION) if spec.kind == "multi" else spec.choices


def _display(spec: FieldSpec, code: str) -> str:
    return "None" if code == NONE_OPTION else choice_label(spec.path, code)


@cache
def _questionnaire() -> dict[str, Any]:
    q = {
        "resourceType": "Questionnaire",
        "id": QUESTIONNAIRE_ID,
        "url": QUESTIONNAIRE_URL,
        "name": "CarepathIntake",
        "title": "carepath opioid use disorder intake",
        "status": "active",
        "subjectType": ["Patient"],
        "description": (
            "The carepath intake (contract v1 §1). Each item's linkId is the intake field path; "
            "an unanswered item means 'unknown', never 'no'."
        ),
        "item": [
            {"linkId": g.key, "text": g.legend, "type": "group", "item": [_question(f) for f in g.fields]}
            for g in GROUPS
        ],
    }
    Questionnaire.model_validate(q)
    return q


def intake_questionnaire() -> dict[str, Any]:
    """The FHIR Questionnaire matching the intake (linkIds are contract field paths)."""
    import copy

    return copy.deepcopy(_questionnaire())


# ---------------------------------------------------------------- QuestionnaireResponse -> intake


def _problem(field: str, message: str) -> FhirInputError:
    return FhirInputError([FieldProblem(field, message)])


def _answer_value(spec: FieldSpec, answer: Mapping[str, Any]) -> tuple[Any, str | None]:
    """One answer -> its JSON value, or a problem message (never quoting the answer)."""
    present = [k for k in answer if k.startswith("value")]
    if len(present) != 1:
        return None, "each answer needs exactly one value[x]"
    key = present[0]
    value = answer[key]
    if key == "valueCoding":
        code = value.get("code") if isinstance(value, Mapping) else None
        return (code, None) if isinstance(code, str) else (None, "has a coding without a code")
    if key in ("valueString", "valueInteger", "valueDecimal", "valueBoolean", "valueDate"):
        if spec.kind == "textlist" and key == "valueString" and isinstance(value, str):
            return value.strip(), None
        return value, None
    return None, f"has an answer type ({key}) this question does not take"


def _walk(items: Any, out: dict[str, Any], problems: list[FieldProblem]) -> None:
    for item in items or ():
        link = item.get("linkId")
        answers = item.get("answer") or []
        spec = FIELD_BY_PATH.get(link) if isinstance(link, str) else None
        if answers and spec is None:
            safe = (
                link if isinstance(link, str) and link.replace(".", "").replace("_", "").isalnum() else None
            )
            problems.append(FieldProblem(safe or "(unrecognised linkId)", "is not a field of the intake"))
            continue
        if spec is not None and answers:
            values = []
            for answer in answers:
                value, problem = _answer_value(spec, answer)
                if problem:
                    problems.append(FieldProblem(spec.path, problem))
                    break
                values.append(value)
                _walk(answer.get("item"), out, problems)
            else:
                if spec.kind in ("multi", "textlist"):
                    listed, problem = list_answer(spec, [str(v) for v in values])
                    if problem:
                        problems.append(FieldProblem(spec.path, problem))
                    elif listed is not None:
                        set_path(out, spec.path, listed)
                elif len(values) > 1:
                    problems.append(FieldProblem(spec.path, "takes one answer, not several"))
                else:
                    set_path(out, spec.path, values[0])
        _walk(item.get("item"), out, problems)


def intake_from_questionnaire_response(qr: Mapping[str, Any]) -> dict[str, Any]:
    """Map a QuestionnaireResponse (linkIds = contract paths, nested groups allowed) to an intake dict.

    Unanswered items are left out (unknown, not "no"); list fields collect every answer. The
    dict is not yet validated: pass it to ``engine.parse_intake_obj`` (or use ``intake_from_fhir``).
    Raises FhirInputError for a payload that is not a usable QuestionnaireResponse.
    """
    if not isinstance(qr, Mapping) or qr.get("resourceType") != "QuestionnaireResponse":
        raise _problem("(questionnaire response)", "must be a FHIR QuestionnaireResponse resource")
    try:
        QuestionnaireResponse.model_validate(dict(qr))
    except ValueError:  # pydantic errors may quote the input: do not pass them on
        raise _problem("(questionnaire response)", "is not a valid FHIR R4 QuestionnaireResponse") from None
    if qr.get("status") == "entered-in-error":
        raise _problem("(questionnaire response)", "is marked entered-in-error")
    out: dict[str, Any] = {}
    problems: list[FieldProblem] = []
    _walk(qr.get("item"), out, problems)
    if problems:
        raise FhirInputError(problems)
    return out


def intake_from_fhir(qr: Mapping[str, Any]) -> Intake:
    """QuestionnaireResponse -> validated Intake. Raises IntakeError (field problems only)."""
    return parse_intake_obj(intake_from_questionnaire_response(qr))


_ANSWER_KEY = {
    "date": "valueDate",
    "int": "valueInteger",
    "number": "valueDecimal",
    "bool": "valueBoolean",
    "text": "valueString",
    "textlist": "valueString",
}


def _answers(spec: FieldSpec, value: Any) -> list[dict[str, Any]]:
    values = (value or [NONE_OPTION]) if isinstance(value, list) else [value]
    if spec.choices:
        return [
            {"valueCoding": {"system": INTAKE_VALUE_SYSTEM, "code": v, "display": _display(spec, v)}}
            for v in values
        ]
    return [{_ANSWER_KEY[spec.kind]: v} for v in values]


def questionnaire_response(
    intake: Intake | Mapping[str, Any], *, subject: Mapping[str, Any] | None = None
) -> dict[str, Any]:
    """The inverse of ``intake_from_questionnaire_response``: an intake as a completed response.

    Grouped like the Questionnaire; fields that are not recorded get no item. ``subject`` (a
    FHIR Reference) is the only way a patient reference enters the response.
    """
    data = intake.model_dump(mode="json", exclude_none=True) if isinstance(intake, Intake) else intake
    groups = []
    for g in GROUPS:
        items = []
        for spec in g.fields:
            node: Any = data
            for part in spec.path.split("."):
                node = node.get(part) if isinstance(node, Mapping) else None
            if node is not None:
                items.append({"linkId": spec.path, "text": spec.label, "answer": _answers(spec, node)})
        if items:
            groups.append({"linkId": g.key, "text": g.legend, "item": items})
    qr: dict[str, Any] = {
        "resourceType": "QuestionnaireResponse",
        "questionnaire": QUESTIONNAIRE_URL,
        "status": "completed",
        "item": groups,
    }
    if subject:
        qr["subject"] = dict(subject)
    QuestionnaireResponse.model_validate(qr)
    return qr


def questionnaire_response_from_bundle(resource: Any) -> Mapping[str, Any] | None:
    """A QuestionnaireResponse itself, or the most recently authored one inside a Bundle."""
    if not isinstance(resource, Mapping):
        return None
    if resource.get("resourceType") == "QuestionnaireResponse":
        return resource
    if resource.get("resourceType") != "Bundle":
        return None
    found: list[Mapping[str, Any]] = [
        e["resource"]
        for e in resource.get("entry") or ()
        if isinstance(e, Mapping)
        and isinstance(e.get("resource"), Mapping)
        and e["resource"].get("resourceType") == "QuestionnaireResponse"
    ]
    if not found:
        return None
    return max(found, key=lambda r: str(r.get("authored") or ""))


# ---------------------------------------------------------------- HTTP: GET /v1/plans/{plan_id}/fhir

FHIR_JSON = "application/fhir+json"


def _build_router() -> Any:
    """The route, built on first use: ``carepath evaluate --format fhir`` never imports the service."""
    from typing import Annotated

    from fastapi import APIRouter, Depends
    from fastapi.responses import JSONResponse

    from carepath.api.deps import PlansDep, allow
    from carepath.api.service import Caller

    def plan_fhir(plan_id, caller, plans):  # type: ignore[no-untyped-def]
        view = plans.get(caller, plan_id, action="plan.fhir")
        return JSONResponse(care_plan_bundle(view.plan), media_type=FHIR_JSON)

    # Real objects, not the strings ``from __future__ import annotations`` leaves: FastAPI
    # resolves string annotations in module globals, where these local names do not exist.
    plan_fhir.__annotations__ = {
        "plan_id": str,
        "caller": Annotated[Caller, Depends(allow("plan.fhir"))],
        "plans": PlansDep,
        "return": JSONResponse,
    }
    fhir_router = APIRouter(tags=["fhir"])
    fhir_router.add_api_route(
        "/v1/plans/{plan_id}/fhir",
        plan_fhir,
        methods=["GET"],
        name="plan.fhir",
        summary="The stored plan as a FHIR R4 Bundle (CarePlan, DetectedIssue, Provenance)",
        response_class=JSONResponse,
        responses={
            200: {"content": {FHIR_JSON: {}}, "description": "Bundle of type collection."},
            401: {"description": "No or invalid credentials."},
            404: {"description": "No such plan in your organisation."},
        },
    )
    return fhir_router


_ROUTER: list[Any] = []


def __getattr__(name: str) -> Any:
    if name == "router":
        if not _ROUTER:
            _ROUTER.append(_build_router())
        return _ROUTER[0]
    raise AttributeError(name)
