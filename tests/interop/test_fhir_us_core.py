"""FHIR out with standard codes: every resource validated with fhir.resources (R4B) and checked for
the US Core elements an EHR needs to file it; the clinician's decisions reach activity status;
the Questionnaire is versioned with item codes and enableWhen; the rule pack exports as knowledge
artifacts with the HTI-1 source attributes; the HTTP routes serve and accept them."""

from __future__ import annotations

import hashlib
import json
import secrets
import subprocess
import sys

import httpx
import pytest
import yaml

from carepath.api.fhir import (
    QUESTIONNAIRE_VERSION,
    care_plan_bundle,
    intake_questionnaire,
    questionnaire_response,
    validate_resource,
)
from carepath.api.fhir_plan import ICD10CM, RXNORM, SNOMED, decisions_from_overrides
from carepath.api.knowledge import EXT_DSI, HTI1_ATTRIBUTES, knowledge_bundle
from carepath.engine import parse_intake_obj
from carepath.engine.plan import Diagnosis, NextVisit
from tests.conftest import FIXED_TIME, ROOT
from tests.service.helpers import ThreadServer, make_users

SUBJECT = {"reference": "Patient/pat-fentanyl-pregnant"}
EXAMPLE = json.loads((ROOT / "examples" / "intake-fentanyl.json").read_text())

# US Core required (1..1 / must-have) elements checked per resource type
US_CORE_REQUIRED = {
    "CarePlan": ("text", "status", "intent", "category", "subject"),
    "Condition": ("clinicalStatus", "verificationStatus", "category", "code", "subject"),
    "Goal": ("lifecycleStatus", "description", "subject"),
    "MedicationRequest": (
        "status",
        "intent",
        "medicationCodeableConcept",
        "subject",
        "authoredOn",
        "requester",
    ),
    "Provenance": ("target", "recorded", "agent"),
}


def vignette(name: str) -> dict:
    path = next((ROOT / "tests" / "vignettes").glob(f"{name}-*.yaml"))
    return yaml.safe_load(path.read_text(encoding="utf-8"))["intake"]


@pytest.fixture(scope="module")
def plan(engine):
    p = engine.evaluate(parse_intake_obj(vignette("01")), FIXED_TIME)
    return p.model_copy(
        update={
            "diagnosis": Diagnosis(
                dsm5_criteria_met=7,
                severity="severe",
                icd10_cm="F11.20",
                text="Opioid use disorder, severe (7 of 11 DSM-5 criteria).",
            ),
            "next_visit": NextVisit(
                within_days=7,
                on=p.assessment_date.replace(day=min(p.assessment_date.day + 7, 28)),
                reason="buprenorphine dose review",
            ),
        }
    )


def _by_type(bundle):
    out: dict[str, list[dict]] = {}
    for e in bundle["entry"]:
        out.setdefault(e["resource"]["resourceType"], []).append(e["resource"])
    return out


def test_every_resource_validates_and_has_the_us_core_required_elements(plan):
    bundle = care_plan_bundle(plan, subject=SUBJECT)
    types = _by_type(bundle)
    assert set(types) >= {"CarePlan", "Condition", "Goal", "MedicationRequest", "Device", "Provenance"}
    assert len(types.get("DetectedIssue", [])) == len(plan.alerts)
    for entry in bundle["entry"]:
        res = entry["resource"]
        validate_resource(res)
        for element in US_CORE_REQUIRED.get(res["resourceType"], ()):
            assert res.get(element), (res["resourceType"], element)
        if res["resourceType"] in ("CarePlan", "Condition", "Goal", "MedicationRequest", "DetectedIssue"):
            assert (res.get("subject") or res.get("patient")) == SUBJECT
    (goal_due,) = [g for g in types["Goal"] if g.get("target")]
    assert goal_due["target"][0]["dueDate"] == plan.next_visit.on.isoformat()
    assert all(g.get("startDate") or g.get("target") for g in types["Goal"])


