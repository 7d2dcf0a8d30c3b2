"""The rule pack as FHIR knowledge artifacts, so an EHR can list what the service does before it
turns it on (pure: a RulePack in, plain FHIR JSON out; ``api/fhir.py`` validates it).

    knowledge_bundle(pack)   Bundle (collection):
        Library            the pack: id, version, effective date, sha256, every cited source
        PlanDefinition     one per active rule (type eca-rule): its condition (carepath's rule
                           language, with a readable description), its actions (the codes it
                           recommends or avoids, as ActivityDefinitions), citations with locators,
                           evidence grade, review date
        ActivityDefinition one per recommendation code: kind, standard codes + the carepath code

Every PlanDefinition (and the Library) carries the decision-support source attributes of the US
ONC HTI-1 rule for evidence-based decision support interventions (45 CFR 170.315(b)(11)(iv)(A)),
as the extension ``.../dsi-source-attributes``: bibliographic citation, developer, funding source,
release and revision dates, and whether race, ethnicity, language, sexual orientation, gender
identity, sex, date of birth, social determinants of health or health status assessments are
inputs, computed from the facts each rule reads. The attribute list is transcribed from the
regulation by carepath's developers: regulatory review should confirm the wording.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import yaml

from carepath.api.fhir_plan import BASE, CODE_SYSTEM, RXNORM, recommendation_concept
from carepath.api.terminology import outputs
from carepath.engine.facts import FACTS
from carepath.engine.rulepack import YAML_LOADER, PackRule, RulePack
from carepath.engine.rulespec import All, AnyOf, Cond, Not, Test

__all__ = ["knowledge_bundle", "source_attributes", "HTI1_ATTRIBUTES", "EXT_DSI", "USCDI_INPUTS"]

EXT_DSI = f"{BASE}/fhir/StructureDefinition/dsi-source-attributes"
CONDITION_LANGUAGE = "text/x-carepath-rule"
"""The rule condition as carepath's own JSON condition language (rules/*.yaml 'when')."""

USCDI_INPUTS: dict[str, tuple[str, ...]] = {
    "race": (),
    "ethnicity": (),
    "language": ("preferences.language",),
    "sexualOrientation": (),
    "genderIdentity": (),
    "sex": ("patient.sex_at_birth",),
    "dateOfBirth": ("patient.age",),
    "socialDeterminantsOfHealth": (
        "social.can_leave_work",
        "social.caregiver",
        "social.privacy_concern",
        "social.housing",
        "social.home_supports_recovery",
        "social.support_system",
        "social.legal",
        "social.days_since_release",
    ),
    "healthStatusAssessments": (
        "substance_use.cows_score",
        "substance_use.dsm5_criteria_met",
        "mental_health.suicidal_ideation",
        "readiness",
    ),
}
"""Which intake fields count as each HTI-1 input category (date of birth: carepath takes the age)."""

HTI1_ATTRIBUTES = (
    "bibliographicCitation",
    "developer",
    "fundingSource",
    "releaseDate",
    "revisionDate",
    *(f"uses{k[0].upper()}{k[1:]}" for k in USCDI_INPUTS),
)


def _canonical(kind: str, ident: str) -> str:
    return f"{BASE}/fhir/{kind}/{ident}"


def _fhir_id(text: str) -> str:
    return "".join(ch if ch.isalnum() or ch in "-." else "-" for ch in text)[:64]


def _manifest(pack: RulePack) -> dict[str, Any]:
    path = Path(pack.source_dir) / "pack.yaml"
    try:
        data = yaml.load(path.read_text(encoding="utf-8"), Loader=YAML_LOADER)
    except (OSError, yaml.YAMLError):
        return {}
    return data if isinstance(data, dict) else {}


def _describe(cond: Cond) -> str:
    if isinstance(cond, Test):
        return cond.describe()
    if isinstance(cond, All):
        return "(" + " and ".join(_describe(c) for c in cond.items) + ")"
    if isinstance(cond, AnyOf):
        return "(" + " or ".join(_describe(c) for c in cond.items) + ")"
    if isinstance(cond, Not):
        return f"not {_describe(cond.item)}"
    return str(getattr(cond, "describe", lambda: cond)())


