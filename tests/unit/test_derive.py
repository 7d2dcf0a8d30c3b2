"""Derivation thresholds, table-driven: each row is (intake fields, fact, expected value).

The numbers are the cut points named in engine/facts.py, tested on both sides. ``ABSENT``
means the fact must be left out (unknown), never guessed.
"""

from __future__ import annotations

from typing import Any

import pytest

from carepath.engine import parse_intake_obj
from carepath.engine.derive import Facts, derive
from carepath.engine.facts import FACTS

ABSENT = object()
BASE: dict[str, Any] = {"assessment_date": "2026-01-15", "patient": {"age": 35}}


def _merge(base: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in extra.items():
        out[key] = _merge(out[key], value) if isinstance(value, dict) and key in out else value
    return out


def facts_of(extra: dict[str, Any]) -> Facts:
    return derive(parse_intake_obj(_merge(BASE, extra)))


def _check(extra: dict[str, Any], fact: str, expected: Any) -> None:
    assert fact in FACTS, f"{fact} is not in the fact vocabulary"
    facts = facts_of(extra)
    if expected is ABSENT:
        assert fact not in facts, f"{fact} should be unknown, got {facts[fact]!r}"
    else:
        assert fact in facts, f"{fact} should be {expected!r}, but is unknown"
        assert facts[fact] == expected and type(facts[fact]) is type(expected)


def su(**fields: Any) -> dict[str, Any]:
    return {"substance_use": fields}


def _rows(table: list[tuple[Any, ...]]) -> Any:
    return pytest.mark.parametrize(
        ("extra", "fact", "expected"),
        [row[:3] for row in table],
        ids=[row[3] for row in table],
    )


# --- DSM-5 severity (F-01, S23): 2-3 mild, 4-5 moderate, 6+ severe -------------------------
DSM5 = [
    (su(dsm5_criteria_met=n), fact, value, f"dsm5={n}-{fact}")
    for n, severity, has_oud in [
        (0, "none", False),
        (1, "none", False),
        (2, "mild", True),
        (3, "mild", True),
        (4, "moderate", True),
        (5, "moderate", True),
        (6, "severe", True),
        (11, "severe", True),
    ]
    for fact, value in (("oud_severity", severity), ("has_oud", has_oud))
]


@_rows(DSM5)
def test_dsm5_severity(extra: dict[str, Any], fact: str, expected: Any) -> None:
    _check(extra, fact, expected)


# --- COWS bands (F-27, S24) and objective withdrawal at >= 8 (F-28, S39) --------------------
COWS = [
    (su(cows_score=c), "cows_band", band, f"cows={c}-{band}")
    for c, band in [
        (0, "none"),
        (4, "none"),
        (5, "mild"),
        (12, "mild"),
        (13, "moderate"),
        (24, "moderate"),
        (25, "moderately_severe"),
        (36, "moderately_severe"),
        (37, "severe"),
        (48, "severe"),
    ]
] + [
    (su(cows_score=c), "objective_withdrawal", value, f"cows={c}-objective={value}")
    for c, value in [(0, False), (7, False), (8, True), (9, True), (48, True)]
]


@_rows(COWS)
def test_cows(extra: dict[str, Any], fact: str, expected: Any) -> None:
    _check(extra, fact, expected)


# --- buprenorphine time gate (F-24, S02 p.6): 12 h short-acting, 24 h long-acting ----------
SHORT = {"heroin": ["heroin"], "fentanyl": ["fentanyl"], "pills": ["prescription_opioids"]}
LONG = {
    "illicit_methadone": su(opioids=["illicit_methadone"]),
    "illicit_buprenorphine": su(opioids=["heroin", "illicit_buprenorphine"]),
    "on_methadone": {"current_treatment": {"moud": "methadone"}, "substance_use": {"opioids": ["heroin"]}},
    "on_buprenorphine": {"current_treatment": {"moud": "buprenorphine"}},
}


def _with_hours(extra: dict[str, Any], hours: float) -> dict[str, Any]:
    return _merge(extra, su(last_use_hours=hours))


GATE = [
    (_with_hours(su(opioids=used), h), "buprenorphine_time_gate_met", met, f"{name}-{h}h")
    for name, used in SHORT.items()
    for h, met in [(0, False), (11.9, False), (11.9999, False), (12, True), (12.0, True), (18, True)]
] + [
    (_with_hours(extra, h), "buprenorphine_time_gate_met", met, f"{name}-{h}h")
    for name, extra in LONG.items()
    for h, met in [(11.9, False), (12, False), (23.9, False), (24, True), (48, True)]
]


@_rows(GATE)
def test_buprenorphine_time_gate(extra: dict[str, Any], fact: str, expected: Any) -> None:
    _check(extra, fact, expected)


@_rows(
    [
        (su(opioids=["illicit_methadone"]), "long_acting_opioid_exposure", True, "illicit-methadone"),
        (su(opioids=["heroin", "fentanyl"]), "long_acting_opioid_exposure", False, "short-acting-only"),
        ({"current_treatment": {"moud": "buprenorphine"}}, "long_acting_opioid_exposure", True, "on-bup"),
        ({"current_treatment": {"moud": "naltrexone"}}, "long_acting_opioid_exposure", False, "on-ntx"),
        ({}, "long_acting_opioid_exposure", ABSENT, "nothing-known"),
        (su(last_use_hours=30), "buprenorphine_time_gate_met", True, "unknown-opioid-30h"),
    ]
)
def test_long_acting_exposure(extra: dict[str, Any], fact: str, expected: Any) -> None:
    _check(extra, fact, expected)


# --- naltrexone washout (F-58 S27; F-55 S02 p.10): 7 days short-acting, 14 days long-acting -
WASHOUT = (
    [
        (_with_hours(su(opioids=["heroin"]), h), "naltrexone_washout_met", met, f"heroin-{h}h")
        for h, met in [(72, False), (167, False), (167.99, False), (168, True), (240, True)]
    ]
    + [
        (_with_hours(su(opioids=[drug]), h), "naltrexone_washout_met", met, f"{drug}-{h}h")
        for drug in ("illicit_methadone", "illicit_buprenorphine", "fentanyl")
        for h, met in [(168, False), (335, False), (335.99, False), (336, True), (400, True)]
    ]
    + [
        (
            _with_hours({"current_treatment": {"moud": moud}}, 1000),
            "naltrexone_washout_met",
            False,
            f"still-on-{moud}",
        )
        for moud in ("methadone", "buprenorphine")
    ]
    + [
        (
            {"current_treatment": {"moud": "methadone"}},
            "naltrexone_washout_met",
            False,
            "on-methadone-no-hours",
        ),
        (su(opioids=["heroin"]), "naltrexone_washout_met", ABSENT, "hours-unknown"),
        (su(last_use_hours=200), "naltrexone_washout_met", False, "opioids-unknown-long-interval"),
    ]
)
INTERVAL = [
    (
        su(opioids=["heroin", "prescription_opioids"], last_use_hours=30),
        "naltrexone_interval_days",
        7,
        "short-acting",
    ),
    (su(opioids=["heroin", "fentanyl"], last_use_hours=30), "naltrexone_interval_days", 14, "fentanyl"),
    (
        su(opioids=["illicit_buprenorphine"], last_use_hours=30),
        "naltrexone_interval_days",
        14,
        "buprenorphine",
    ),
    ({"current_treatment": {"moud": "methadone"}}, "naltrexone_interval_days", 14, "on-methadone"),
    (su(last_use_hours=30), "naltrexone_interval_days", 14, "opioids-not-recorded"),
    (su(opioids=["heroin"]), "naltrexone_interval_days", ABSENT, "last-use-not-recorded"),
]


@_rows(INTERVAL)
def test_naltrexone_interval_days(extra: dict[str, Any], fact: str, expected: Any) -> None:
    _check(extra, fact, expected)


@_rows(WASHOUT)
def test_naltrexone_washout(extra: dict[str, Any], fact: str, expected: Any) -> None:
    _check(extra, fact, expected)


# --- withdrawal over: enough time AND a measured COWS < 8 (F-51 S39; F-25, F-26) -------------
# > 72 h after short-acting opioids only; > 7 days after methadone, buprenorphine or fentanyl (or
# when the opioids are not recorded). An unmeasured COWS leaves it unknown (review 2026-12 §0 #1).
HEROIN = ["heroin"]
RESOLVED = [
    (su(opioids=HEROIN, last_use_hours=72, cows_score=2), "withdrawal_resolved", False, "heroin-72h"),
    (su(opioids=HEROIN, last_use_hours=72.01, cows_score=2), "withdrawal_resolved", True, "heroin-72.01h"),
    (su(opioids=HEROIN, last_use_hours=96), "withdrawal_resolved", ABSENT, "heroin-96h-no-cows"),
    (su(opioids=HEROIN, last_use_hours=96, cows_score=7), "withdrawal_resolved", True, "heroin-96h-cows7"),
    (su(opioids=HEROIN, last_use_hours=96, cows_score=8), "withdrawal_resolved", False, "heroin-96h-cows8"),
    (su(opioids=HEROIN, last_use_hours=20, cows_score=8), "withdrawal_resolved", False, "heroin-20h-cows8"),
    (
        su(opioids=["illicit_methadone"], last_use_hours=80, cows_score=2),
        "withdrawal_resolved",
        False,
        "methadone-80h",
    ),
    (
        su(opioids=["illicit_methadone"], last_use_hours=168, cows_score=2),
        "withdrawal_resolved",
        False,
        "methadone-168h",
    ),
    (
        su(opioids=["illicit_methadone"], last_use_hours=168.01, cows_score=2),
        "withdrawal_resolved",
        True,
        "methadone-168.01h",
    ),
    (
        su(opioids=["fentanyl"], last_use_hours=100, cows_score=1),
        "withdrawal_resolved",
        False,
        "fentanyl-100h",
    ),
    (su(last_use_hours=100, cows_score=1), "withdrawal_resolved", False, "opioids-unknown-100h"),
    (
        su(opioids=["illicit_methadone"], last_use_hours=80),
        "withdrawal_resolved",
        False,
        "methadone-80h-no-cows",
    ),
    (
        su(opioids=["illicit_methadone"], last_use_hours=200),
        "withdrawal_resolved",
        ABSENT,
        "methadone-200h-no-cows",
    ),
    (su(cows_score=2), "withdrawal_resolved", ABSENT, "hours-unknown"),
]


@_rows(RESOLVED)
def test_withdrawal_resolved(extra: dict[str, Any], fact: str, expected: Any) -> None:
    _check(extra, fact, expected)


# --- QTc (F-48, S30 rec 4): < 450 normal, 450-500 borderline, > 500 prolonged ---------------
QTC = [
    ({"medical": {"qtc_ms": ms}}, "qtc_band", band, f"qtc={ms}")
    for ms, band in [
        (200, "normal"),
        (449, "normal"),
        (450, "borderline"),
        (480, "borderline"),
        (500, "borderline"),
        (501, "prolonged"),
        (900, "prolonged"),
    ]
]


@_rows(QTC)
def test_qtc_band(extra: dict[str, Any], fact: str, expected: Any) -> None:
    _check(extra, fact, expected)


# --- release from prison or jail: high risk for 28 days (F-82, S32) --------------------------
RELEASE = [
    ({"social": {"days_since_release": d}}, "recently_released", value, f"day-{d}")
    for d, value in [(0, True), (9, True), (27, True), (28, True), (29, False), (365, False)]
] + [
    ({"social": {"days_since_release": 28, "legal": "none"}}, "criminal_justice_involved", True, "cj-28d"),
    ({"social": {"days_since_release": 29, "legal": "none"}}, "criminal_justice_involved", False, "cj-29d"),
    ({"social": {"legal": "parole"}}, "criminal_justice_involved", True, "cj-parole"),
    ({"social": {"legal": "none"}}, "criminal_justice_involved", False, "cj-none"),
    ({"social": {"days_since_release": 10}}, "overdose_risk_factors", 2, "release-is-also-lost-tolerance"),
]


@_rows(RELEASE)
def test_release(extra: dict[str, Any], fact: str, expected: Any) -> None:
    _check(extra, fact, expected)


# --- age groups (F-78 S21; F-80 S31) ---------------------------------------------------------
AGES = [
    ({"patient": {"age": age}}, "age_group", group, f"age-{age}")
    for age, group in [
        (12, "under_16"),
        (15, "under_16"),
        (16, "adolescent_16_17"),
        (17, "adolescent_16_17"),
        (18, "adult"),
        (64, "adult"),
        (65, "older_adult"),
        (110, "older_adult"),
    ]
] + [
    ({"patient": {"age": 55}}, "pregnancy_status_unknown", True, "55-unknown-sex"),
    ({"patient": {"age": 56}}, "pregnancy_status_unknown", False, "56"),
    ({"patient": {"age": 30, "sex_at_birth": "male"}}, "pregnancy_status_unknown", False, "male"),
    ({"patient": {"age": 30, "sex_at_birth": "male"}}, "pregnant", False, "male-not-pregnant"),
    ({"patient": {"age": 30, "pregnant": False}}, "pregnancy_status_unknown", False, "recorded"),
]


@_rows(AGES)
def test_age_and_pregnancy(extra: dict[str, Any], fact: str, expected: Any) -> None:
    _check(extra, fact, expected)


# --- ASAM dimensions (design inference F-39; 0-4 scale F-34 S42) -----------------------------
SEIZURES = {"substance_use": {"benzodiazepines": "illicit"}, "medical": {"withdrawal_seizure_history": True}}
ASAM = [
    # D1 intoxication / withdrawal
    (_merge(SEIZURES, su(cows_score=37)), "asam_d1", 4, "d1-seizure-risk-and-severe-cows"),
    (SEIZURES, "asam_d1", 3, "d1-seizure-risk"),
    (su(cows_score=37), "asam_d1", 3, "d1-cows-severe"),
    (su(cows_score=25), "asam_d1", 2, "d1-cows-moderately-severe"),
    (su(cows_score=13), "asam_d1", 2, "d1-cows-moderate"),
    ({"stage": "in_withdrawal"}, "asam_d1", 2, "d1-in-withdrawal-cows-unknown"),
    (su(cows_score=5), "asam_d1", 1, "d1-cows-mild"),
    (su(cows_score=4), "asam_d1", 0, "d1-cows-none"),
    ({}, "asam_d1", 0, "d1-nothing-known"),
    # D2 biomedical
    ({"medical": {"hepatic_impairment": "severe"}}, "asam_d2", 3, "d2-child-pugh-c"),
    ({"medical": {"hepatic_impairment": "moderate"}}, "asam_d2", 2, "d2-child-pugh-b"),
    ({"medical": {"qtc_ms": 501}}, "asam_d2", 2, "d2-qtc-501"),
    ({"medical": {"qtc_ms": 500}}, "asam_d2", 0, "d2-qtc-500"),
    ({"patient": {"age": 30, "pregnant": True}}, "asam_d2", 1, "d2-pregnant"),
    ({"medical": {"hcv": True}}, "asam_d2", 1, "d2-hcv"),
    ({"medical": {"hcv": False, "hiv": False}}, "asam_d2", 0, "d2-none"),
    # D3 emotional / behavioural
    ({"mental_health": {"suicidal_ideation": "active_with_plan"}}, "asam_d3", 4, "d3-si-plan"),
    ({"mental_health": {"recent_suicide_attempt": True}}, "asam_d3", 4, "d3-recent-attempt"),
    ({"mental_health": {"suicidal_ideation": "active_no_plan"}}, "asam_d3", 3, "d3-si-no-plan"),
    ({"mental_health": {"suicidal_ideation": "passive"}}, "asam_d3", 2, "d3-si-passive"),
    ({"mental_health": {"conditions": ["psychosis"]}}, "asam_d3", 2, "d3-psychosis"),
    ({"mental_health": {"conditions": ["depression"]}}, "asam_d3", 1, "d3-depression"),
    ({"mental_health": {"conditions": []}}, "asam_d3", 0, "d3-none"),
    # D4 readiness to change
    ({"readiness": "precontemplation"}, "asam_d4", 3, "d4-precontemplation"),
    ({"readiness": "contemplation"}, "asam_d4", 2, "d4-contemplation"),
    ({"readiness": "preparation"}, "asam_d4", 1, "d4-preparation"),
    ({"readiness": "action"}, "asam_d4", 0, "d4-action"),
    ({}, "asam_d4", 0, "d4-unknown"),
    # D5 relapse potential
    ({"history": {"relapses_after_outpatient": 2}}, "asam_d5", 3, "d5-two-relapses"),
    ({"history": {"relapses_after_outpatient": 1}}, "asam_d5", 1, "d5-one-relapse"),
    ({"stage": "remission"}, "asam_d5", 0, "d5-remission"),
    (su(frequency="daily"), "asam_d5", 2, "d5-daily"),
    ({"history": {"overdoses_last_year": 1}}, "asam_d5", 2, "d5-overdose"),
    ({}, "asam_d5", 1, "d5-unknown"),
    # D6 recovery environment
    (
        {"social": {"housing": "homeless", "home_supports_recovery": False}},
        "asam_d6",
        4,
        "d6-homeless-unsafe",
    ),
    ({"social": {"housing": "homeless", "support_system": "none"}}, "asam_d6", 4, "d6-homeless-alone"),
    ({"social": {"housing": "homeless"}}, "asam_d6", 3, "d6-homeless"),
    ({"social": {"home_supports_recovery": False}}, "asam_d6", 3, "d6-unsafe-home"),
    ({"social": {"housing": "unstable"}}, "asam_d6", 2, "d6-unstable"),
    ({"social": {"support_system": "none"}}, "asam_d6", 2, "d6-no-support"),
    ({"social": {"support_system": "limited"}}, "asam_d6", 1, "d6-limited"),
    ({"social": {"housing": "stable", "support_system": "strong"}}, "asam_d6", 0, "d6-stable"),
    # the safety dimensions (1-3) preference may not override
    (
        _merge(su(cows_score=13), {"mental_health": {"suicidal_ideation": "active_no_plan"}}),
        "safety_dimension_max",
        3,
        "safety-max-d3",
    ),
    ({"medical": {"hepatic_impairment": "severe"}}, "safety_dimension_max", 3, "safety-max-d2"),
    ({"readiness": "precontemplation"}, "safety_dimension_max", 0, "safety-ignores-d4"),
]


@_rows(ASAM)
def test_asam_dimensions(extra: dict[str, Any], fact: str, expected: Any) -> None:
    _check(extra, fact, expected)


# --- sedatives (F-83 S29; F-84 S16, S01 p.6) ---------------------------------------------------
SEDATIVES = [
    (su(benzodiazepines="prescribed"), "sedative_co_use", True, "benzo-prescribed"),
    (su(alcohol="heavy"), "sedative_co_use", True, "alcohol-heavy"),
    (su(benzodiazepines="none", alcohol="moderate"), "sedative_co_use", False, "known-safe"),
    (su(benzodiazepines="none"), "sedative_co_use", ABSENT, "alcohol-unknown"),
    (SEIZURES, "sedative_withdrawal_seizure_risk", True, "seizure-risk"),
    (
        {"medical": {"withdrawal_seizure_history": False}},
        "sedative_withdrawal_seizure_risk",
        False,
        "no-fits",
    ),
    (su(benzodiazepines="illicit"), "sedative_withdrawal_seizure_risk", ABSENT, "history-unknown"),
]


@_rows(SEDATIVES)
def test_sedatives(extra: dict[str, Any], fact: str, expected: Any) -> None:
    _check(extra, fact, expected)


# --- current treatment: absence is explicit ----------------------------------------------------
TREATMENT = [
    ({"current_treatment": {"moud": None}}, "current_moud", "none", "explicit-null-is-none"),
    ({"current_treatment": {"moud": None}}, "on_moud", False, "explicit-null-not-on-moud"),
    ({"current_treatment": {}}, "current_moud", ABSENT, "empty-section-unknown"),
    ({}, "current_moud", ABSENT, "no-section-unknown"),
    ({"stage": "post_withdrawal"}, "current_moud", "none", "post-withdrawal-none"),
    ({"current_treatment": {"moud": "methadone"}}, "on_moud", True, "on-methadone"),
    ({"current_treatment": {"moud": "methadone", "dose_mg": 40}}, "on_high_dose_methadone", False, "40mg"),
    ({"current_treatment": {"moud": "methadone", "dose_mg": 41}}, "on_high_dose_methadone", True, "41mg"),
    ({"current_treatment": {"moud": "buprenorphine", "dose_mg": 41}}, "on_high_dose_methadone", False, "bup"),
    ({"history": {"relapses_after_outpatient": 1}}, "repeated_outpatient_failure", False, "1-relapse"),
    ({"history": {"relapses_after_outpatient": 2}}, "repeated_outpatient_failure", True, "2-relapses"),
]


@_rows(TREATMENT)
def test_current_treatment_and_history(extra: dict[str, Any], fact: str, expected: Any) -> None:
    _check(extra, fact, expected)


INTERACTIONS = [
    (
        {"medical": {"interacting_medications": ["Efavirenz"]}},
        "takes_methadone_level_lowering_drug",
        True,
        "efv",
    ),
    (
        {"medical": {"interacting_medications": ["St John's Wort"]}},
        "takes_methadone_level_lowering_drug",
        True,
        "st-johns-wort-spelling",
    ),
    ({"medical": {"interacting_medications": ["citalopram"]}}, "takes_qt_prolonging_drug", True, "qt"),
    ({"medical": {"interacting_medications": ["gabapentin"]}}, "takes_cns_depressant_drug", True, "cns"),
    ({"medical": {"interacting_medications": ["ibuprofen"]}}, "has_unrecognised_medication", True, "unknown"),
    ({"medical": {"interacting_medications": []}}, "has_unrecognised_medication", False, "none-listed"),
    ({"medical": {}}, "takes_qt_prolonging_drug", ABSENT, "not-asked"),
]


@_rows(INTERACTIONS)
def test_interactions(extra: dict[str, Any], fact: str, expected: Any) -> None:
    _check(extra, fact, expected)


# --- absence: an intake with only the required fields derives almost nothing ------------------
ALWAYS_DERIVED = {
    "jurisdiction",  # defaults to US
    "age",
    "age_group",
    "pregnancy_status_unknown",
    "overdose_risk_factors",  # a count of the known risk factors
    *(f"asam_d{n}" for n in range(1, 7)),  # a risk level, 0 = no known risk
    "safety_dimension_max",
}


def test_minimal_intake_leaves_every_other_fact_unknown() -> None:
    assert set(facts_of({})) == ALWAYS_DERIVED


def test_empty_sections_and_nulls_derive_nothing_more() -> None:
    every_section_empty = {
        "substance_use": {},
        "current_treatment": {},
        "history": {},
        "mental_health": {},
        "medical": {},
        "social": {},
        "preferences": {},
    }
    all_null = {
        "stage": None,
        "readiness": None,
        "patient": {"sex_at_birth": None, "pregnant": None, "gestational_weeks": None},
        "substance_use": {"cows_score": None, "last_use_hours": None, "opioids": None},
        "medical": {"qtc_ms": None, "interacting_medications": None},
        "social": {"days_since_release": None, "legal": None},
    }
    assert set(facts_of(every_section_empty)) == ALWAYS_DERIVED
    assert set(facts_of(all_null)) == ALWAYS_DERIVED


# Each intake field on its own makes its own facts known, and nothing it does not feed.
SINGLE_FIELD = [
    (su(cows_score=10), {"cows_score", "cows_band", "objective_withdrawal"}),
    (su(dsm5_criteria_met=5), {"dsm5_criteria_met", "has_oud", "oud_severity"}),
    ({"medical": {"qtc_ms": 470}}, {"qtc_ms", "qtc_band"}),
    (
        {"social": {"days_since_release": 40}},
        {"days_since_release", "recently_released", "criminal_justice_involved"},
    ),
    (
        su(last_use_hours=30),
        {
            "last_use_hours",
            "last_use_days",
            "buprenorphine_time_gate_met",
            "withdrawal_resolved",
            "naltrexone_washout_met",
            "naltrexone_interval_days",
        },
    ),
]


@pytest.mark.parametrize(("extra", "known"), SINGLE_FIELD, ids=["cows", "dsm5", "qtc", "release", "last-use"])
def test_one_field_makes_only_its_facts_known(extra: dict[str, Any], known: set[str]) -> None:
    assert set(facts_of(extra)) - ALWAYS_DERIVED == known


def test_loss_of_tolerance_is_unknown_when_nothing_is_known() -> None:
    _check({}, "loss_of_tolerance", ABSENT)


NOT_RELEASED = {"days_since_release": 29}
ON_BUPRENORPHINE = {"current_treatment": {"moud": "buprenorphine"}}


@pytest.mark.parametrize(
    ("extra", "expected"),
    [
        ({"stage": "post_withdrawal"}, True),
        ({"social": {"days_since_release": 10}}, True),
        (su(last_use_hours=168), True),
        (_merge(su(last_use_hours=500), {"current_treatment": {"moud": "methadone"}}), False),
        (_merge(su(last_use_hours=167), {"stage": "active_use", "social": NOT_RELEASED}), False),
        (su(last_use_hours=167), ABSENT),
        (_merge({"social": {"days_since_release": 10}}, ON_BUPRENORPHINE), False),
        ({"stage": "active_use"}, ABSENT),
    ],
    ids=[
        "post-withdrawal",
        "released",
        "7-days-abstinent",
        "on-methadone",
        "6.96-days-active-not-released",
        "6.96-days-release-unknown",
        "released-on-buprenorphine",
        "active-use-only",
    ],
)
def test_loss_of_tolerance(extra: dict[str, Any], expected: Any) -> None:
    _check(extra, "loss_of_tolerance", expected)


# --- numbers reach durable_rules in a form it can read -----------------------------------------
@pytest.mark.parametrize("hours", [0.00001, 0.00002, 0.00004999, 0.00005, 0.0001, 876000.0])
def test_numbers_are_rounded_and_never_written_with_an_exponent(hours: float) -> None:
    facts = facts_of(su(last_use_hours=hours))
    assert facts["last_use_hours"] == round(hours, 4)
    assert "e" not in repr(facts["last_use_hours"])
