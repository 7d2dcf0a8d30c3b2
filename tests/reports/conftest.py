"""Fixtures for report tests: plans, the rule pack, a clean HTML render."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from carepath.engine import parse_intake_obj
from carepath.reports import patient_from_intake
from tests.reports.plans import FIXED_TIME, PATIENT, long_plan

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="session")
def example_intake():
    return parse_intake_obj(json.loads((ROOT / "examples" / "intake-fentanyl.json").read_text()))


@pytest.fixture(scope="session")
def short_plan(engine, example_intake):
    return engine.evaluate(example_intake, FIXED_TIME)


@pytest.fixture(scope="session")
def example_patient(example_intake):
    return patient_from_intake(example_intake)


@pytest.fixture(scope="session")
def rich_plan():
    return long_plan()


@pytest.fixture(scope="session")
def patient():
    return dict(PATIENT)
