"""The fact vocabulary: every name a rule may test, with its type, unit, meaning and origin.

A fact is absent when the intake does not let us know it. Rules see absence explicitly
(``known: false``); every other test on an absent fact is false, and the explanation layer
lists the intake fields whose answer could change the plan.

Thresholds used to derive facts are named constants below, each with the source of its
number (knowledge-base fact id F-nn and source S-nn).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

__all__ = ["Fact", "FACTS", "FactType", "threshold"]

FactType = Literal["bool", "int", "number", "enum", "text"]
"""``text`` facts are for wordings only (``{fact}`` in a rule text); rules cannot test them."""

# --- thresholds (each with its source) -------------------------------------------------
DSM5_MILD_MIN = 2  # F-01, S23: >=2 of 11 criteria = OUD; 2-3 mild
DSM5_MODERATE_MIN = 4  # F-01, S23: 4-5 moderate
DSM5_SEVERE_MIN = 6  # F-01, S23: >=6 severe
COWS_MILD_MIN = 5  # F-27, S24: <5 not indicative of withdrawal; 5-12 mild
COWS_MODERATE_MIN = 13  # F-27, S24: 13-24 moderate
COWS_MOD_SEVERE_MIN = 25  # F-27, S24: 25-36 moderately severe
COWS_SEVERE_ABOVE = 36  # F-27, S24: >36 severe
COWS_BUPRENORPHINE_START = 8  # F-28, S39: start buprenorphine at COWS >= 8
BUP_GATE_SHORT_ACTING_H = 12  # F-24, S02 p.6: 12-18 h after a short-acting opioid
BUP_GATE_LONG_ACTING_H = 24  # F-24, S02 p.6: 24-48 h after a long-acting opioid
WITHDRAWAL_OVER_H = 72  # F-51, S39: withdrawal often finished >72 h after last use (short-acting)
WITHDRAWAL_OVER_LONG_ACTING_H = 7 * 24  # F-25 S41 (long-acting: onset 30-72 h, lasts ~10 days),
# F-26 S39 (fentanyl onset variable, can be >72 h); review 2026-12 §1.2: 5-7 days (design inference)
NALTREXONE_WASHOUT_SHORT_H = 7 * 24  # F-58, S27: opioid-free 7-10 days (short-acting)
NALTREXONE_WASHOUT_LONG_H = 14 * 24  # F-55/F-58, S02 p.10, S27: 7-14 days after bup/methadone
# fentanyl: F-26 S40 (metabolites cleared over ~13 days): the long interval (design inference)
RECENT_ABSTINENCE_DAYS = 28  # F-82, S32: overdose risk stays raised to at least week 4
QTC_BORDERLINE_MIN = 450  # F-48, S30 rec 4: 450-500 ms discuss and monitor
QTC_PROLONGED_ABOVE = 500  # F-48, S30 rec 4: >500 ms consider alternative therapy
RELEASE_HIGH_RISK_DAYS = 28  # F-82, S32: risk raised to at least week 4 after release
OLDER_ADULT_AGE = 65  # F-80, S31: age >= 65 is a naloxone risk factor
METHADONE_LOW_START_AGE = 60  # F-46, S16 (Canada via NIDA): age >= 60 lower start
METHADONE_ADEQUATE_MG = 60  # F-46, S16: usual maintenance 60-120 mg
BUPRENORPHINE_ADEQUATE_MG = 16  # F-51, S39: usually 16-32 mg/day
METHADONE_SWITCH_MAX_MG = 40  # F-55, S02 p.10: methadone->buprenorphine best below 30-40 mg
REPEATED_RELAPSE_MIN = 2  # F-39 / R18 (design inference): >=2 relapses after outpatient
CHILDBEARING_MAX_AGE = 55  # F-07, S01 p.3 (design inference: age band for pregnancy testing)


def threshold(name: str) -> float:
    """Look up a named threshold (for tests and reports)."""
    value = globals()[name]
    assert isinstance(value, int | float)
    return value


@dataclass(frozen=True)
class Fact:
    name: str
    type: FactType
    definition: str
    sources: tuple[str, ...]
    values: tuple[str, ...] = ()
    unit: str = ""
    cite: str = ""
    range: tuple[float, float] | None = None
    aliases: tuple[str, ...] = field(default=())


def _f(
    name: str,
    type_: FactType,
    definition: str,
    sources: str,
    values: str = "",
    unit: str = "",
    cite: str = "",
    range_: tuple[float, float] | None = None,
) -> Fact:
    return Fact(
        name=name,
        type=type_,
        definition=definition,
        sources=tuple(s for s in sources.split() if s),
        values=tuple(values.split()),
        unit=unit,
        cite=cite,
        range=range_,
    )


_OPIOIDS = "heroin fentanyl prescription_opioids illicit_methadone illicit_buprenorphine other_opioid"
_CONDITIONS = "depression anxiety ptsd bipolar psychosis personality_disorder adhd other"

_TABLE: list[Fact] = [
    # patient and setting
    _f("jurisdiction", "enum", "Country whose rules apply", "jurisdiction", "US UK DE CA"),
    _f("age", "int", "Age in years", "patient.age", unit="years", range_=(12, 110)),
    _f(
        "age_group",
        "enum",
        "under_16 | adolescent_16_17 | adult (18-64) | older_adult (>=65)",
        "patient.age",
        "under_16 adolescent_16_17 adult older_adult",
        cite="F-78 S21; F-80 S31",
    ),
    _f("sex_at_birth", "enum", "Sex at birth", "patient.sex_at_birth", "female male intersex unknown"),
    _f("pregnant", "bool", "Currently pregnant", "patient.pregnant"),
    _f(
        "pregnancy_status_unknown",
        "bool",
        "Could be pregnant (not male, age <= 55) and pregnancy not recorded",
        "patient.pregnant patient.sex_at_birth patient.age",
        cite="F-07 S01 p.3",
    ),
    _f("gestational_weeks", "int", "Weeks of gestation", "patient.gestational_weeks", unit="weeks"),
    _f(
        "stage",
        "enum",
        "Where the patient is in the care process",
        "stage",
        "active_use in_withdrawal post_withdrawal in_treatment remission relapse",
    ),
    _f(
        "readiness",
        "enum",
        "Stage of change (transtheoretical model)",
        "readiness",
        "precontemplation contemplation preparation action maintenance",
        cite="F-10 S42",
    ),
    # substance use
    *[
        _f(f"uses_{o}", "bool", f"Opioids used include {o}", "substance_use.opioids")
        for o in _OPIOIDS.split()
    ],
    _f(
        "uses_illicit_opioids",
        "bool",
        "Uses heroin, fentanyl, diverted methadone/buprenorphine or other illicit opioids",
        "substance_use.opioids",
        cite="F-80 S31 (HHS 2018)",
    ),
    _f(
        "long_acting_opioid_exposure",
        "bool",
        "Recent exposure to methadone or buprenorphine (illicit or prescribed)",
        "substance_use.opioids current_treatment.moud",
        cite="F-24 S02 p.6",
    ),
    _f("route", "enum", "Main route of use", "substance_use.route", "injection smoking intranasal oral"),
    _f("injects", "bool", "Injects drugs", "substance_use.route"),
    _f("frequency", "enum", "Frequency of use", "substance_use.frequency", "daily weekly less_than_weekly"),
    _f("last_use_hours", "number", "Hours since last opioid use", "substance_use.last_use_hours", unit="h"),
    _f(
        "last_use_days",
        "number",
        "Days since last opioid use",
        "substance_use.last_use_hours",
        unit="days",
    ),
    _f(
        "dsm5_criteria_met",
        "int",
        "DSM-5 OUD criteria met (0-11)",
        "substance_use.dsm5_criteria_met",
        range_=(0, 11),
    ),
    _f(
        "has_oud",
        "bool",
        "Meets DSM-5 OUD (>= 2 criteria)",
        "substance_use.dsm5_criteria_met",
        cite="F-01 S23",
    ),
    _f(
        "oud_severity",
        "enum",
        "DSM-5 severity: none (<2), mild (2-3), moderate (4-5), severe (>=6)",
        "substance_use.dsm5_criteria_met",
        "none mild moderate severe",
        cite="F-01 S23",
    ),
    _f("cows_score", "int", "Clinical Opiate Withdrawal Scale total", "substance_use.cows_score"),
    _f(
        "cows_band",
        "enum",
        "COWS band: none (<5), mild (5-12), moderate (13-24), moderately_severe (25-36), severe (>36)",
        "substance_use.cows_score",
        "none mild moderate moderately_severe severe",
        cite="F-27 S24",
    ),
    _f(
        "objective_withdrawal",
        "bool",
        "COWS >= 8: enough withdrawal for a standard buprenorphine start",
        "substance_use.cows_score",
        cite="F-28 S39",
    ),
    _f(
        "physically_dependent",
        "bool",
        "Physically dependent on opioids",
        "substance_use.physically_dependent",
    ),
    _f(
        "benzodiazepines",
        "enum",
        "Benzodiazepine use",
        "substance_use.benzodiazepines",
        "none prescribed illicit",
    ),
    _f("alcohol", "enum", "Alcohol use", "substance_use.alcohol", "none moderate heavy"),
    _f("stimulants", "bool", "Uses stimulants", "substance_use.stimulants"),
    _f("xylazine_exposure", "bool", "Exposed to xylazine", "substance_use.xylazine_exposure"),
    _f(
        "sedative_co_use",
        "bool",
        "Uses benzodiazepines (prescribed or illicit) or drinks heavily",
        "substance_use.benzodiazepines substance_use.alcohol",
        cite="F-83 S29; F-84 S16",
    ),
    _f(
        "sedative_withdrawal_seizure_risk",
        "bool",
        "Sedative or heavy alcohol use with a history of withdrawal seizures or DTs",
        "substance_use.benzodiazepines substance_use.alcohol medical.withdrawal_seizure_history",
        cite="F-84 S01 p.6",
    ),
    _f(
        "sedative_dependence",
        "bool",
        "Daily benzodiazepine use or heavy drinking: stopping can cause seizures even without a history",
        "substance_use.benzodiazepine_daily_use substance_use.benzodiazepines substance_use.alcohol",
        cite="F-84 S16, S01 p.6; review 2026-12 §0 #5 (design inference)",
    ),
    # timing
    _f(
        "buprenorphine_time_gate_met",
        "bool",
        ">= 12 h since a short-acting opioid, >= 24 h after methadone/buprenorphine",
        "substance_use.last_use_hours substance_use.opioids current_treatment.moud",
        cite="F-24 S02 p.6",
    ),
    _f(
        "withdrawal_resolved",
        "bool",
        "Withdrawal is over: > 72 h since a short-acting opioid (> 7 days after methadone, "
        "buprenorphine or fentanyl) AND a measured COWS under 8; unknown when COWS was not measured",
        "substance_use.last_use_hours substance_use.cows_score substance_use.opioids current_treatment.moud",
        cite="F-51 S39; F-25 S41; F-26 S39/S40",
    ),
    _f(
        "naltrexone_interval_days",
        "int",
        "Opioid-free days needed before naltrexone: 7 after short-acting opioids only, 14 after "
        "methadone, buprenorphine or fentanyl (or when the opioids are not recorded)",
        "substance_use.opioids current_treatment.moud",
        cite="F-58 S27; F-55 S02 p.10; F-26 S40 (fentanyl: design inference)",
    ),
    _f(
        "naltrexone_washout_met",
        "bool",
        "Opioid-free for the naltrexone interval (7 days short-acting; 14 days methadone, "
        "buprenorphine or fentanyl)",
        "substance_use.last_use_hours substance_use.opioids current_treatment.moud",
        cite="F-58 S27; F-55 S02 p.10",
    ),
    # current treatment
    _f(
        "current_moud",
        "enum",
        "MOUD taken now; none when the intake says none (or after detox without MOUD)",
        "current_treatment.moud stage",
        "none methadone buprenorphine naltrexone",
    ),
    _f("on_moud", "bool", "Currently on MOUD", "current_treatment.moud stage"),
    _f("moud_dose_mg", "number", "Current MOUD dose", "current_treatment.dose_mg", unit="mg"),
    _f(
        "months_on_moud",
        "number",
        "Months on current MOUD",
        "current_treatment.months_on_moud",
        unit="months",
    ),
    _f(
        "adequate_moud_dose",
        "bool",
        "Current agonist dose in the usual effective range (methadone >= 60 mg, buprenorphine >= 16 mg)",
        "current_treatment.dose_mg current_treatment.moud",
        cite="F-46 S16; F-51 S39",
    ),
    _f("moud_stable", "bool", "Stable on MOUD (no illicit use, engaged)", "current_treatment.stable"),
    _f(
        "on_high_dose_methadone",
        "bool",
        "On methadone above 40 mg/day (switch to buprenorphine needs a taper or crossover)",
        "current_treatment.moud current_treatment.dose_mg",
        cite="F-55 S02 p.10",
    ),
    # history
    _f("withdrawal_episodes", "int", "Detox-only episodes", "history.withdrawal_episodes"),
    _f("outpatient_episodes", "int", "Outpatient episodes", "history.outpatient_episodes"),
    _f("residential_episodes", "int", "Residential episodes", "history.residential_episodes"),
    _f(
        "relapses_after_outpatient",
        "int",
        "Relapses after outpatient care",
        "history.relapses_after_outpatient",
    ),
    _f("overdoses_last_year", "int", "Overdoses in the last 12 months", "history.overdoses_last_year"),
    *[
        _f(f"prior_{m}", "bool", f"Has been treated with {m} before", "history.prior_moud")
        for m in ("methadone", "buprenorphine", "naltrexone")
    ],
    _f(
        "repeated_outpatient_failure",
        "bool",
        ">= 2 relapses after outpatient or office-based treatment",
        "history.relapses_after_outpatient",
        cite="F-39 (design inference); R18",
    ),
    # mental health
    *[
        _f(f"mh_{c}", "bool", f"Co-occurring {c.replace('_', ' ')}", "mental_health.conditions")
        for c in _CONDITIONS.split()
    ],
    _f(
        "has_psychiatric_condition",
        "bool",
        "Any co-occurring psychiatric condition",
        "mental_health.conditions",
    ),
    _f(
        "severe_mental_illness",
        "bool",
        "Bipolar disorder or psychosis",
        "mental_health.conditions",
        cite="F-41 S01 p.27",
    ),
    _f(
        "suicidal_ideation",
        "enum",
        "Suicidal ideation",
        "mental_health.suicidal_ideation",
        "none passive active_no_plan active_with_plan",
    ),
    _f("recent_suicide_attempt", "bool", "Recent suicide attempt", "mental_health.recent_suicide_attempt"),
    _f("in_psychiatric_care", "bool", "In psychiatric care", "mental_health.in_psychiatric_care"),
    # medical
    _f("qtc_ms", "int", "QTc interval", "medical.qtc_ms", unit="ms"),
    _f(
        "qtc_band",
        "enum",
        "QTc: normal (<450), borderline (450-500), prolonged (>500)",
        "medical.qtc_ms",
        "normal borderline prolonged",
        cite="F-48 S30 rec 4",
    ),
    _f(
        "hepatic_impairment",
        "enum",
        "Hepatic impairment (Child-Pugh A/B/C = mild/moderate/severe)",
        "medical.hepatic_impairment",
        "none mild moderate severe",
    ),
    _f("hiv", "bool", "HIV positive", "medical.hiv"),
    _f("hcv", "bool", "Hepatitis C positive", "medical.hcv"),
    _f("chronic_pain", "bool", "Chronic pain", "medical.chronic_pain"),
    _f(
        "prescribed_opioid_analgesics",
        "bool",
        "Takes prescribed opioid analgesics",
        "medical.prescribed_opioid_analgesics",
    ),
    _f("upcoming_surgery", "bool", "Surgery planned", "medical.upcoming_surgery"),
    _f(
        "withdrawal_seizure_history",
        "bool",
        "History of alcohol/benzodiazepine withdrawal seizures or DTs",
        "medical.withdrawal_seizure_history",
    ),
    _f(
        "takes_methadone_level_lowering_drug",
        "bool",
        "Takes an enzyme inducer that lowers methadone levels (e.g. efavirenz, rifampicin)",
        "medical.interacting_medications",
        cite="F-85 (unconfirmed, general knowledge)",
    ),
    _f(
        "takes_methadone_level_raising_drug",
        "bool",
        "Takes a CYP3A4/2B6 inhibitor that can raise methadone levels",
        "medical.interacting_medications",
        cite="F-48 S30 rec 5",
    ),
    _f(
        "takes_qt_prolonging_drug",
        "bool",
        "Takes another QT-prolonging drug (e.g. citalopram, haloperidol, ondansetron)",
        "medical.interacting_medications",
        cite="F-48 S30 rec 5; F-71 S01 p.27",
    ),
    _f(
        "qt_prolonging_drugs",
        "text",
        "The QT-prolonging drugs listed (for wordings, e.g. 'citalopram')",
        "medical.interacting_medications",
        cite="F-48 S30 rec 5",
    ),
    _f(
        "takes_cns_depressant_drug",
        "bool",
        "Takes another sedating drug (e.g. gabapentinoids, Z-drugs)",
        "medical.interacting_medications",
        cite="F-53 S26",
    ),
    _f(
        "has_unrecognised_medication",
        "bool",
        "A listed medication is not in carepath's interaction table",
        "medical.interacting_medications",
    ),
    # social
    _f("can_leave_work", "bool", "Can step away for residential care", "social.can_leave_work"),
    _f("caregiver", "bool", "Cares for children or dependants", "social.caregiver"),
    _f("privacy_concern", "bool", "Needs discreet care", "social.privacy_concern"),
    _f("housing", "enum", "Housing", "social.housing", "stable unstable homeless"),
    _f("home_supports_recovery", "bool", "Home supports recovery", "social.home_supports_recovery"),
    _f("support_system", "enum", "Support system", "social.support_system", "none limited strong"),
    _f("legal", "enum", "Legal status", "social.legal", "none probation parole pending_charges"),
    _f("days_since_release", "int", "Days since release from prison or jail", "social.days_since_release"),
    _f(
        "recently_released",
        "bool",
        "Released from prison or jail within the last 4 weeks",
        "social.days_since_release",
        cite="F-82 S32",
    ),
    _f(
        "criminal_justice_involved",
        "bool",
        "On probation or parole, charges pending, or recently released",
        "social.legal social.days_since_release",
        cite="F-81 S01 p.27",
    ),
    # preferences
    _f(
        "preferred_medication",
        "enum",
        "Medication the patient prefers",
        "preferences.medication",
        "methadone buprenorphine naltrexone no_medication no_preference",
    ),
    _f(
        "preferred_setting",
        "enum",
        "Setting the patient prefers",
        "preferences.setting",
        "residential outpatient no_preference",
    ),
    _f("goal", "enum", "Patient's goal", "preferences.goal", "abstinence reduction undecided"),
    _f("declines_counselling", "bool", "Declines counselling", "preferences.declines_counselling"),
    # overdose risk and tolerance
    _f(
        "loss_of_tolerance",
        "bool",
        "Tolerance probably lost: after detox, after release, or >= 7 days opioid-free off agonists",
        "stage social.days_since_release substance_use.last_use_hours current_treatment.moud",
        cite="F-20 S14 1.1.1.2; F-51 S39; F-82 S32",
    ),
    _f(
        "recent_loss_of_tolerance",
        "bool",
        "Tolerance lost within the last 4 weeks: after detox, release, or under 28 days opioid-free",
        "stage social.days_since_release substance_use.last_use_hours current_treatment.moud",
        cite="F-82 S32 (risk raised to at least week 4)",
    ),
    _f(
        "overdose_risk_factors",
        "int",
        "Count of overdose risk factors (recent overdose, release, lost tolerance, fentanyl, "
        "sedatives, injection, xylazine)",
        "history.overdoses_last_year social.days_since_release stage substance_use.opioids "
        "substance_use.benzodiazepines substance_use.alcohol substance_use.route "
        "substance_use.xylazine_exposure",
        cite="F-80 S31; F-82 S32, S43",
    ),
    # ASAM dimensions (design inference F-39)
    *[
        _f(
            f"asam_d{n}",
            "int",
            f"ASAM dimension {n} ({label}) risk 0-4, from the intake (design inference F-39)",
            src,
            cite="F-34/F-39 S42 (design inference)",
            range_=(0, 4),
        )
        for n, label, src in (
            (
                1,
                "intoxication/withdrawal",
                "substance_use.cows_score substance_use.benzodiazepines "
                "substance_use.benzodiazepine_daily_use substance_use.alcohol "
                "medical.withdrawal_seizure_history stage",
            ),
            (
                2,
                "biomedical",
                "medical.hepatic_impairment medical.qtc_ms patient.pregnant medical.hiv "
                "medical.hcv medical.chronic_pain",
            ),
            (
                3,
                "emotional/behavioural",
                "mental_health.suicidal_ideation "
                "mental_health.recent_suicide_attempt mental_health.conditions",
            ),
            (4, "readiness to change", "readiness"),
            (
                5,
                "relapse potential",
                "history.relapses_after_outpatient history.overdoses_last_year substance_use.frequency stage",
            ),
            (6, "recovery environment", "social.housing social.home_supports_recovery social.support_system"),
        )
    ],
    _f(
        "safety_dimension_max",
        "int",
        "Highest of ASAM dimensions 1-3 (the safety dimensions preference may not override)",
        "substance_use.cows_score medical.hepatic_impairment mental_health.suicidal_ideation",
        cite="F-40 (design inference)",
        range_=(0, 4),
    ),
]

FACTS: dict[str, Fact] = {f.name: f for f in _TABLE}
