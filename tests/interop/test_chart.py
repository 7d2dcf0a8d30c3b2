"""Reading the chart: the pure mapping from FHIR resources to the intake (api/chart.py).

Table-driven over realistic bundles (tests/interop/fhir/) and small resources: what each field
is filled from, the lookback windows, and that missing stays missing (never 'no').
"""

from __future__ import annotations

from datetime import timedelta

import pytest

from carepath.api.chart import (
    COWS_MAX_AGE,
    FIELD_SOURCES,
    Chart,
    intake_from_chart,
    merge_intakes,
)
from carepath.engine import parse_intake_obj
from carepath.engine.intake import FIELD_PATHS
from tests.conftest import FIXED_TIME
from tests.interop.fhir_server import resources

ICD = "http://hl7.org/fhir/sid/icd-10-cm"
RX = "http://www.nlm.nih.gov/research/umls/rxnorm"
LOINC = "http://loinc.org"
PID = "p1"


def chart_of(name: str) -> Chart:
    res = resources(name)
    by = lambda *kinds: [r for r in res if r["resourceType"] in kinds]  # noqa: E731
    return Chart(
        patient=by("Patient")[0],
        conditions=by("Condition"),
        medications=by("MedicationRequest", "MedicationStatement"),
        observations=by("Observation"),
        encounters=by("Encounter"),
    )


def read(chart: Chart):
    return intake_from_chart(chart, as_of=FIXED_TIME)


def patient(**kw):
    return {"resourceType": "Patient", "id": PID, "birthDate": "1990-06-01", **kw}


def condition(code: str, onset: str = "2025-01-01", system: str = ICD, status: str = "active"):
    return {
        "resourceType": "Condition",
        "clinicalStatus": {"coding": [{"code": status}]},
        "code": {"coding": [{"system": system, "code": code}]},
        "subject": {"reference": f"Patient/{PID}"},
        "onsetDateTime": onset,
    }


def med(text: str, code: str | None = None, status: str = "active", **kw):
    concept = {"text": text}
    if code:
        concept["coding"] = [{"system": RX, "code": code}]
    return {
        "resourceType": "MedicationRequest",
        "status": status,
        "intent": "order",
        "medicationCodeableConcept": concept,
        "subject": {"reference": f"Patient/{PID}"},
        **kw,
    }


def obs(code: str, when: str, system: str = LOINC, **value):
    return {
        "resourceType": "Observation",
        "status": "final",
        "code": {"coding": [{"system": system, "code": code}], "text": value.pop("text", None) or code},
        "subject": {"reference": f"Patient/{PID}"},
        "effectiveDateTime": when,
        **value,
    }


def leaf(intake: dict, path: str):
    node = intake
    for part in path.split("."):
        node = node.get(part) if isinstance(node, dict) else None
    return node


# ---------------------------------------------------------------- the realistic bundles


EXPECTED = {
    "pat-fentanyl-pregnant": {
        "patient.age": 29,
        "patient.sex_at_birth": "female",
        "patient.pregnant": True,
        "patient.gestational_weeks": 9,
        "substance_use.opioids": ["fentanyl"],
        "substance_use.cows_score": 9,
        "mental_health.conditions": ["anxiety"],
        "history.overdoses_last_year": 1,
        "medical.prescribed_opioid_analgesics": False,
        "medical.interacting_medications": [],
        "current_treatment.moud": None,
        "stage": None,
    },
    "pat-methadone-qtc": {
        "patient.age": 46,
        "current_treatment.moud": "methadone",
        "current_treatment.dose_mg": 90.0,
        "stage": "in_treatment",
        "medical.qtc_ms": 512,
        "medical.hcv": True,
        "medical.interacting_medications": ["alprazolam", "ondansetron"],
        "substance_use.benzodiazepines": "prescribed",
        "social.housing": "homeless",
        "medical.hepatic_impairment": None,  # ALT/AST raised: the clinician grades it
        "patient.pregnant": None,
    },
    "pat-bup-stable": {
        "current_treatment.moud": "buprenorphine",
        "current_treatment.dose_mg": 16.0,
        "current_treatment.months_on_moud": 19.0,
        "stage": "in_treatment",
        "mental_health.conditions": ["depression"],
        "medical.hepatic_impairment": "none",
        "patient.pregnant": False,
    },
    "pat-no-oud": {"patient.age": 60, "current_treatment.moud": None},
}


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_bundles_fill_the_expected_fields(name):
    ci = read(chart_of(name))
    for path, want in EXPECTED[name].items():
        assert leaf(ci.intake, path) == want, path
    filled = ci.filled()
    assert {u.field for u in ci.unfilled}.isdisjoint(filled)
    parse_intake_obj(ci.intake)  # what the chart gives is a valid intake on its own
    assert ci.relevant is (name != "pat-no-oud")
    for r in ci.readings:
        assert r.evidence, r.field


