"""A draft care plan as chart-ready FHIR R4 resources with standard codes (plain JSON; pure).

``api/fhir.py`` assembles these into the Bundle and validates every resource with fhir.resources;
``api/cds.py`` uses the proposal builders for CDS Hooks suggestions. Codes come from
``api/valuesets/outputs.yaml``: SNOMED CT, ICD-10-CM and RxNorm where a standard code exists, the
carepath code (https://carepath.example/codes) always alongside, and alone where none exists.

    CarePlan            US Core CarePlan: text, status draft, intent proposal, category assess-plan,
                        subject, author (the carepath Device), addresses (the OUD Condition), goal,
                        one activity per plan item: detail.kind/code/status/productCodeableConcept,
                        status reflecting the clinician's decisions (``decisions``)
    Condition           the OUD diagnosis (ICD-10-CM F11.x + SNOMED CT), verificationStatus provisional
    Goal                retention at the level of care, no overdose, the next review
    MedicationRequest   proposals (status draft, intent proposal) coded in RxNorm, basedOn the CarePlan
    DetectedIssue       one per alert
    Device              carepath and its rule-set version (the author of every draft)
    Provenance          target everything, rule set id|version|sha256, intake hash, citations

``decisions`` maps a plan code to the clinician's decision of record: ``{"action": "accept" |
"modify" | "decline", "text": str | None, "reason": str | None}``: accepted and modified
activities are "scheduled", declined ones "cancelled" (no proposal is made for them), codes
without a decision stay "not-started". The service passes the decisions of record
(api.decisions.decisions_of, via api.routes.fhir); ``decisions_from_overrides`` derives them
from bare overrides (plans stored before decisions of record). ``signed``: the CarePlan of a
signed version is "active", otherwise "draft".
"""

from __future__ import annotations

import html
import uuid
from collections.abc import Iterable, Mapping, Sequence
from typing import Any
from urllib.parse import quote

from carepath.api.decisions import activity_status_of_action
from carepath.api.terminology import outputs
from carepath.engine.plan import Alert, CarePlan, CitationOut, Item

__all__ = [
    "BASE",
    "CODE_SYSTEM",
    "SNOMED",
    "ICD10CM",
    "RXNORM",
    "plan_resources",
    "medication_proposal",
    "service_proposal",
    "recommendation_concept",
    "decisions_from_overrides",
    "medication_codes",
    "service_codes",
    "citation_uri",
    "US_CORE",
]

BASE = "https://carepath.example"
CODE_SYSTEM = f"{BASE}/codes"
EXT_RECOMMENDATION = f"{BASE}/fhir/StructureDefinition/recommendation"
EXT_ALERT = f"{BASE}/fhir/StructureDefinition/alert"
EXT_SHA256 = f"{BASE}/fhir/StructureDefinition/sha256"
PLAN_ID_SYSTEM = f"{BASE}/plan-id"
RULESET_SYSTEM = f"{BASE}/rulesets"
INTAKE_HASH_SYSTEM = f"{BASE}/intake-sha256"
CITATION_BASE = f"{BASE}/citations/"
SNOMED = "http://snomed.info/sct"
ICD10CM = "http://hl7.org/fhir/sid/icd-10-cm"
RXNORM = "http://www.nlm.nih.gov/research/umls/rxnorm"
US_CORE = "http://hl7.org/fhir/us/core/StructureDefinition"
_CAREPLAN_CATEGORY = "http://hl7.org/fhir/us/core/CodeSystem/careplan-category"
_CONDITION_CATEGORY = "http://terminology.hl7.org/CodeSystem/condition-category"
_CLINICAL = "http://terminology.hl7.org/CodeSystem/condition-clinical"
_VERIFICATION = "http://terminology.hl7.org/CodeSystem/condition-ver-status"
_PARTICIPANT = "http://terminology.hl7.org/CodeSystem/provenance-participant-type"
_SEVERITY = {"urgent": "high", "warning": "moderate", "info": "low"}
_UUID_NS = uuid.UUID("6b1f5a4e-2d4c-4f0e-9a7a-3c2d1e0f9b88")
NON_ACTIVITIES = frozenset({"wm.not_indicated"})
"""Codes that say something is NOT needed: in the CarePlan's description, not an activity."""


def _urn(plan: CarePlan, name: str) -> str:
    return "urn:uuid:" + str(uuid.uuid5(_UUID_NS, f"{plan.plan_id}/{name}"))


def _fhir_id(text: str) -> str:
    return "".join(ch if ch.isalnum() or ch in "-." else "-" for ch in text)[:64]


