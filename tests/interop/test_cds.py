"""CDS Hooks, the pure part: request parsing, prefetch -> chart, patient checks, cards and summaries.

The HTTP behaviour (JWT, fetching, 412, feedback, CORS) is in test_cds_ehr.py.
"""

from __future__ import annotations

import json
from datetime import date

import jsonschema
import pytest
import yaml
from hypothesis import given
from hypothesis import strategies as st

from carepath.api.cds import (
    HOOK,
    PREFETCH,
    SERVICE_ID,
    CardContext,
    HookRequestError,
    cards_for,
    chart_from_prefetch,
    discovery,
    fit_summary,
    intake_for,
    parse_hook_request,
    prefetch_gaps,
    response_body,
)
from carepath.api.chart import intake_from_chart
from carepath.api.fhir import code_labels, questionnaire_response, validate_resource
from carepath.api.terminology import outputs
from carepath.engine import parse_intake_obj
from carepath.engine.plan import Alert, CitationOut, Diagnosis
from tests.conftest import FIXED_TIME, ROOT
from tests.interop.test_cds_ehr import SCHEMA, full_prefetch

VIGNETTES = ROOT / "tests" / "vignettes"
CANARY = "CANARY-PATIENT-9917"


def vignette_intake(name: str) -> dict:
    path = next(VIGNETTES.glob(f"{name}-*.yaml"))
    return yaml.safe_load(path.read_text(encoding="utf-8"))["intake"]


def hook_request(**extra) -> dict:
    body = {
        "hookInstance": "d1577c69-dfbe-44ad-ba6d-3e05e953b2ea",
        "hook": HOOK,
        "context": {"userId": "Practitioner/example", "patientId": "example-1"},
    }
    body.update(extra)
    return body


def ctx(plan_chart=None, **kw) -> CardContext:
    base = dict(
        hook_instance="hi-1",
        patient_id="example-1",
        encounter_id=None,
        labels=code_labels(),
        citation_shorts={},
        source_url="https://carepath.test/v1/rules/fhir",
        app_url="https://carepath.test/?prefill=abc",
        chart=plan_chart,
    )
    return CardContext(**{**base, **kw})


def test_discovery_has_a_template_per_chart_area_and_the_questionnaire():
    (svc,) = discovery()["services"]
    assert svc["id"] == SERVICE_ID and svc["hook"] == "patient-view" and svc["prefetch"] == PREFETCH
    assert set(PREFETCH) == {
        "patient",
        "conditions",
        "medicationRequests",
        "medicationStatements",
        "observations",
        "assessments",
        "encounters",
        "intake",
    }


def test_prefetch_absent_null_and_partial():
    assert prefetch_gaps(parse_hook_request(json.dumps(hook_request()).encode())) == list(PREFETCH)
    assert prefetch_gaps(parse_hook_request(json.dumps(hook_request(prefetch=None)).encode())) == list(
        PREFETCH
    )
    sent = {k: None for k in PREFETCH if k != "observations"}
    assert prefetch_gaps(parse_hook_request(json.dumps(hook_request(prefetch=sent)).encode())) == [
        "observations"
    ]


BAD = [
    (b"not json", 400, "not valid JSON"),
    (b"[]", 400, "JSON object"),
    (json.dumps(hook_request(hookInstance=None)).encode(), 400, "hookInstance"),
    (json.dumps(hook_request(hook="order-sign")).encode(), 400, "hook must be"),
    (json.dumps(hook_request(context={})).encode(), 400, "patientId"),
    (json.dumps(hook_request(context={"patientId": "../../etc"})).encode(), 400, "patientId"),
    (json.dumps(hook_request(prefetch=[1])).encode(), 400, "prefetch must be"),
    (
        json.dumps(hook_request(fhirAuthorization={"access_token": "x", "token_type": "Bearer"})).encode(),
        400,
        "fhirServer is required",
    ),
    (
        json.dumps(
            hook_request(fhirServer="https://x", fhirAuthorization={"access_token": "x", "token_type": "MAC"})
        ).encode(),
        400,
        "Bearer",
    ),
]