def test_careplan_is_us_core_assess_plan_with_author_goals_and_addresses(plan):
    types = _by_type(care_plan_bundle(plan, subject=SUBJECT))
    (cp,) = types["CarePlan"]
    assert cp["meta"]["profile"] == ["http://hl7.org/fhir/us/core/StructureDefinition/us-core-careplan"]
    assert {
        "system": "http://hl7.org/fhir/us/core/CodeSystem/careplan-category",
        "code": "assess-plan",
        "display": "Assessment and Plan of Treatment",
    } in cp["category"][0]["coding"]
    assert cp["text"]["status"] == "generated" and cp["text"]["div"].startswith("<div xmlns=")
    assert cp["author"]["reference"].startswith("urn:uuid:")
    assert len(cp["goal"]) == len(types["Goal"]) and cp["addresses"]
    kinds = {a["detail"].get("kind") for a in cp["activity"]}
    assert {"MedicationRequest", "ServiceRequest"} <= kinds
    naloxone = next(
        a["detail"] for a in cp["activity"] if a["detail"]["code"]["coding"][-1]["code"] == "hr.naloxone"
    )
    assert naloxone["productCodeableConcept"]["coding"][0] == {
        "system": RXNORM,
        "code": "1725059",
        "display": "naloxone hydrochloride 40 MG/ML Nasal Spray",
    }
    assert not any(a["detail"]["code"]["coding"][-1]["code"] == "wm.not_indicated" for a in cp["activity"])


def test_condition_in_icd10_and_snomed_and_proposals_in_rxnorm(plan):
    types = _by_type(care_plan_bundle(plan, subject=SUBJECT))
    (cond,) = types["Condition"]
    codes = {c["system"]: c["code"] for c in cond["code"]["coding"]}
    assert codes == {ICD10CM: "F11.20", SNOMED: "75544000"}
    assert cond["verificationStatus"]["coding"][0]["code"] == "provisional"
    for mr in types["MedicationRequest"]:
        assert mr["status"] == "draft" and mr["intent"] == "proposal"
        assert mr["medicationCodeableConcept"]["coding"][0]["system"] == RXNORM
        assert mr["reasonCode"][0]["coding"][0]["code"] == "F11.20"
        assert mr["basedOn"][0]["reference"] == next(e for e in types["CarePlan"])["id"] or mr["basedOn"]


def test_provenance_names_the_rule_set_version_and_the_device(plan):
    bundle = care_plan_bundle(plan, subject=SUBJECT)
    types = _by_type(bundle)
    (prov,) = types["Provenance"]
    (device,) = types["Device"]
    assert plan.ruleset.version in json.dumps(prov) and plan.ruleset.version in json.dumps(device)
    assert prov["agent"][0]["who"]["reference"] == next(
        e["fullUrl"] for e in bundle["entry"] if e["resource"]["resourceType"] == "Device"
    )


def test_decisions_set_activity_status(plan):
    all_codes = [i.code for i in plan.items() if i.code != "wm.not_indicated"]
    codes = [c for c in all_codes if all_codes.count(c) == 1]
    decline, modify, accept = codes[0], codes[1], codes[2]
    decisions = {
        decline: {"action": "decline", "reason": "patient prefers to wait"},
        modify: {"action": "modify", "text": "Adjusted by the clinician.", "reason": "night shifts"},
        accept: {"action": "accept"},
    }
    (cp,) = _by_type(care_plan_bundle(plan, subject=SUBJECT, decisions=decisions))["CarePlan"]
    status = {a["detail"]["code"]["coding"][-1]["code"]: a["detail"] for a in cp["activity"]}
    assert (
        status[decline]["status"] == "cancelled"
        and "patient prefers to wait" in status[decline]["statusReason"]["text"]
    )
    assert status[modify]["description"].startswith("Adjusted by the clinician.")
    assert status[accept]["statusReason"]["text"] == "Accepted by the clinician"