def citation_uri(c: CitationOut) -> str:
    return f"{CITATION_BASE}{quote(c.key, safe='')}#{quote(c.locator, safe='')}"


def _carepath_coding(code: str, labels: Mapping[str, str]) -> dict[str, str]:
    return {"system": CODE_SYSTEM, "code": code, "display": labels.get(code, code)}


def _standard(code: str) -> list[dict[str, str]]:
    spec = outputs()["recommendations"].get(code) or {}
    return [{k: c[k] for k in ("system", "code", "display")} for c in spec.get("codings", ())]


def recommendation_concept(code: str, labels: Mapping[str, str]) -> dict[str, Any]:
    """Standard codings first (where outputs.yaml has them), the carepath code always."""
    return {"coding": [*_standard(code), _carepath_coding(code, labels)], "text": labels.get(code, code)}


def medication_codes() -> set[str]:
    return {c for c, s in outputs()["recommendations"].items() if s["kind"] == "medication"}


def service_codes() -> set[str]:
    return {c for c, s in outputs()["recommendations"].items() if s["kind"] == "service"}


def _diagnosis_concept(icd10: str) -> dict[str, Any] | None:
    spec = outputs()["diagnoses"].get(icd10)
    if spec is None:
        return None
    return {
        "coding": [
            {"system": ICD10CM, "code": icd10, "display": spec["display"]},
            {"system": SNOMED, "code": spec["snomed"], "display": spec["snomed_display"]},
        ],
        "text": spec["display"],
    }


def decisions_from_overrides(overrides: Iterable[Any]) -> dict[str, dict[str, Any]]:
    """Recorded overrides -> decisions by code: 'remove' is a decline, any other change a modify."""
    out: dict[str, dict[str, Any]] = {}
    for o in overrides:
        if getattr(o, "section", "item") != "item":
            continue
        action = "decline" if getattr(o, "replacement_kind", None) == "remove" else "modify"
        out[o.code] = {"action": action, "text": getattr(o, "replacement_text", None), "reason": o.reason}
    return out


# ---------------------------------------------------------------- proposals (shared with CDS Hooks)


def _proposal(
    resource_type: str, rule_ids: Sequence[str], subject: Mapping[str, Any], **optional: Any
) -> dict[str, Any]:
    """What every proposal has: status draft, intent proposal, the patient, the rules behind it;
    plus the optional references that are given (authoredOn, reasonCode, encounter, ...)."""
    resource: dict[str, Any] = {
        "resourceType": resource_type,
        "status": "draft",
        "intent": "proposal",
        "subject": dict(subject),
        "note": [
            {"text": f"Proposed by carepath rules {', '.join(rule_ids)}; a draft for clinician review."}
        ],
    }
    shapes = {
        "authored": ("authoredOn", lambda v: v),
        "reason": ("reasonCode", lambda v: [dict(v)]),
        "encounter": ("encounter", dict),
        "requester": ("requester", dict),
        "based_on": ("basedOn", lambda v: [{"reference": v}]),
    }
    for name, value in optional.items():
        if value:
            key, shape = shapes[name]
            resource[key] = shape(value)
    return resource


def medication_proposal(
    code: str,
    labels: Mapping[str, str],
    *,
    subject: Mapping[str, Any],
    instruction: str,
    rule_ids: Sequence[str],
    **optional: Any,
) -> dict[str, Any]:
    """A MedicationRequest proposal (status draft) coded in RxNorm, for the clinician to sign.
    ``optional``: authored, reason (a CodeableConcept), encounter, requester (References), based_on."""
    concept = recommendation_concept(code, labels)
    concept["coding"].sort(key=lambda c: c["system"] != RXNORM)
    resource = _proposal("MedicationRequest", rule_ids, subject, **optional)
    resource["meta"] = {"profile": [f"{US_CORE}/us-core-medicationrequest"]}
    resource["medicationCodeableConcept"] = concept
    resource["dosageInstruction"] = [{"text": instruction}]
    if code == "hr.naloxone":
        order = outputs()["naloxone_order"]
        product = {k: order["coding"][k] for k in ("system", "code", "display")}
        resource["medicationCodeableConcept"] = {
            "coding": [product, _carepath_coding(code, labels)],
            "text": order["text"],
        }
        resource["dosageInstruction"] = [{"text": order["text"]}]
        resource["dispenseRequest"] = {"quantity": {"value": order["dispense_count"], "unit": "device"}}
    return resource