def _inputs(rule: PackRule) -> set[str]:
    return {src for f in rule.facts if f in FACTS for src in FACTS[f].sources}


def source_attributes(pack: RulePack, rule: PackRule | None, developer: str) -> dict[str, Any]:
    """The HTI-1 source attributes (one rule, or the whole pack when ``rule`` is None)."""
    rules = [rule] if rule else list(pack.rules)
    cites = sorted({(c.key, c.locator) for r in rules for c in r.rule.citations})
    inputs = set().union(*(_inputs(r) for r in rules)) if rules else set()
    citation = "; ".join(
        f"{pack.citations[k].title}, {loc}" if k in pack.citations else f"{k} {loc}" for k, loc in cites
    )
    attrs: dict[str, Any] = {
        "bibliographicCitation": citation,
        "developer": developer,
        "fundingSource": "Not recorded in the rule pack (to be stated by the deploying organisation).",
        "releaseDate": pack.effective_date.isoformat(),
        "revisionDate": pack.effective_date.isoformat(),
    }
    for category, fields in USCDI_INPUTS.items():
        attrs[f"uses{category[0].upper()}{category[1:]}"] = bool(inputs & set(fields))
    return attrs


def _dsi_extension(attrs: Mapping[str, Any]) -> dict[str, Any]:
    parts = []
    for name in HTI1_ATTRIBUTES:
        value = attrs[name]
        parts.append(
            {"url": name, "valueBoolean": value}
            if isinstance(value, bool)
            else {"url": name, "valueString": str(value)}
        )
    return {"url": EXT_DSI, "extension": parts}


def _related(pack: RulePack, refs: Iterable[tuple[str, str]]) -> list[dict[str, Any]]:
    out = []
    for key, locator in refs:
        c = pack.citations.get(key)
        display = f"{key}: {c.short} ({c.year})" if c else key
        out.append(
            {
                "type": "citation",
                "label": key,
                "display": display,
                "citation": f"{c.title if c else key}; {locator}",
            }
        )
    return out


def _library(pack: RulePack, developer: str) -> dict[str, Any]:
    return {
        "resourceType": "Library",
        "id": _fhir_id(pack.id),
        "extension": [_dsi_extension(source_attributes(pack, None, developer))],
        "url": _canonical("Library", pack.id),
        "identifier": [
            {"system": f"{BASE}/rulesets", "value": f"{pack.id}|{pack.version}"},
            {"system": f"{BASE}/sha256", "value": pack.sha256},
        ],
        "version": pack.version,
        "name": "CarepathOudRulePack",
        "title": pack.title,
        "status": "active",
        "type": {
            "coding": [
                {"system": "http://terminology.hl7.org/CodeSystem/library-type", "code": "asset-collection"}
            ]
        },
        "date": pack.effective_date.isoformat(),
        "publisher": "carepath",
        "description": (
            f"The carepath rule pack {pack.id} {pack.version} (sha256 {pack.sha256}): "
            f"{len(pack.rules)} active rules drafting an opioid use disorder care pathway for "
            "clinician review. Every rule cites its source."
        ),
        "effectivePeriod": {"start": pack.effective_date.isoformat()},
        "relatedArtifact": _related(pack, sorted((k, "source") for k in pack.citations)),
    }


