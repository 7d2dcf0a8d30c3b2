"""The web form's checks (api/form_checks.py) and the plan page's missing-information answers
(api/missing_answers.py): every problem at once, in the clinician's words, pinned to the field."""

from __future__ import annotations

from datetime import date

import pytest

from carepath.api.form_checks import clinician_message, date_warning, intake_with_problems
from carepath.api.missing_answers import NOT_APPLICABLE, answered_intake, missing_controls, stored_values
from carepath.engine import parse_intake_obj
from carepath.engine.errors import FieldProblem

TODAY = date(2026, 12, 2)
BASE = {"assessment_date": ["2026-11-30"], "patient.age": ["40"]}


def problems(**values: str) -> dict[str, str]:
    form = {**BASE, **{k.replace("__", "."): [v] for k, v in values.items()}}
    _, found = intake_with_problems(form, TODAY)
    return {p.field: clinician_message(p) for p in found}


def test_a_valid_form_has_no_problems_and_keeps_missing_as_unknown():
    intake, found = intake_with_problems(BASE, TODAY)
    assert found == [] and intake == {"assessment_date": "2026-11-30", "patient": {"age": 40}}


@pytest.mark.parametrize(
    ("values", "field", "words"),
    [
        ({"patient__age": ""}, "patient.age", "is required: the age in years, 12 to 110"),
        ({"patient__age": "29.5"}, "patient.age", "must be a whole number"),
        ({"patient__age": "8"}, "patient.age", "must be at least 12"),
        ({"assessment_date": ""}, "assessment_date", "is required: the date of this assessment"),
        (
            {"assessment_date": "2027-06-01"},
            "assessment_date",
            "cannot be in the future (today is 2026-12-02)",
        ),
        ({"substance_use__cows_score": "-1"}, "substance_use.cows_score", "must be at least 0"),
    ],
)
def test_one_message_per_field_in_the_clinicians_words(values, field, words):
    found = problems(**values)
    assert found[field] == words
    assert "patient" not in found  # never "Patient: is required" beside the real field


def test_impossible_combinations_come_with_the_first_submit_even_beside_a_type_error():
    found = problems(
        patient__age="29.5",  # a type error...
        patient__sex_at_birth="male",
        patient__pregnant="yes",  # ...and an impossible combination: both reported at once
        current_treatment__dose_mg="80",
    )
    assert found["patient.age"] == "must be a whole number"
    assert found["patient.pregnant"] == "cannot be Yes when Sex at birth is Male"
    assert found["current_treatment.dose_mg"] == "needs Current MOUD to be set"
    assert not any("_" in message for message in found.values())  # no raw field paths left


def test_none_for_current_moud_is_an_explicit_null():
    intake, found = intake_with_problems({**BASE, "current_treatment.moud": ["none"]}, TODAY)
    assert found == [] and intake["current_treatment"] == {"moud": None}
    parsed = parse_intake_obj(intake)
    assert "moud" in parsed.current_treatment.model_fields_set
    assert stored_values(parsed)["current_treatment.moud"] == ["none"]  # the edit form shows "None"


def test_old_assessment_dates_are_flagged_on_the_plan_not_refused():
    assert date_warning(date(2026, 11, 30), TODAY) is None
    warning = date_warning(date(2024, 1, 1), TODAY)
    assert warning and "more than a year before" in warning


def test_clinician_message_rewrites_paths_booleans_and_options():
    p = FieldProblem("substance_use.physically_dependent", "cannot be false when stage is 'in_withdrawal'")
    assert clinician_message(p) == "cannot be No when Stage in the care process is In withdrawal"


def test_missing_rows_answered_from_the_plan(engine):
    from tests.conftest import FIXED_TIME

    intake = parse_intake_obj(
        {"assessment_date": "2026-11-30", "patient": {"age": 40}, "stage": "active_use"}
    )
    plan = engine.evaluate(intake, FIXED_TIME)
    controls = missing_controls(plan)
    assert set(controls) == {m.field for m in plan.missing_information}
    assert ("none", "None (not on MOUD)") in controls["current_treatment.moud"].options
    assert controls["social.days_since_release"].kind == "number"
    corrected, problem = answered_intake(intake, "medical.hiv", ["no"], TODAY)
    assert problem is None and corrected["medical"] == {"hiv": False}
    corrected, problem = answered_intake(intake, "current_treatment.moud", ["none"], TODAY)
    assert problem is None and corrected["current_treatment"] == {"moud": None}
    _, problem = answered_intake(intake, "social.days_since_release", ["soon"], TODAY)
    assert problem == "Days since release from prison or jail: must be a whole number"
    _, problem = answered_intake(intake, "social.days_since_release", [], TODAY)
    assert problem and "Not applicable" in problem
    assert NOT_APPLICABLE == "not_applicable"