def service_proposal(
    code: str,
    labels: Mapping[str, str],
    *,
    subject: Mapping[str, Any],
    instruction: str,
    rule_ids: Sequence[str],
    **optional: Any,
) -> dict[str, Any]:
    """A ServiceRequest proposal (a referral or test), for the clinician to sign (``optional`` as above)."""
    resource = _proposal("ServiceRequest", rule_ids, subject, **optional)
    resource["code"] = recommendation_concept(code, labels)
    resource["patientInstruction"] = instruction
    return resource


# ---------------------------------------------------------------- the plan's resources


def _item_extension(item: Item, phase: str) -> dict[str, Any]:
    parts: list[dict[str, Any]] = [
        {"url": "kind", "valueCode": item.kind},
        {"url": "phase", "valueCode": phase},
    ]
    parts += [{"url": "ruleId", "valueString": r} for r in item.rule_ids]
    parts.append({"url": "evidenceGrade", "valueString": item.evidence_grade})
    parts += [{"url": "citation", "valueUri": citation_uri(c)} for c in item.citations]
    if item.start != "now":
        parts.append({"url": "start", "valueCode": item.start})
    return {"url": EXT_RECOMMENDATION, "extension": parts}


def decided_text(item: Item, decision: Mapping[str, Any] | None) -> str:
    """The line as decided: a modified line's new wording (else the suggestion), then its new
    dose (a dose-only change keeps the suggested wording)."""
    text = item.text
    if decision and decision.get("action") == "modify":
        text = str(decision.get("text") or item.text)
        if decision.get("dose"):
            text = f"{text} Dose: {decision['dose']}"
    return text


def _activity(
    item: Item, phase: str, labels: Mapping[str, str], decision: Mapping[str, Any] | None
) -> dict[str, Any]:
    text = decided_text(item, decision)
    cautions = " ".join(f"Caution: {c.text}" for c in item.cautions)
    detail: dict[str, Any] = {
        "extension": [_item_extension(item, phase)],
        "code": recommendation_concept(item.code, labels),
        "status": activity_status_of_action((decision or {}).get("action")),
        "description": f"{text} {cautions}".strip(),
        "reasonCode": [{"text": item.rationale}],
    }
    kind = (outputs()["recommendations"].get(item.code) or {}).get("kind")
    if kind == "medication":
        detail["kind"] = "MedicationRequest"
        detail["productCodeableConcept"] = {
            "coding": [c for c in _standard(item.code)] or [_carepath_coding(item.code, labels)]
        }
    elif kind == "service":
        detail["kind"] = "ServiceRequest"
    if item.kind == "avoid":
        detail["doNotPerform"] = True
    if item.start != "now" and item.start_condition:
        detail["scheduledString"] = item.start_condition
    if decision and decision.get("action") == "decline":
        detail["statusReason"] = {
            "text": f"Declined by the clinician: {decision.get('reason') or 'no reason given'}"
        }
    elif decision and decision.get("action") == "modify":
        detail["statusReason"] = {
            "text": f"Modified by the clinician: {decision.get('reason') or 'no reason given'}"
        }
    elif decision and decision.get("action") == "accept":
        detail["statusReason"] = {"text": "Accepted by the clinician"}
    return {"detail": detail}


def _narrative(plan: CarePlan) -> dict[str, Any]:
    lines = [
        plan.draft_notice,
        f"Level of care: {plan.level_of_care.label} (ASAM {plan.level_of_care.asam_level}).",
    ]
    if plan.diagnosis and plan.diagnosis.text:
        lines.append(f"Diagnosis: {plan.diagnosis.text}")
    lines += [f"{a.severity.upper()}: {a.text}" for a in plan.alerts]
    body = "".join(f"<p>{html.escape(line)}</p>" for line in lines)
    return {"status": "generated", "div": f'<div xmlns="http://www.w3.org/1999/xhtml">{body}</div>'}


def _goals(
    plan: CarePlan, subject: Mapping[str, Any], labels: Mapping[str, str]
) -> list[tuple[str, dict[str, Any]]]:
    start = plan.assessment_date.isoformat()
    goals = [
        (
            "goal/retention",
            f"Engaged in care at the recommended level: {plan.level_of_care.label} "
            f"(ASAM {plan.level_of_care.asam_level})",
            None,
        )
    ]
    if "hr.naloxone" in plan.codes("recommend"):
        goals.append(
            ("goal/no-overdose", "No opioid overdose: naloxone in hand and overdose education given", None)
        )
    if plan.next_visit is not None:
        goals.append(
            (
                "goal/review",
                f"Review within {plan.next_visit.within_days} days: {plan.next_visit.reason}",
                plan.next_visit.on.isoformat(),
            )
        )
    out = []
    for name, text, due in goals:
        goal: dict[str, Any] = {
            "resourceType": "Goal",
            "meta": {"profile": [f"{US_CORE}/us-core-goal"]},
            "lifecycleStatus": "proposed",
            "description": {"text": text},
            "subject": dict(subject),
            "startDate": start,
            "note": [{"text": "Proposed by carepath (draft; requires clinician review)."}],
        }
        if due:
            goal["target"] = [{"dueDate": due}]
        out.append((_urn(plan, name), goal))
    return out


