"""Missing information: the intake fields whose answer could change the plan, safety first,
in contract order, never a field the intake would refuse until another is answered."""

from __future__ import annotations

from typing import Any

import pytest

from carepath.engine import Engine, parse_intake_obj
from carepath.engine.intake import FIELD_PATHS
from tests.conftest import FIXED_TIME

SPARSE: dict[str, Any] = {
    "assessment_date": "2026-01-15",
    "patient": {"age": 33},
    "substance_use": {"opioids": ["heroin"]},
}
ON_METHADONE: dict[str, Any] = {
    "assessment_date": "2026-01-15",
    "patient": {"age": 41, "sex_at_birth": "male"},
    "stage": "in_treatment",
    "current_treatment": {"moud": "methadone", "dose_mg": 90},
    "medical": {"qtc_ms": 430},
}


def missing(reference: Engine, intake: dict[str, Any]) -> dict[str, Any]:
    plan = reference.evaluate(parse_intake_obj(intake), FIXED_TIME)
    return {m.field: m for m in plan.missing_information}


@pytest.mark.parametrize(
    ("intake", "field", "impact"),
    [
        (SPARSE, "patient.pregnant", "safety"),  # pregnancy changes what is avoided (F-60s)
        (SPARSE, "medical.qtc_ms", "safety"),  # QTc over 500 ms: no methadone start
        (SPARSE, "mental_health.suicidal_ideation", "safety"),  # psychiatric emergency floor
        (SPARSE, "substance_use.cows_score", "safety"),  # induction timing
        (SPARSE, "current_treatment.moud", "safety"),
        (SPARSE, "social.can_leave_work", "plan"),  # a logistics ceiling, never a safety finding
        (SPARSE, "preferences.setting", "plan"),
        (ON_METHADONE, "substance_use.benzodiazepines", "safety"),
        (ON_METHADONE, "medical.interacting_medications", "safety"),
    ],
)
def test_an_unanswered_field_that_could_change_the_plan_is_listed(reference, intake, field, impact):
    found = missing(reference, intake)
    assert field in found, f"{field} should be asked for"
    assert found[field].impact == impact
    assert found[field].why_it_matters.startswith("Could change: OUD-")


@pytest.mark.parametrize(
    "field",
    ["medical.qtc_ms", "current_treatment.moud", "patient.pregnant", "patient.sex_at_birth", "patient.age"],
)
def test_an_answered_field_is_not_asked_again(reference, field):
    assert field not in missing(reference, ON_METHADONE)


def test_dose_is_not_asked_for_before_the_medication(reference):
    """The intake refuses a dose without a MOUD, so the MOUD is what is asked for; the
    dose-dependent switch rules (OUD-MOUD-040/041) count towards it."""
    found = missing(reference, SPARSE)
    assert "current_treatment.dose_mg" not in found
    assert "current_treatment.months_on_moud" not in found
    assert found["current_treatment.moud"].impact == "safety"


@pytest.mark.parametrize("intake", [SPARSE, ON_METHADONE], ids=["sparse", "on-methadone"])
def test_safety_first_then_contract_order(reference, intake):
    fields = list(missing(reference, intake).values())
    impacts = [m.impact for m in fields]
    assert impacts == sorted(impacts, key=lambda i: i != "safety"), "safety fields come first"
    for impact in ("safety", "plan"):
        group = [m.field for m in fields if m.impact == impact]
        assert group == sorted(group, key=FIELD_PATHS.index), f"{impact} fields out of contract order"


def test_every_listed_field_is_a_contract_field(reference):
    for intake in (SPARSE, ON_METHADONE):
        assert set(missing(reference, intake)) <= set(FIELD_PATHS)


def test_every_intake_field_has_clinician_wording_and_missing_entries_carry_it(reference):
    from carepath.engine.labels import FIELD_LABELS

    assert set(FIELD_PATHS) - set(FIELD_LABELS) == set(), "add the label to engine/labels.py"
    found = missing(reference, SPARSE)
    assert found["mental_health.recent_suicide_attempt"].label == "Recent suicide attempt"
    assert all(m.label and "_" not in m.label for m in found.values())


def test_an_explicit_no_moud_is_an_answer_and_its_follow_up_questions_go(reference):
    """Review 2026-12 §3.4: 'Current MOUD: none' stayed a safety row for ever, and stability on a
    medication that is not taken was asked for."""
    none = missing(reference, {**SPARSE, "current_treatment": {"moud": None}})
    assert "current_treatment.moud" not in none
    assert not {"current_treatment.stable", "current_treatment.dose_mg"} & set(none)
    unknown = missing(reference, SPARSE)
    assert "current_treatment.moud" in unknown
