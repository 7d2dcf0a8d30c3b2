"""The form's field catalogue and its conversions (form strings <-> intake JSON)."""

from __future__ import annotations

import pytest
import yaml

from carepath.api.intake_fields import (
    FIELD_BY_PATH,
    FIELDS,
    GROUPS,
    field_for_problem,
    form_values,
    intake_from_form,
)
from carepath.engine import parse_intake_obj
from carepath.engine.intake import Intake, canonical_intake_dict, canonical_intake_json
from tests.conftest import ROOT

VIGNETTES = sorted((ROOT / "tests" / "vignettes").glob("*.yaml"))


def test_every_intake_field_is_in_exactly_one_group_in_contract_order():
    placed = [f.path for g in GROUPS for f in g.fields]
    assert sorted(placed) == sorted(f.path for f in FIELDS) and len(placed) == len(set(placed))
    assert [g.key for g in GROUPS][:3] == ["patient", "stage", "substance_use"]
    assert {f.path for f in FIELDS if f.required} == {"assessment_date", "patient.age"}
    assert set(Intake.model_fields) <= {f.path.split(".")[0] for f in FIELDS}


def test_kinds_follow_the_contract():
    kinds = {f.path: f.kind for f in FIELDS}
    assert kinds["patient.pregnant"] == "bool"
    assert kinds["substance_use.opioids"] == "multi"
    assert kinds["medical.interacting_medications"] == "textlist"
    assert kinds["substance_use.last_use_hours"] == "number"
    assert kinds["patient.age"] == "int" and FIELD_BY_PATH["patient.age"].minimum == 12
    assert kinds["assessment_date"] == "date"
    assert FIELD_BY_PATH["stage"].choices[0] == "active_use"
    assert all(f.label for f in FIELDS)


@pytest.mark.parametrize("path", VIGNETTES, ids=[p.stem for p in VIGNETTES])
def test_form_values_round_trip_every_vignette(path):
    intake = parse_intake_obj(yaml.safe_load(path.read_text(encoding="utf-8"))["intake"])
    data = canonical_intake_dict(intake)  # keeps an explicit "not on MOUD" (null)
    back, problems = intake_from_form(form_values(data))
    assert problems == []
    assert canonical_intake_json(parse_intake_obj(back)) == canonical_intake_json(intake)


def test_unknown_and_empty_are_omitted_missing_is_not_no():
    form = {
        "assessment_date": ["2026-03-02"],
        "patient.age": [" 40 "],
        "medical.hiv": ["unknown"],
        "medical.hcv": ["no"],
        "substance_use.stimulants": [""],
        "substance_use.route": [""],
        "medical.interacting_medications": [" efavirenz ,, rifampicin "],
        "substance_use.last_use_hours": ["12.5"],
    }
    intake, problems = intake_from_form(form)
    assert problems == []
    assert intake == {
        "assessment_date": "2026-03-02",
        "patient": {"age": 40},
        "medical": {"hcv": False, "interacting_medications": ["efavirenz", "rifampicin"]},
        "substance_use": {"last_use_hours": 12.5},
    }


def test_conversion_problems_name_the_field_never_the_value():
    canary = "CANARY-FORM-1188"
    form = {
        "assessment_date": ["02/03/2026"],
        "patient.age": [canary],
        "substance_use.last_use_hours": ["nan"],
        "medical.hiv": [canary],
        "stage": [canary],
        "substance_use.opioids": ["fentanyl", canary],
    }
    _, problems = intake_from_form(form)
    assert {p.field for p in problems} == {
        "assessment_date",
        "patient.age",
        "substance_use.last_use_hours",
        "medical.hiv",
        "stage",
        "substance_use.opioids",
    }
    assert all(canary not in p.message for p in problems)


def test_problem_paths_map_to_form_fields():
    assert field_for_problem("substance_use.opioids[1]") == "substance_use.opioids"
    assert field_for_problem("patient.age") == "patient.age"
    assert field_for_problem("(intake)") is None
    assert field_for_problem("patient") is None


def test_a_list_answered_none_is_known_and_empty_not_unknown():
    form = {
        "assessment_date": ["2026-03-02"],
        "patient.age": ["40"],
        "mental_health.conditions": ["none"],
        "history.prior_moud": ["none"],
        "medical.interacting_medications": [" None "],
        "substance_use.opioids": [],
    }
    intake, problems = intake_from_form(form)
    assert problems == []
    assert intake["mental_health"] == {"conditions": []}
    assert intake["history"] == {"prior_moud": []}
    assert intake["medical"] == {"interacting_medications": []}
    assert "substance_use" not in intake  # nothing ticked: unknown
    assert form_values(intake)["mental_health.conditions"] == ["none"]
    assert form_values(intake)["medical.interacting_medications"] == ["none"]


@pytest.mark.parametrize(
    ("path", "values"),
    [
        ("mental_health.conditions", ["none", "depression"]),
        ("medical.interacting_medications", ["none, efavirenz"]),
    ],
)
def test_none_cannot_be_combined_with_other_answers(path, values):
    _, problems = intake_from_form({"assessment_date": ["2026-03-02"], "patient.age": ["40"], path: values})
    assert [(p.field, p.message) for p in problems] == [(path, "cannot combine 'None' with other answers")]