def test_overrides_become_decisions():
    class Override:  # an OverrideRecord's shape
        def __init__(self, code, kind, reason):
            self.section, self.code, self.replacement_kind, self.reason, self.replacement_text = (
                "item",
                code,
                kind,
                reason,
                None,
            )

    d = decisions_from_overrides(
        [
            Override("hr.naloxone", "remove", "has a kit"),
            Override("moud.buprenorphine", "consider", "prefers methadone"),
        ]
    )
    assert d["hr.naloxone"]["action"] == "decline" and d["moud.buprenorphine"]["action"] == "modify"


def test_questionnaire_is_versioned_coded_and_conditional():
    q = intake_questionnaire()
    validate_resource(q)
    assert q["version"] == QUESTIONNAIRE_VERSION
    items = {i["linkId"]: i for g in q["item"] for i in g["item"]}
    assert all(i["code"] for i in items.values())
    assert items["patient.age"]["code"][0] == {
        "system": "http://loinc.org",
        "code": "30525-0",
        "display": "Age",
    }
    assert items["patient.gestational_weeks"]["enableWhen"] == [
        {"question": "patient.pregnant", "operator": "=", "answerBoolean": True}
    ]
    assert items["current_treatment.dose_mg"]["enableWhen"][0]["operator"] == "exists"
    digest = hashlib.sha256(json.dumps(q["item"], sort_keys=True).encode()).hexdigest()[:16]
    pinned = {
        "2.0.0": "446268c62235d08d",
        "2.1.0": "16b102e3a2fb4644",
    }  # bump QUESTIONNAIRE_VERSION when the items change, then pin the new digest
    assert pinned[QUESTIONNAIRE_VERSION] == digest


def test_knowledge_artifacts_with_hti1_source_attributes(pack):
    bundle = knowledge_bundle(pack)
    types = _by_type(bundle)
    assert len(types["Library"]) == 1 and len(types["PlanDefinition"]) == len(pack.rules)
    for res in (e["resource"] for e in bundle["entry"]):
        validate_resource(res)
    for pd in types["PlanDefinition"]:
        (ext,) = [x for x in pd["extension"] if x["url"] == EXT_DSI]
        attrs = {x["url"]: x.get("valueString", x.get("valueBoolean")) for x in ext["extension"]}
        assert tuple(attrs) == HTI1_ATTRIBUTES
        assert (
            attrs["bibliographicCitation"]
            and attrs["developer"]
            and attrs["releaseDate"] == pack.effective_date.isoformat()
        )
        assert attrs["usesRace"] is False and attrs["usesEthnicity"] is False
        assert pd["relatedArtifact"] and pd["action"][0]["condition"][0]["expression"]["description"]
    by_id = {pd["id"]: pd for pd in types["PlanDefinition"]}
    uses_sex = [
        pid
        for pid, pd in by_id.items()
        if {"url": "usesSex", "valueBoolean": True} in pd["extension"][0]["extension"]
    ]
    assert uses_sex  # pregnancy rules read sex at birth
    canon = {r["url"] for r in types["ActivityDefinition"]}
    for pd in types["PlanDefinition"]:
        for a in pd["action"][0]["action"]:
            assert a.get("definitionCanonical", next(iter(canon))) in canon


def test_cli_exports_knowledge_artifacts(tmp_path):
    out = tmp_path / "k.json"
    run = subprocess.run(
        [sys.executable, "-m", "carepath.api", "rules", "fhir", "-o", str(out)],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=300,
    )
    assert run.returncode == 0, run.stderr
    assert json.loads(out.read_text())["entry"][0]["resource"]["resourceType"] == "Library"


# ---------------------------------------------------------------- over HTTP


@pytest.fixture(scope="module")
def srv(tmp_path_factory, engine):
    from carepath.api.app import create_app
    from carepath.api.settings import Settings

    base = tmp_path_factory.mktemp("fhir-http")
    settings = Settings(
        data_dir=base / "data",
        database_url=f"sqlite:///{base / 'c.sqlite3'}",
        secret_key=secrets.token_hex(32),
    )
    with ThreadServer(create_app(settings, engine=engine)) as server:
        server.users = make_users(server.runtime.db)
        yield server