def _condition(plan: CarePlan, subject: Mapping[str, Any]) -> dict[str, Any] | None:
    dx = plan.diagnosis
    concept = _diagnosis_concept(dx.icd10_cm) if dx and dx.icd10_cm else None
    if concept is None or dx is None:
        return None
    clinical = "remission" if dx.icd10_cm in ("F11.11", "F11.21") else "active"
    return {
        "resourceType": "Condition",
        "meta": {"profile": [f"{US_CORE}/us-core-condition-problems-health-concerns"]},
        "clinicalStatus": {"coding": [{"system": _CLINICAL, "code": clinical}]},
        "verificationStatus": {"coding": [{"system": _VERIFICATION, "code": "provisional"}]},
        "category": [
            {
                "coding": [
                    {
                        "system": _CONDITION_CATEGORY,
                        "code": "problem-list-item",
                        "display": "Problem List Item",
                    }
                ]
            }
        ],
        "code": concept,
        "subject": dict(subject),
        "recordedDate": plan.generated_at.isoformat(),
        "note": [
            {
                "text": f"{dx.text} Proposed by carepath from the intake "
                f"(DSM-5 criteria met: {dx.dsm5_criteria_met}); the clinician confirms the diagnosis."
            }
        ],
    }


def _detected_issue(
    plan: CarePlan, alert: Alert, subject: Mapping[str, Any], labels: Mapping[str, str], device: str
) -> dict[str, Any]:
    resource: dict[str, Any] = {
        "resourceType": "DetectedIssue",
        "extension": [
            {
                "url": EXT_ALERT,
                "extension": [{"url": "severity", "valueCode": alert.severity}]
                + [{"url": "ruleId", "valueString": r} for r in alert.rule_ids]
                + [{"url": "citation", "valueUri": citation_uri(c)} for c in alert.citations],
            }
        ],
        "status": "preliminary",
        "code": {
            "coding": [_carepath_coding(alert.code, labels)],
            "text": labels.get(alert.code, alert.code),
        },
        "severity": _SEVERITY[alert.severity],
        "identifiedDateTime": plan.generated_at.isoformat(),
        "author": {"reference": device},
        "detail": alert.text,
        "reference": citation_uri(alert.citations[0]),
    }
    if "reference" in subject:
        resource["patient"] = dict(subject)
    return resource


def _device(plan: CarePlan) -> dict[str, Any]:
    rs = plan.ruleset
    return {
        "resourceType": "Device",
        "identifier": [{"system": RULESET_SYSTEM, "value": f"{rs.id}|{rs.version}"}],
        "deviceName": [{"name": "carepath OUD care pathway engine", "type": "manufacturer-name"}],
        "version": [{"value": f"{rs.id} {rs.version} (sha256 {rs.sha256})"}],
        "note": [{"text": "Clinical decision support software: drafts require clinician review."}],
    }


def _medication_items(plan: CarePlan) -> list[Item]:
    """The medication proposals: the decision's recommend/continue options, else recommended items."""
    meds = medication_codes()
    items = {i.code: i for i in plan.items()}
    chosen: list[str] = []
    decision = plan.medication_decision
    if decision is not None:
        chosen = [o.code for o in decision.options if o.code and o.status in ("recommend", "continue")]
    else:
        chosen = [i.code for i in plan.items() if i.kind == "recommend" and i.code.startswith("moud.")]
    if "hr.naloxone" in plan.codes("recommend"):
        chosen.append("hr.naloxone")
    return [items[c] for c in dict.fromkeys(chosen) if c in items and c in meds]