@pytest.mark.parametrize(("raw", "status", "words"), BAD)
def test_bad_requests_are_refused_clearly(raw, status, words):
    with pytest.raises(HookRequestError) as exc:
        parse_hook_request(raw)
    assert exc.value.status == status and words in exc.value.message
    assert CANARY not in exc.value.message


def test_oversized_request_is_413():
    with pytest.raises(HookRequestError) as exc:
        parse_hook_request(b" " * (4 * 1024 * 1024 + 1))
    assert exc.value.status == 413


@pytest.mark.parametrize(
    "tamper",
    [
        lambda p: p["patient"].update(id="someone-else"),
        lambda p: p["conditions"]["entry"][0]["resource"].update(
            subject={"reference": "Patient/someone-else"}
        ),
        lambda p: p["medicationRequests"]["entry"].append(
            {
                "resource": {
                    "resourceType": "MedicationRequest",
                    "status": "active",
                    "subject": {"reference": "Patient/x"},
                }
            }
        ),
        lambda p: p["conditions"]["entry"][0]["resource"].pop("subject"),
    ],
)
def test_every_resource_must_be_about_the_context_patient(tamper):
    prefetch = full_prefetch("pat-methadone-qtc")
    tamper(prefetch)
    with pytest.raises(HookRequestError) as exc:
        chart_from_prefetch(prefetch, "pat-methadone-qtc")
    assert exc.value.status == 400 and exc.value.outcome == "mismatch"


def test_operation_outcome_in_prefetch_means_not_read_not_empty():
    prefetch = full_prefetch("pat-methadone-qtc")
    prefetch["observations"] = {
        "resourceType": "OperationOutcome",
        "issue": [{"severity": "error", "code": "exception"}],
    }
    prefetch.pop("assessments")
    chart, _ = chart_from_prefetch(prefetch, "pat-methadone-qtc")
    assert chart.observations == []  # the key was sent, its content unreadable: nothing read
    chart, _ = chart_from_prefetch({"patient": prefetch["patient"]}, "pat-methadone-qtc")
    assert chart.conditions is None and chart.medications is None  # not sent: unknown


def test_questionnaire_response_wins_and_bad_answers_are_422_by_field():
    prefetch = full_prefetch("pat-bup-stable")
    chart, _ = chart_from_prefetch(prefetch, "pat-bup-stable")
    ci = intake_from_chart(chart, as_of=FIXED_TIME)
    qr = questionnaire_response(
        {"assessment_date": "2026-01-01", "patient": {"age": 38}, "current_treatment": {"moud": "methadone"}}
    )
    intake, dropped = intake_for(ci, qr)
    assert intake.current_treatment.moud == "methadone"  # the clinician's answer
    assert intake.current_treatment.dose_mg == 16  # the chart fills what the questionnaire leaves open
    assert not dropped
    for group in qr["item"]:
        for item in group["item"]:
            if item["linkId"] == "patient.age":
                item["answer"] = [{"valueInteger": 8}]
    with pytest.raises(HookRequestError) as exc:
        intake_for(ci, qr)
    assert exc.value.status == 422 and {p.field for p in exc.value.problems} == {"patient.age"}


def test_chart_values_that_contradict_the_questionnaire_are_dropped_and_reported():
    chart, _ = chart_from_prefetch(full_prefetch("pat-fentanyl-pregnant"), "pat-fentanyl-pregnant")
    ci = intake_from_chart(chart, as_of=FIXED_TIME)
    qr = questionnaire_response(
        {"assessment_date": "2026-01-01", "patient": {"age": 29, "sex_at_birth": "male"}}
    )
    intake, dropped = intake_for(ci, qr)
    assert intake.patient.sex_at_birth == "male" and intake.patient.pregnant is None
    assert "patient.pregnant" in dropped


def _with_alerts(plan):
    cite = [CitationOut(key="S02", title="ASAM 2015", locator="p.18")]
    alerts = [
        Alert(
            code="alert.sedative_co_use",
            severity="warning",
            text="Sedative co-use.",
            rule_ids=["OUD-T-2"],
            citations=cite,
        ),
        Alert(
            code="alert.suicide_risk",
            severity="urgent",
            text="Suicide risk: same day.",
            rule_ids=["OUD-T-1"],
            citations=cite,
        ),
        Alert(
            code="alert.drug_interaction",
            severity="info",
            text="Info only.",
            rule_ids=["OUD-T-3"],
            citations=cite,
        ),
    ]
    return plan.model_copy(update={"alerts": alerts})