def test_every_field_is_filled_or_reported_missing_with_a_reason():
    ci = read(chart_of("pat-fentanyl-pregnant"))
    accounted = ci.filled() | {u.field for u in ci.unfilled} | {"patient.id", "patient.name"}
    conditional = {"current_treatment.dose_mg", "current_treatment.months_on_moud"}
    assert set(FIELD_PATHS) - accounted <= conditional  # asked only once a MOUD is known
    for u in ci.unfilled:
        assert u.reason and u.label and u.label != u.field


def test_no_patient_identifiers_enter_the_intake():
    ci = read(chart_of("pat-fentanyl-pregnant"))
    assert "id" not in ci.intake["patient"] and "name" not in ci.intake["patient"]


def test_field_sources_name_real_intake_fields():
    assert set(FIELD_SOURCES) <= set(FIELD_PATHS)


# ---------------------------------------------------------------- missing is not "no"


def test_nothing_provided_is_unknown_not_no():
    ci = read(Chart(patient=patient()))
    assert set(ci.intake) == {"assessment_date", "jurisdiction", "patient"}
    assert ci.has_naloxone is None and not ci.relevant


def test_an_empty_medication_list_says_no_analgesics_and_no_interactions_but_not_no_moud():
    ci = read(Chart(patient=patient(), medications=[]))
    assert ci.intake["medical"] == {"prescribed_opioid_analgesics": False, "interacting_medications": []}
    assert "current_treatment" not in ci.intake
    reason = next(u.reason for u in ci.unfilled if u.field == "current_treatment.moud")
    assert "OTP" in reason


def test_patient_gender_is_not_sex_at_birth():
    ci = read(Chart(patient=patient(gender="female")))
    assert "sex_at_birth" not in ci.intake["patient"]
    ext = {"url": "http://hl7.org/fhir/us/core/StructureDefinition/us-core-birthsex", "valueCode": "F"}
    assert read(Chart(patient=patient(extension=[ext]))).intake["patient"]["sex_at_birth"] == "female"


# ---------------------------------------------------------------- windows and classifications


@pytest.mark.parametrize(
    ("age", "filled"),
    [
        (timedelta(hours=2), True),
        (COWS_MAX_AGE - timedelta(minutes=1), True),
        (COWS_MAX_AGE + timedelta(minutes=1), False),
    ],
)
def test_cows_counts_for_24_hours_only(age, filled):
    when = (FIXED_TIME - age).isoformat()
    cows = obs(
        "cows-total",
        when,
        system="https://carepath.example/fhir/CodeSystem/chart-observations",
        valueInteger=11,
    )
    ci = read(Chart(patient=patient(), observations=[cows]))
    assert (leaf(ci.intake, "substance_use.cows_score") == 11) is filled
    if not filled:
        assert "re-score" in next(u.reason for u in ci.unfilled if u.field == "substance_use.cows_score")


@pytest.mark.parametrize(
    ("value", "unit", "when", "want"),
    [
        (512, "ms", "2025-12-01", 512),
        (0.47, "s", "2025-12-01", 470),
        (480, "ms", "2025-05-01", None),  # older than 6 months
        (480, "mV", "2025-12-01", None),  # not a duration
    ],
)
def test_qtc(value, unit, when, want):
    q = obs("8636-3", when, valueQuantity={"value": value, "unit": unit, "code": unit})
    assert leaf(read(Chart(patient=patient(), observations=[q])).intake, "medical.qtc_ms") == want


@pytest.mark.parametrize(
    ("resources_", "want"),
    [
        (
            [
                obs(
                    "2106-3",
                    "2025-12-20",
                    valueCodeableConcept={
                        "coding": [{"system": "http://snomed.info/sct", "code": "10828004"}]
                    },
                )
            ],
            True,
        ),
        (
            [
                obs(
                    "2106-3",
                    "2025-12-20",
                    valueCodeableConcept={
                        "coding": [{"system": "http://snomed.info/sct", "code": "260385009"}]
                    },
                )
            ],
            None,
        ),  # negative, 12 days ago: too old
        (
            [
                obs(
                    "2106-3",
                    "2025-12-29",
                    valueCodeableConcept={
                        "coding": [{"system": "http://snomed.info/sct", "code": "260385009"}]
                    },
                )
            ],
            False,
        ),
        ([condition("Z33.1", "2025-11-01")], True),
        ([condition("Z33.1", "2024-11-01")], None),  # more than 300 days ago
        (
            [
                condition("Z33.1", "2025-11-01"),
                obs(
                    "82810-3",
                    "2025-12-31",
                    valueCodeableConcept={
                        "coding": [{"system": "http://snomed.info/sct", "code": "60001007"}]
                    },
                ),
            ],
            False,  # the latest evidence wins
        ),
    ],
)
def test_pregnancy_evidence(resources_, want):
    conditions = [r for r in resources_ if r["resourceType"] == "Condition"]
    observations = [r for r in resources_ if r["resourceType"] == "Observation"]
    ci = read(Chart(patient=patient(), conditions=conditions, observations=observations))
    assert leaf(ci.intake, "patient.pregnant") == want


