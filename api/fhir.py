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
The resources themselves are built in ``api/fhir_plan.py`` (plain JSON, standard codes); the HTTP
routes are in ``api/routes/fhir.py``.
"""

from __future__ import annotations

from collections.abc import Mapping
from functools import cache
from typing import Any

from fhir.resources.R4B.bundle import Bundle
from fhir.resources.R4B.questionnaire import Questionnaire
from fhir.resources.R4B.questionnaireresponse import QuestionnaireResponse

from carepath.api.fhir_plan import CODE_SYSTEM, PLAN_ID_SYSTEM, citation_uri, plan_resources
from carepath.api.intake_fields import (
    EXPLICIT_NONE,
    FIELD_BY_PATH,
    GROUPS,
    NONE_OPTION,
    FieldSpec,
    choice_label,
    explicitly_none,
    list_answer,
    set_path,
)
from carepath.engine import CarePlan, FieldProblem, Intake, IntakeError, parse_intake_obj
from carepath.engine.intake import canonical_intake_dict

__all__ = [
    "CODE_SYSTEM",
    "QUESTIONNAIRE_VERSION",
    "validate_resource",
    "citation_uri",
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
INTAKE_VALUE_SYSTEM = f"{BASE}/intake-values"
INTAKE_FIELD_SYSTEM = f"{BASE}/fhir/CodeSystem/intake-fields"
"""Each intake field (contract path) as a code: the Questionnaire's item.code where no LOINC exists."""
QUESTIONNAIRE_ID = "carepath-intake"
QUESTIONNAIRE_URL = f"{BASE}/fhir/Questionnaire/{QUESTIONNAIRE_ID}"
QUESTIONNAIRE_VERSION = "2.1.0"  # 2.1.0: "None (not on MOUD)" answer; Pathway v2 intake fields
"""Bump when an item, answer option, code or enableWhen changes (tests pin the items' digest)."""
LOINC = "http://loinc.org"
ITEM_LOINC: dict[str, tuple[str, str]] = {
    "patient.age": ("30525-0", "Age"),
    "patient.sex_at_birth": ("76689-9", "Sex assigned at birth"),
    "patient.pregnant": ("82810-3", "Pregnancy status"),
    "patient.gestational_weeks": ("49051-6", "Gestational age in weeks"),
    "medical.qtc_ms": ("8636-3", "Q-T interval corrected"),
}
"""LOINC codes for intake questions (status: unverified, like chart.yaml's; see docs/interop.md)."""
ENABLE_WHEN: dict[str, dict[str, Any]] = {
    "patient.gestational_weeks": {"question": "patient.pregnant", "operator": "=", "answerBoolean": True},
    "current_treatment.dose_mg": {
        "question": "current_treatment.moud",
        "operator": "exists",
        "answerBoolean": True,
    },
    "current_treatment.months_on_moud": {
        "question": "current_treatment.moud",
        "operator": "exists",
        "answerBoolean": True,
    },
    "current_treatment.stable": {
        "question": "current_treatment.moud",
        "operator": "exists",
        "answerBoolean": True,
    },
}
"""Questions shown only when another is answered (the intake refuses them otherwise)."""


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


def _fhir_id(text: str) -> str:
    return "".join(ch if ch.isalnum() or ch in "-." else "-" for ch in text)[:64]


_MODELS: dict[str, Any] = {}


def validate_resource(resource: Mapping[str, Any]) -> None:
    """Parse a resource with its fhir.resources R4B model; ValueError (a defect) if it is invalid."""
    kind = str(resource.get("resourceType"))
    model = _MODELS.get(kind)
    if model is None:
        from fhir.resources.R4B import get_fhir_model_class

        model = _MODELS.setdefault(kind, get_fhir_model_class(kind))
    model.model_validate(dict(resource))