def _plan_definition(pack: RulePack, rule: PackRule, developer: str) -> dict[str, Any]:
    r = rule.rule
    actions = []
    for then in r.then:
        if then.severity is not None:
            title = f"Alert ({then.severity}): {then.code}"
        elif then.effect is not None:
            title = f"Level of care ({then.effect}): {then.code}"
        else:
            title = f"{(then.kind or 'recommend').capitalize()}: {then.code}"
        action: dict[str, Any] = {
            "title": title,
            "code": [{"coding": [{"system": CODE_SYSTEM, "code": then.code}]}],
        }
        if then.text:
            action["description"] = then.text
        if not then.code.startswith("alert."):
            action["definitionCanonical"] = _canonical("ActivityDefinition", then.code)
        actions.append(action)
    condition_text = "always" if r.when == "always" else _describe(rule.cond)
    top: dict[str, Any] = {
        "title": r.title,
        "condition": [
            {
                "kind": "applicability",
                "expression": {
                    "language": CONDITION_LANGUAGE,
                    "expression": json.dumps(r.when, sort_keys=True, default=str),
                    "description": condition_text,
                },
            }
        ],
        "action": actions,
    }
    return {
        "resourceType": "PlanDefinition",
        "id": _fhir_id(r.id),
        "extension": [_dsi_extension(source_attributes(pack, rule, developer))],
        "url": _canonical("PlanDefinition", r.id),
        "identifier": [{"system": f"{BASE}/rules", "value": r.id}],
        "version": str(r.version),
        "name": _fhir_id(r.id).replace("-", ""),
        "title": f"{r.id}: {r.title}",
        "type": {
            "coding": [
                {"system": "http://terminology.hl7.org/CodeSystem/plan-definition-type", "code": "eca-rule"}
            ]
        },
        "status": "active" if r.status == "active" else "draft",
        "date": pack.effective_date.isoformat(),
        "publisher": "carepath",
        "description": r.rationale.strip(),
        "useContext": [
            {
                "code": {
                    "system": "http://terminology.hl7.org/CodeSystem/usage-context-type",
                    "code": "focus",
                },
                "valueCodeableConcept": {
                    "coding": [
                        {
                            "system": "http://snomed.info/sct",
                            "code": "5602001",
                            "display": "Opioid abuse (disorder)",
                        }
                    ],
                    "text": "Opioid use disorder",
                },
            }
        ],
        "purpose": f"Phase: {r.phase}. Evidence: {r.evidence_grade}. Confirmation: {r.confirmation}.",
        "lastReviewDate": pack.effective_date.isoformat(),
        "effectivePeriod": {"start": pack.effective_date.isoformat(), "end": r.review_date.isoformat()},
        "relatedArtifact": _related(pack, [(c.key, c.locator) for c in r.citations]),
        "library": [_canonical("Library", pack.id)],
        "action": [top],
    }


def _activity_definition(pack: RulePack, code: str) -> dict[str, Any]:
    c = pack.codes[code]
    labels = {k: v.label for k, v in pack.codes.items()}
    spec = outputs()["recommendations"].get(code) or {}
    resource: dict[str, Any] = {
        "resourceType": "ActivityDefinition",
        "id": _fhir_id(code),
        "url": _canonical("ActivityDefinition", code),
        "version": pack.version,
        "name": _fhir_id(code).replace("-", "").replace(".", "_"),
        "title": c.label,
        "status": "active",
        "date": pack.effective_date.isoformat(),
        "publisher": "carepath",
        "description": c.text,
        "code": recommendation_concept(code, labels),
    }
    kind = spec.get("kind")
    if kind == "medication":
        resource["kind"] = "MedicationRequest"
        product = [x for x in spec.get("codings", ()) if x["system"] == RXNORM]
        if product:
            resource["productCodeableConcept"] = {
                "coding": [{k: product[0][k] for k in ("system", "code", "display")}]
            }
    elif kind == "service":
        resource["kind"] = "ServiceRequest"
    else:
        resource["kind"] = "Task"
    return resource


def knowledge_bundle(pack: RulePack) -> dict[str, Any]:
    """The pack as a Bundle of knowledge artifacts (deterministic for a given pack)."""
    manifest = _manifest(pack)
    owners = ", ".join(str(o) for o in manifest.get("owners") or ()) or "the clinical lead"
    developer = f"carepath (rule pack {pack.id}; clinical owners: {owners})"
    used = sorted(
        {t.code for r in pack.rules for t in r.rule.then if not t.code.startswith("alert.")} & set(pack.codes)
    )
    resources = [_library(pack, developer)]
    resources += [_plan_definition(pack, r, developer) for r in sorted(pack.rules, key=lambda r: r.id)]
    resources += [_activity_definition(pack, code) for code in used]
    return {
        "resourceType": "Bundle",
        "id": _fhir_id(f"{pack.id}-{pack.version}-knowledge"),
        "type": "collection",
        "timestamp": f"{pack.effective_date.isoformat()}T00:00:00Z",
        "entry": [{"fullUrl": r["url"], "resource": r} for r in resources],
    }
