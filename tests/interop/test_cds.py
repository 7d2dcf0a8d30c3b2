"""CDS Hooks: request parsing and cards (pure part; the HTTP routes are in test_cds_http.py)."""

from __future__ import annotations

import json

import pytest
import yaml

from carepath.api.cds import (
    HOOK,
    PREFETCH,
    SERVICE_ID,
    SUMMARY_TITLE,
    HookRequestError,
    cards_for,
    discovery,
    parse_hook_request,
)
from carepath.api.fhir import questionnaire_response
from carepath.engine import parse_intake_obj
from carepath.engine.plan import Alert, CitationOut
from tests.conftest import FIXED_TIME, ROOT

VIGNETTES = ROOT / "tests" / "vignettes"
CANARY = "CANARY-PATIENT-9917"


def vignette_intake(name: str) -> dict:
    path = next(VIGNETTES.glob(f"{name}-*.yaml"))
    return yaml.safe_load(path.read_text(encoding="utf-8"))["intake"]


def hook_request(intake: dict | None, *, wrap: bool = False, **extra) -> dict:
    body = {
        "hookInstance": "d1577c69-dfbe-44ad-ba6d-3e05e953b2ea",
        "hook": HOOK,
        "context": {"userId": "Practitioner/example", "patientId": "example-1"},
    }
    if intake is not None:
        qr = questionnaire_response(intake)
        if wrap:
            qr = {"resourceType": "Bundle", "type": "searchset", "entry": [{"resource": qr}]}
        body["prefetch"] = {"intake": qr}
    body.update(extra)
    return body


def test_discovery_lists_the_service_with_its_prefetch():
    (svc,) = discovery()["services"]
    assert svc["id"] == SERVICE_ID == "carepath-oud-pathway"
    assert svc["hook"] == "patient-view" and svc["title"] and svc["description"]
    assert svc["prefetch"] == PREFETCH
    assert svc["prefetch"]["intake"] == (
        "QuestionnaireResponse?subject={{context.patientId}}&questionnaire=carepath-intake&_sort=-authored&_count=1"
    )


@pytest.mark.parametrize("wrap", [False, True])
def test_request_with_questionnaire_response_or_bundle(wrap):
    raw = json.dumps(hook_request(vignette_intake("23"), wrap=wrap)).encode()
    req = parse_hook_request(raw)
    assert req.intake.mental_health.suicidal_ideation == "active_with_plan"
    assert req.hook_instance.startswith("d1577c69")


def _with_alerts(plan):
    """The plan with one alert of each severity (independent of what the current rules emit)."""
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


def test_cards_urgent_alerts_first_then_summary(engine):
    intake = parse_intake_obj(vignette_intake("23"))
    plan = _with_alerts(engine.evaluate(intake, FIXED_TIME))
    cards = cards_for(plan, "instance-1")["cards"]
    assert [c["indicator"] for c in cards] == ["critical", "warning", "info"]
    assert [c["source"]["topic"]["code"] for c in cards[:2]] == [
        "alert.suicide_risk",
        "alert.sedative_co_use",
    ]
    assert "OUD-T-1" in cards[0]["detail"] and "ASAM 2015" in cards[0]["detail"]
    summary = cards[-1]
    assert summary["summary"] == SUMMARY_TITLE
    assert plan.level_of_care.label in summary["detail"]
    assert "Info only." in summary["detail"]
    for item in plan.items()[:1]:
        assert item.rule_ids[0] in summary["detail"]
    for card in cards:
        assert len(card["summary"]) <= 140
        assert card["source"]["label"] == f"carepath {plan.ruleset.id} {plan.ruleset.version}"
        assert "url" not in card["source"]
        assert "OUD-" in card["detail"]
    assert len({c["uuid"] for c in cards}) == len(cards)


def test_cards_carry_no_patient_data(engine):
    raw = vignette_intake("01")
    raw["patient"] = {**raw["patient"], "id": CANARY, "name": CANARY + " Name"}
    plan = engine.evaluate(parse_intake_obj(raw), FIXED_TIME)
    assert CANARY not in json.dumps(cards_for(plan, "x"))


BAD = [
    (b"not json", 400, "not valid JSON"),
    (b"[]", 400, "JSON object"),
    (json.dumps(hook_request(vignette_intake("01"), hookInstance=None)).encode(), 400, "hookInstance"),
    (json.dumps(hook_request(vignette_intake("01"), hook="order-sign")).encode(), 400, "hook must be"),
    (json.dumps(hook_request(vignette_intake("01"), context={})).encode(), 400, "patientId"),
    (json.dumps(hook_request(None)).encode(), 400, "prefetch.intake is missing"),
    (json.dumps(hook_request(None, prefetch={"intake": None})).encode(), 400, "prefetch.intake is missing"),
    (
        json.dumps(
            hook_request(None, prefetch={"intake": {"resourceType": "Patient", "id": CANARY}})
        ).encode(),
        400,
        "QuestionnaireResponse",
    ),
    (
        json.dumps(hook_request(None, prefetch={"intake": {"resourceType": "Bundle", "entry": []}})).encode(),
        400,
        "QuestionnaireResponse",
    ),
]


@pytest.mark.parametrize(("raw", "status", "words"), BAD)
def test_bad_requests_are_refused_clearly(raw, status, words):
    with pytest.raises(HookRequestError) as exc:
        parse_hook_request(raw)
    assert exc.value.status == status
    assert words in exc.value.message
    assert CANARY not in exc.value.message


def test_invalid_intake_in_prefetch_is_422_by_field_without_echo():
    intake = vignette_intake("01")
    qr = questionnaire_response(intake)
    for group in qr["item"]:
        for item in group["item"]:
            if item["linkId"] == "patient.age":
                item["answer"] = [{"valueInteger": 8}]
            if item["linkId"] == "stage":
                item["answer"] = [{"valueCoding": {"code": CANARY}}]
    body = hook_request(None, prefetch={"intake": qr})
    with pytest.raises(HookRequestError) as exc:
        parse_hook_request(json.dumps(body).encode())
    assert exc.value.status == 422
    assert {p.field for p in exc.value.problems} == {"patient.age", "stage"}
    assert CANARY not in str([str(p) for p in exc.value.problems]) + exc.value.message


def test_oversized_request_is_413():
    with pytest.raises(HookRequestError) as exc:
        parse_hook_request(b" " * (1024 * 1024 + 1))
    assert exc.value.status == 413