def care_plan_bundle(
    plan: CarePlan,
    *,
    subject: Mapping[str, Any] | None = None,
    labels: Mapping[str, str] | None = None,
    decisions: Mapping[str, Mapping[str, Any]] | None = None,
    contributor: str | None = None,
    signed: bool = False,
) -> dict[str, Any]:
    """The plan as a FHIR R4 Bundle of type collection, every resource validated with fhir.resources.

    ``subject`` is a FHIR Reference (e.g. ``{"reference": "Patient/123"}``) and is the only way
    a patient identifier enters the bundle; without it the resources name nobody (a display-only
    reference). ``decisions`` maps plan codes to the clinician's decisions (see api.fhir_plan).
    """
    labels = code_labels() if labels is None else labels
    subject = subject or {"display": "Patient not identified in this export"}
    entries = plan_resources(plan, subject, labels, decisions, contributor, signed)
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


def _item_codes(spec: FieldSpec) -> list[dict[str, str]]:
    codes = [{"system": INTAKE_FIELD_SYSTEM, "code": spec.path, "display": spec.label}]
    if spec.path in ITEM_LOINC:
        code, display = ITEM_LOINC[spec.path]
        codes.insert(0, {"system": LOINC, "code": code, "display": display})
    return codes


def _question(spec: FieldSpec) -> dict[str, Any]:
    item: dict[str, Any] = {
        "linkId": spec.path,
        "code": _item_codes(spec),
        "text": spec.label,
        "type": _QTYPE[spec.kind],
    }
    if spec.path in ENABLE_WHEN:
        item["enableWhen"] = [dict(ENABLE_WHEN[spec.path])]
        item["enableBehavior"] = "all"
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
    if spec.kind == "multi" or spec.path in EXPLICIT_NONE:
        return (*spec.choices, NONE_OPTION)
    return spec.choices


def _display(spec: FieldSpec, code: str) -> str:
    if code == NONE_OPTION:
        return EXPLICIT_NONE.get(spec.path, "None")
    return choice_label(spec.path, code)


@cache
def _questionnaire() -> dict[str, Any]:
    q = {
        "resourceType": "Questionnaire",
        "id": QUESTIONNAIRE_ID,
        "url": QUESTIONNAIRE_URL,
        "version": QUESTIONNAIRE_VERSION,
        "name": "CarepathIntake",
        "title": "carepath opioid use disorder intake",
        "status": "active",
        "date": "2026-12-01",
        "publisher": "carepath",
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
                elif spec.path in EXPLICIT_NONE and values[0] == NONE_OPTION:
                    set_path(out, spec.path, None)  # answered "None": known and empty
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
    intake: Intake | Mapping[str, Any],
    *,
    subject: Mapping[str, Any] | None = None,
    authored: str | None = None,
) -> dict[str, Any]:
    """The inverse of ``intake_from_questionnaire_response``: an intake as a completed response.

    Grouped like the Questionnaire; fields that are not recorded get no item. ``subject`` (a
    FHIR Reference) is the only way a patient reference enters the response.
    """
    data = canonical_intake_dict(intake) if isinstance(intake, Intake) else intake
    groups = []
    for g in GROUPS:
        items = []
        for spec in g.fields:
            node: Any = data
            for part in spec.path.split("."):
                node = node.get(part) if isinstance(node, Mapping) else None
            if node is None and spec.path in EXPLICIT_NONE and explicitly_none(data, spec.path):
                node = NONE_OPTION  # e.g. "not on MOUD": an answer, unlike a missing item
            if node is not None:
                items.append({"linkId": spec.path, "text": spec.label, "answer": _answers(spec, node)})
        if items:
            groups.append({"linkId": g.key, "text": g.legend, "item": items})
    qr: dict[str, Any] = {
        "resourceType": "QuestionnaireResponse",
        "questionnaire": f"{QUESTIONNAIRE_URL}|{QUESTIONNAIRE_VERSION}",
        "status": "completed",
        "item": groups,
    }
    if subject:
        qr["subject"] = dict(subject)
    if authored:
        qr["authored"] = authored
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
