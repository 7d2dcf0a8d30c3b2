"""FHIR adapter: plan -> Bundle (CarePlan, DetectedIssue, Provenance), QuestionnaireResponse -> intake."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from fhir.resources.R4B.bundle import Bundle
from fhir.resources.R4B.questionnaire import Questionnaire

from carepath.api.fhir import (
    CODE_SYSTEM,
    QUESTIONNAIRE_URL,
    QUESTIONNAIRE_VERSION,
    care_plan_bundle,
    intake_from_fhir,
    intake_from_questionnaire_response,
    intake_questionnaire,
    questionnaire_response,
    questionnaire_response_from_bundle,
)
from carepath.api.fhir_plan import EXT_RECOMMENDATION, NON_ACTIVITIES
from carepath.api.intake_fields import FIELDS
from carepath.engine import IntakeError, parse_intake_obj
from carepath.engine.intake import canonical_intake_json
from tests.conftest import FIXED_TIME, ROOT

VIGNETTES = sorted((ROOT / "tests" / "vignettes").glob("*.yaml"))
CANARY_ID = "MRN-CANARY-7731"
CANARY_NAME = "Canary Zebedee Quill"


def _intake_dict(path: Path) -> dict:
    return yaml.safe_load(path.read_text(encoding="utf-8"))["intake"]


def _resources(bundle: dict, kind: str) -> list[dict]:
    return [e["resource"] for e in bundle["entry"] if e["resource"]["resourceType"] == kind]


@pytest.fixture(scope="module")
def plans(engine):
    out = {}
    for path in VIGNETTES:
        raw = _intake_dict(path)
        raw["patient"] = {**raw["patient"], "id": CANARY_ID, "name": CANARY_NAME}
        out[path.stem] = engine.evaluate(parse_intake_obj(raw), FIXED_TIME)
    return out


def test_bundle_of_every_vignette_parses_back_and_carries_the_whole_plan(plans):
    for name, plan in plans.items():
        bundle = care_plan_bundle(plan)
        parsed = Bundle.model_validate(bundle)
        assert parsed.type == "collection", name
        (cp,) = _resources(bundle, "CarePlan")
        assert cp["status"] == "draft" and cp["intent"] == "proposal"
        assert cp["description"].startswith("DRAFT - requires clinician review")
        assert cp["title"]
        assert cp["created"] == plan.generated_at.isoformat()
        assert cp["period"]["start"] == plan.assessment_date.isoformat()
        items = [i for i in plan.items() if i.code not in NON_ACTIVITIES]
        assert len(cp.get("activity", [])) == len(items), name
        for item, activity in zip(items, cp.get("activity", []), strict=True):
            detail = activity["detail"]
            coding = detail["code"]["coding"][-1]  # standard codes first, the carepath code last
            assert coding["system"] == CODE_SYSTEM and coding["code"] == item.code and coding["display"]
            assert all(c["system"] != CODE_SYSTEM for c in detail["code"]["coding"][:-1])
            assert detail["status"] == "not-started"
            assert detail["description"].startswith(item.text)
            assert detail.get("doNotPerform", False) is (item.kind == "avoid")
            (ext,) = detail["extension"]
            assert ext["url"] == EXT_RECOMMENDATION
            parts = ext["extension"]
            assert {"url": "kind", "valueCode": item.kind} in parts
            assert [p["valueString"] for p in parts if p["url"] == "ruleId"] == item.rule_ids
            assert {"url": "evidenceGrade", "valueString": item.evidence_grade} in parts
        issues = _resources(bundle, "DetectedIssue")
        assert [i["code"]["coding"][0]["code"] for i in issues] == [a.code for a in plan.alerts]
        sev = {"urgent": "high", "warning": "moderate", "info": "low"}
        assert [i["severity"] for i in issues] == [sev[a.severity] for a in plan.alerts]
        assert [i["detail"] for i in issues] == [a.text for a in plan.alerts]
        issue_urls = [
            e["fullUrl"] for e in bundle["entry"] if e["resource"]["resourceType"] == "DetectedIssue"
        ]
        assert [r["reference"] for r in cp.get("supportingInfo", [])] == issue_urls


def test_provenance_names_rule_set_intake_hash_and_every_citation(plans):
    plan = plans[VIGNETTES[0].stem]
    bundle = care_plan_bundle(plan)
    (prov,) = _resources(bundle, "Provenance")
    urls = [e["fullUrl"] for e in bundle["entry"] if e["resource"]["resourceType"] != "Provenance"]
    assert [t["reference"] for t in prov["target"]] == urls
    assert prov["recorded"] == plan.generated_at.isoformat()
    text = json.dumps(prov)
    assert plan.ruleset.id in text and plan.ruleset.version in text and plan.ruleset.sha256 in text
    assert plan.intake_sha256 in text
    keys = {c.key for i in plan.items() for c in i.citations} | {
        c.key for a in plan.alerts for c in a.citations
    }
    cited = {p.rsplit("/", 1)[-1].split("#")[0] for p in prov["policy"] if "/citations/" in p}
    assert cited == keys


def test_no_patient_identifier_unless_passed_explicitly(plans):
    for plan in plans.values():
        text = json.dumps(care_plan_bundle(plan))
        assert CANARY_ID not in text and CANARY_NAME not in text
        assert '"Patient/' not in text
    plan = next(iter(plans.values()))
    bundle = care_plan_bundle(plan, subject={"reference": "Patient/example-42"})
    (cp,) = _resources(bundle, "CarePlan")
    assert cp["subject"] == {"reference": "Patient/example-42"}
    assert all(
        i["patient"] == {"reference": "Patient/example-42"} for i in _resources(bundle, "DetectedIssue")
    )


def test_bundle_is_deterministic(plans):
    plan = next(iter(plans.values()))
    assert json.dumps(care_plan_bundle(plan)) == json.dumps(care_plan_bundle(plan))


def test_cli_format_fhir(tmp_path):
    out = tmp_path / "b.json"
    run = subprocess.run(
        [
            sys.executable,
            "-c",
            "from carepath.api.cli import main; main()",
            "evaluate",
            str(ROOT / "examples" / "intake-fentanyl.json"),
        ]
        + ["--format", "fhir", "-o", str(out), "--engine", "reference"],
        capture_output=True,
        text=True,
        cwd=ROOT,
    )
    assert run.returncode == 0, run.stderr
    bundle = json.loads(out.read_text())
    Bundle.model_validate(bundle)
    assert {e["resource"]["resourceType"] for e in bundle["entry"]} >= {"CarePlan", "Provenance"}


# ---------------------------------------------------------------- Questionnaire / QuestionnaireResponse


def _link_ids(items):
    for item in items:
        yield item["linkId"], item["type"]
        yield from _link_ids(item.get("item", []))


def test_questionnaire_is_valid_and_asks_every_intake_field():
    q = intake_questionnaire()
    Questionnaire.model_validate(q)
    assert q["url"] == QUESTIONNAIRE_URL and q["id"] == "carepath-intake"
    asked = {link for link, kind in _link_ids(q["item"]) if kind not in ("group", "display")}
    assert asked == {f.path for f in FIELDS}
    required = {link for link, _ in _link_ids(q["item"]) if link in ("assessment_date", "patient.age")}
    assert required == {"assessment_date", "patient.age"}


@pytest.mark.parametrize("path", VIGNETTES, ids=[p.stem for p in VIGNETTES])
def test_questionnaire_response_round_trips_every_vignette(path):
    intake = parse_intake_obj(_intake_dict(path))
    qr = questionnaire_response(intake)
    assert qr["questionnaire"] == f"{QUESTIONNAIRE_URL}|{QUESTIONNAIRE_VERSION}"
    back = intake_from_fhir(json.loads(json.dumps(qr)))
    assert canonical_intake_json(back) == canonical_intake_json(intake)


def _flat_qr(*items: dict) -> dict:
    return {"resourceType": "QuestionnaireResponse", "status": "completed", "item": list(items)}


def test_flat_linkids_and_lists_and_unanswered_items():
    qr = _flat_qr(
        {"linkId": "assessment_date", "answer": [{"valueDate": "2026-03-02"}]},
        {"linkId": "patient.age", "answer": [{"valueInteger": 40}]},
        {"linkId": "substance_use.cows_score", "answer": [{"valueInteger": 11}]},
        {
            "linkId": "substance_use.opioids",
            "answer": [{"valueCoding": {"code": "heroin"}}, {"valueString": "fentanyl"}],
        },
        {"linkId": "substance_use.last_use_hours", "answer": [{"valueDecimal": 14.5}]},
        {"linkId": "substance_use.physically_dependent", "answer": [{"valueBoolean": True}]},
        {"linkId": "medical.interacting_medications", "answer": [{"valueString": " efavirenz "}]},
        {"linkId": "medical.hiv"},  # unanswered: unknown, not "no"
    )
    intake = intake_from_questionnaire_response(qr)
    assert intake == {
        "assessment_date": "2026-03-02",
        "patient": {"age": 40},
        "substance_use": {
            "cows_score": 11,
            "opioids": ["heroin", "fentanyl"],
            "last_use_hours": 14.5,
            "physically_dependent": True,
        },
        "medical": {"interacting_medications": ["efavirenz"]},
    }
    assert parse_intake_obj(intake).medical.hiv is None


def test_none_answers_a_list_question_with_the_empty_list():
    base = (
        {"linkId": "assessment_date", "answer": [{"valueDate": "2026-03-02"}]},
        {"linkId": "patient.age", "answer": [{"valueInteger": 40}]},
    )
    qr = _flat_qr(
        *base,
        {"linkId": "mental_health.conditions", "answer": [{"valueCoding": {"code": "none"}}]},
        {"linkId": "medical.interacting_medications", "answer": [{"valueString": "none"}]},
    )
    intake = intake_from_questionnaire_response(qr)
    assert intake["mental_health"] == {"conditions": []} and intake["medical"] == {
        "interacting_medications": []
    }
    assert parse_intake_obj(intake).mental_health.conditions == []  # known: no conditions
    options = {
        q["linkId"]: [o["valueCoding"]["code"] for o in q.get("answerOption", [])]
        for g in intake_questionnaire()["item"]
        for q in g["item"]
    }
    assert options["mental_health.conditions"][-1] == "none" and "none" not in options["stage"]
    mixed = _flat_qr(
        *base,
        {
            "linkId": "history.prior_moud",
            "answer": [{"valueCoding": {"code": "none"}}, {"valueCoding": {"code": "methadone"}}],
        },
    )
    with pytest.raises(IntakeError) as exc:
        intake_from_questionnaire_response(mixed)
    assert [p.field for p in exc.value.problems] == ["history.prior_moud"]


def test_bundle_prefetch_picks_the_latest_response():
    old = {**_flat_qr(), "authored": "2025-01-01T00:00:00Z", "id": "old"}
    new = {**_flat_qr(), "authored": "2026-01-01T00:00:00Z", "id": "new"}
    bundle = {"resourceType": "Bundle", "type": "searchset", "entry": [{"resource": old}, {"resource": new}]}
    assert questionnaire_response_from_bundle(bundle)["id"] == "new"
    assert questionnaire_response_from_bundle(new) is new
    assert questionnaire_response_from_bundle({"resourceType": "Bundle", "entry": []}) is None
    assert questionnaire_response_from_bundle({"resourceType": "Patient"}) is None


BAD = [
    ({"resourceType": "Patient"}, "(questionnaire response)"),
    ({"resourceType": "QuestionnaireResponse", "status": 7, "item": "x"}, "(questionnaire response)"),
    (_flat_qr({"linkId": "patient.shoe_size", "answer": [{"valueInteger": 3}]}), "patient.shoe_size"),
    (
        _flat_qr({"linkId": "patient.age", "answer": [{"valueInteger": 30}, {"valueInteger": 31}]}),
        "patient.age",
    ),
    (_flat_qr({"linkId": "patient.age", "answer": [{"valueAttachment": {"title": "x"}}]}), "patient.age"),
]


@pytest.mark.parametrize(("qr", "field"), BAD)
def test_bad_responses_are_refused_by_field(qr, field):
    with pytest.raises(IntakeError) as exc:
        intake_from_questionnaire_response(qr)
    assert field in [p.field for p in exc.value.problems]


def test_invalid_values_are_reported_by_path_without_echo():
    canary = "CANARY-VALUE-5521"
    qr = _flat_qr(
        {"linkId": "assessment_date", "answer": [{"valueDate": "2026-03-02"}]},
        {"linkId": "patient.age", "answer": [{"valueInteger": 8}]},
        {"linkId": "stage", "answer": [{"valueCoding": {"code": canary}}]},
        {"linkId": "odd " + canary, "answer": [{"valueString": canary}]},
    )
    with pytest.raises(IntakeError) as exc:
        intake_from_fhir(qr)
    assert canary not in str(exc.value)
    qr["item"].pop()
    with pytest.raises(IntakeError) as exc:
        intake_from_fhir(qr)
    assert {p.field for p in exc.value.problems} == {"patient.age", "stage"}
    assert canary not in str(exc.value)