def test_pregnancy_with_male_sex_at_birth_is_left_to_the_clinician():
    ext = {"url": "http://hl7.org/fhir/us/core/StructureDefinition/us-core-birthsex", "valueCode": "M"}
    ci = read(Chart(patient=patient(extension=[ext]), conditions=[condition("Z33.1", "2025-11-01")]))
    assert leaf(ci.intake, "patient.pregnant") is None and any("male" in n for n in ci.notes)


@pytest.mark.parametrize(
    ("medication", "moud"),
    [
        (med("buprenorphine 8 MG / naloxone 2 MG Sublingual Film", "1010604"), "buprenorphine"),
        (med("Suboxone 8-2 mg film"), "buprenorphine"),
        (med("Methadose 10 mg/mL oral concentrate", "991149"), "methadone"),
        (med("methadone 10 MG Oral Tablet", "864706"), None),  # pain or OUD? asked
        (
            med(
                "methadone 10 MG Oral Tablet",
                "864706",
                reasonCode=[{"coding": [{"system": ICD, "code": "F11.20"}]}],
            ),
            "methadone",
        ),
        (med("naltrexone 50 MG Oral Tablet", "7243"), "naltrexone"),
        (med("Butrans 10 mcg/hr patch"), None),  # buprenorphine for pain
        (med("buprenorphine", "1819"), None),  # no product: asked
        (med("Suboxone 8-2 mg film", status="completed"), None),  # not active
    ],
)
def test_moud_from_the_medication_list(medication, moud):
    ci = read(Chart(patient=patient(), medications=[medication]))
    assert leaf(ci.intake, "current_treatment.moud") == moud
    if moud:
        assert ci.intake["stage"] == "in_treatment" and ci.relevant


def test_opioid_analgesics_and_benzodiazepines_by_code_or_name():
    ci = read(
        Chart(
            patient=patient(),
            medications=[
                med("OxyCONTIN 10 mg", None),
                med("clonazepam 0.5 MG Oral Tablet [Klonopin]", "206157"),
            ],
        )
    )
    assert ci.intake["medical"]["prescribed_opioid_analgesics"] is True
    assert ci.intake["substance_use"]["benzodiazepines"] == "prescribed"
    assert ci.intake["medical"]["interacting_medications"] == ["clonazepam"]
    by_name = next(r for r in ci.readings if r.field == "medical.prescribed_opioid_analgesics")
    assert by_name.how == "name" and "matched by name" in by_name.evidence


@pytest.mark.parametrize(
    ("code", "counted"),
    [("T40.411A", True), ("T40.1X1A", True), ("T40.2X4A", True), ("T40.415A", False), ("T40.5X1A", False)],
)
def test_overdoses_are_poisonings_by_opioids_not_adverse_effects(code, counted):
    ci = read(Chart(patient=patient(), conditions=[condition(code, "2025-09-01", status="resolved")]))
    assert (leaf(ci.intake, "history.overdoses_last_year") == 1) is counted


def test_remission_codes_and_recent_withdrawal_set_the_stage():
    assert read(Chart(patient=patient(), conditions=[condition("F11.21")])).intake["stage"] == "remission"
    ci = read(Chart(patient=patient(), conditions=[condition("F11.23", "2025-12-31")]))
    assert (
        ci.intake["stage"] == "in_withdrawal" and ci.intake["substance_use"]["physically_dependent"] is True
    )
    old = read(Chart(patient=patient(), conditions=[condition("F11.23", "2025-11-01")]))
    assert "stage" not in old.intake


def test_resolved_and_refuted_conditions_do_not_count():
    refuted = condition("B20")
    refuted["verificationStatus"] = {"coding": [{"code": "refuted"}]}
    ci = read(Chart(patient=patient(), conditions=[condition("F32.1", status="resolved"), refuted]))
    assert "mental_health" not in ci.intake and "medical" not in ci.intake


def test_alcohol_in_remission_is_not_heavy_use():
    assert "substance_use" not in read(Chart(patient=patient(), conditions=[condition("F10.21")])).intake
    assert (
        read(Chart(patient=patient(), conditions=[condition("F10.20")])).intake["substance_use"]["alcohol"]
        == "heavy"
    )


def test_merge_lets_the_questionnaire_win_field_by_field():
    chart = {"patient": {"age": 30, "pregnant": True}, "medical": {"interacting_medications": ["citalopram"]}}
    qr = {"patient": {"pregnant": False}, "medical": {"interacting_medications": []}}
    assert merge_intakes(qr, chart) == {
        "patient": {"age": 30, "pregnant": False},
        "medical": {"interacting_medications": []},
    }
    assert merge_intakes(None, chart) == chart