def plan_resources(
    plan: CarePlan,
    subject: Mapping[str, Any],
    labels: Mapping[str, str],
    decisions: Mapping[str, Mapping[str, Any]] | None = None,
    contributor: str | None = None,
    signed: bool = False,
) -> list[tuple[str, dict[str, Any]]]:
    """(fullUrl, resource) for every resource of the plan, CarePlan first, Provenance last."""
    decisions = decisions or {}
    careplan_url = _urn(plan, "careplan")
    device_url = _urn(plan, "device")
    condition = _condition(plan, subject)
    condition_url = _urn(plan, "condition")
    reason = condition["code"] if condition else None
    goals = _goals(plan, subject, labels)
    issues = [
        (_urn(plan, f"alert/{n}"), _detected_issue(plan, a, subject, labels, device_url))
        for n, a in enumerate(plan.alerts)
    ]
    proposals = []
    for item in _medication_items(plan):
        if decisions.get(item.code, {}).get("action") == "decline":
            continue
        proposals.append(
            (
                _urn(plan, f"medicationrequest/{item.code}"),
                medication_proposal(
                    item.code,
                    labels,
                    subject=subject,
                    instruction=decided_text(item, decisions.get(item.code)),
                    rule_ids=item.rule_ids,
                    authored=plan.generated_at.isoformat(),
                    reason=reason,
                    requester={"reference": device_url},
                    based_on=careplan_url,
                ),
            )
        )
    careplan = _careplan(plan, subject, labels, decisions, device_url, contributor, signed)
    careplan["goal"] = [{"reference": url} for url, _ in goals]
    if condition:
        careplan["addresses"] = [{"reference": condition_url}]
    if issues:
        careplan["supportingInfo"] = [{"reference": url} for url, _ in issues]
    entries: list[tuple[str, dict[str, Any]]] = [(careplan_url, careplan)]
    if condition:
        entries.append((condition_url, condition))
    entries += goals + proposals + issues + [(device_url, _device(plan))]
    entries.append((_urn(plan, "provenance"), _provenance(plan, [u for u, _ in entries], device_url)))
    return entries


def _careplan(
    plan: CarePlan,
    subject: Mapping[str, Any],
    labels: Mapping[str, str],
    decisions: Mapping[str, Mapping[str, Any]],
    device_url: str,
    contributor: str | None,
    signed: bool = False,
) -> dict[str, Any]:
    not_needed = [labels.get(i.code, i.code) for i in plan.items() if i.code in NON_ACTIVITIES]
    description = plan.draft_notice
    if not_needed:
        description += " Not needed: " + "; ".join(not_needed) + "."
    notes = [
        {"text": f"Missing information: {m.label} ({m.impact}): {m.why_it_matters}"}
        for m in plan.missing_information
    ]
    resource: dict[str, Any] = {
        "resourceType": "CarePlan",
        "id": _fhir_id(plan.plan_id),
        "meta": {"profile": [f"{US_CORE}/us-core-careplan"]},
        "text": _narrative(plan),
        "identifier": [{"system": PLAN_ID_SYSTEM, "value": plan.plan_id}],
        "status": "active" if signed else "draft",  # a signed version is the plan of record
        "intent": "proposal",
        "category": [
            {
                "coding": [
                    {
                        "system": _CAREPLAN_CATEGORY,
                        "code": "assess-plan",
                        "display": "Assessment and Plan of Treatment",
                    }
                ]
            },
            {"coding": [_carepath_coding(plan.level_of_care.code, labels)], "text": plan.level_of_care.label},
        ],
        "title": f"{'Signed' if signed else 'Draft'} OUD care pathway: {plan.level_of_care.label}",
        "description": description,
        "subject": dict(subject),
        "period": {"start": plan.assessment_date.isoformat()},
        "created": plan.generated_at.isoformat(),
        "author": {"reference": device_url, "display": "carepath (draft for clinician review)"},
        "activity": [
            _activity(i, p.phase, labels, decisions.get(i.code))
            for p in plan.phases
            for i in p.items
            if i.code not in NON_ACTIVITIES
        ],
    }
    if contributor:
        resource["contributor"] = [{"display": contributor}]
    if notes:
        resource["note"] = notes
    if not resource["activity"]:
        del resource["activity"]
    return resource


def _provenance(plan: CarePlan, targets: list[str], device_url: str) -> dict[str, Any]:
    rs = plan.ruleset
    cited = {citation_uri(c) for a in plan.alerts for c in a.citations}
    cited |= {citation_uri(c) for i in plan.items() for c in i.citations}
    return {
        "resourceType": "Provenance",
        "meta": {"profile": [f"{US_CORE}/us-core-provenance"]},
        "target": [{"reference": url} for url in targets],
        "occurredDateTime": plan.generated_at.isoformat(),
        "recorded": plan.generated_at.isoformat(),
        "policy": [f"{RULESET_SYSTEM}/{quote(rs.id, safe='')}/{quote(rs.version, safe='')}", *sorted(cited)],
        "agent": [
            {
                "type": {"coding": [{"system": _PARTICIPANT, "code": "assembler", "display": "Assembler"}]},
                "who": {
                    "reference": device_url,
                    "display": f"carepath rule engine, rule set {rs.id} {rs.version}",
                },
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