def test_questionnaire_over_http(srv):
    r = httpx.get(f"{srv.url}/fhir/Questionnaire/carepath-intake", headers=srv.users.admin.headers)
    assert r.status_code == 200 and r.headers["content-type"].startswith("application/fhir+json")
    assert r.json()["version"] == QUESTIONNAIRE_VERSION
    assert httpx.get(f"{srv.url}/fhir/Questionnaire/carepath-intake").status_code == 401


def test_post_questionnaire_response_returns_the_plan(srv):
    qr = questionnaire_response(
        EXAMPLE, subject={"reference": "Patient/p-77"}, authored="2026-03-02T10:00:00Z"
    )
    r = httpx.post(
        f"{srv.url}/fhir/QuestionnaireResponse", json=qr, headers=srv.users.clinician.headers, timeout=60
    )
    assert r.status_code == 201, r.text
    assert r.headers["location"].startswith("/v1/plans/pl_")
    bundle = r.json()
    (cp,) = _by_type(bundle)["CarePlan"]
    assert cp["subject"] == {"reference": "Patient/p-77"}
    as_json = httpx.post(
        f"{srv.url}/fhir/QuestionnaireResponse",
        json=qr,
        headers={**srv.users.clinician.headers, "Accept": "application/json"},
        timeout=60,
    )
    assert as_json.status_code == 201 and as_json.json()["plan_id"].startswith("pl_")
    bad = {**qr, "item": [{"linkId": "patient.age", "answer": [{"valueInteger": 5}]}]}
    r = httpx.post(f"{srv.url}/fhir/QuestionnaireResponse", json=bad, headers=srv.users.clinician.headers)
    assert r.status_code == 422 and "patient.age" in {e["field"] for e in r.json()["errors"]}
    assert "5" not in json.dumps([e["message"] for e in r.json()["errors"]])
    assert (
        httpx.post(
            f"{srv.url}/fhir/QuestionnaireResponse", json=qr, headers=srv.users.reviewer.headers
        ).status_code
        == 403
    )


def test_plan_fhir_files_to_a_chart_and_carries_overrides(srv):
    created = httpx.post(
        f"{srv.url}/v1/plans", json=EXAMPLE, headers=srv.users.clinician.headers, timeout=60
    ).json()
    item = next(i for p in created["phases"] for i in p["items"] if i["code"] == "hr.naloxone")
    httpx.post(
        f"{srv.url}/v1/plans/{created['plan_id']}/overrides",
        json={
            "code": "hr.naloxone",
            "action": "override",
            "reason": "kit given at the syringe programme",
            "replacement_kind": "remove",
        },
        headers=srv.users.clinician.headers,
    )
    r = httpx.get(
        f"{srv.url}/v1/plans/{created['plan_id']}/fhir?subject=Patient/p-9",
        headers=srv.users.reviewer.headers,
    )
    assert r.status_code == 200
    (cp,) = _by_type(r.json())["CarePlan"]
    assert cp["subject"] == {"reference": "Patient/p-9"}
    nal = next(
        a["detail"] for a in cp["activity"] if a["detail"]["code"]["coding"][-1]["code"] == item["code"]
    )
    assert nal["status"] == "cancelled" and "syringe programme" in nal["statusReason"]["text"]
    assert not any(
        mr["medicationCodeableConcept"]["coding"][0]["code"] == "1725059"
        for mr in _by_type(r.json()).get("MedicationRequest", [])
    )
    bad = httpx.get(
        f"{srv.url}/v1/plans/{created['plan_id']}/fhir?subject=http://evil",
        headers=srv.users.reviewer.headers,
    )
    assert bad.status_code == 422


def test_rules_fhir_over_http(srv):
    r = httpx.get(f"{srv.url}/v1/rules/fhir", headers=srv.users.admin.headers, timeout=120)
    assert r.status_code == 200 and _by_type(r.json())["Library"]