def test_cards_urgent_first_then_the_plan_then_what_is_missing(engine):
    plan = _with_alerts(engine.evaluate(parse_intake_obj(vignette_intake("23")), FIXED_TIME))
    issued = cards_for(plan, ctx())
    cards = response_body(issued)["cards"]
    jsonschema.validate({"cards": cards}, SCHEMA)
    assert [c["indicator"] for c in cards[:2]] == ["critical", "warning"]
    assert [c["source"]["topic"]["code"] for c in cards[:2]] == [
        "alert.suicide_risk",
        "alert.sedative_co_use",
    ]
    assert cards[2]["source"]["topic"]["code"] == plan.level_of_care.code
    assert "OUD-T-1" in issued[0].rule_ids  # the alert's rule, and the rules of orders it suggests
    for card in cards:
        assert len(card["summary"]) < 140
        assert card["source"]["label"].startswith("carepath OUD pathway (")
        for s in card.get("suggestions", []):
            for a in s["actions"]:
                validate_resource(a["resource"])
                assert a["resource"]["subject"] == {"reference": "Patient/example-1"}


def test_cards_carry_no_patient_identifiers(engine):
    raw = vignette_intake("01")
    raw["patient"] = {**raw["patient"], "id": CANARY, "name": CANARY + " Name"}
    plan = engine.evaluate(parse_intake_obj(raw), FIXED_TIME)
    assert CANARY not in json.dumps(response_body(cards_for(plan, ctx())))


def test_medication_proposals_name_the_diagnosis_in_icd10_and_snomed(engine):
    plan = engine.evaluate(parse_intake_obj(vignette_intake("01")), FIXED_TIME)
    plan = plan.model_copy(
        update={
            "diagnosis": Diagnosis(
                dsm5_criteria_met=7, severity="severe", icd10_cm="F11.20", text="Opioid use disorder, severe"
            )
        }
    )
    orders = [
        a["resource"]
        for c in cards_for(plan, ctx())
        for s in c.card.get("suggestions", [])
        for a in s["actions"]
    ]
    meds = [o for o in orders if o["resourceType"] == "MedicationRequest"]
    assert meds
    for m in meds:
        systems = {c["system"]: c["code"] for c in m["reasonCode"][0]["coding"]}
        assert systems == {
            "http://hl7.org/fhir/sid/icd-10-cm": "F11.20",
            "http://snomed.info/sct": "75544000",
        }


def test_every_alert_code_has_a_written_card_summary(pack):
    written = outputs()["cards"]["alerts"]
    alerts = {c for c in pack.codes if c.startswith("alert.")}
    assert alerts <= set(written)
    for code, text in written.items():
        assert len(text) < 140 and text.endswith(".") and "\u2026" not in text, code


@given(st.lists(st.text(min_size=0, max_size=80), min_size=1, max_size=6))
def test_summaries_are_whole_parts_never_cut(parts):
    first = (parts[0] or "x")[:100]
    out = fit_summary([first, *parts[1:]])
    assert len(out) < 140 and out.startswith(first)
    kept = out[len(first) :].split("; ")[1:] if out != first else []
    assert all(k in parts[1:] for k in kept)


def test_missing_card_lists_safety_answers_with_the_chart_reasons(engine):
    chart, _ = chart_from_prefetch(full_prefetch("pat-fentanyl-pregnant"), "pat-fentanyl-pregnant")
    ci = intake_from_chart(chart, as_of=FIXED_TIME)
    intake, _ = intake_for(ci, None)
    plan = engine.evaluate(intake, FIXED_TIME)
    card = cards_for(plan, ctx(ci))[-1].card
    assert card["source"]["topic"]["code"] == "missing_information"
    assert "Could change safety findings" in card["detail"]
    assert "Read from the chart" in card["detail"] and "Gestational age" in card["detail"]
    assert card["links"][0]["url"].endswith("prefill=abc")
    assert str(date(2025, 8, 10)) in card["detail"]  # the overdose encounter's date: the evidence
