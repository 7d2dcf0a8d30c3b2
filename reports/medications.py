"""Medication comparison for the clinician draft, shown when the medication choice is open.

Open means: more than one of methadone, buprenorphine and naltrexone is recommended or
considered, or the patient's stated preference is not among those the plan offers.
The reference columns summarise SAMHSA TIP 63 (S05), ASAM 2015/2020 (S02, S01), UK DHSC
(S16) and BAeK/BtMVV (S38); the "plan says" column is the plan itself.
"""

from __future__ import annotations

from dataclasses import dataclass

from carepath.engine import CarePlan

__all__ = ["FAMILIES", "MedRow", "comparison", "choice_is_open"]

FAMILIES: dict[str, tuple[str, ...]] = {
    "methadone": ("moud.methadone",),
    "buprenorphine": (
        "moud.buprenorphine",
        "moud.buprenorphine_low_dose_induction",
        "moud.buprenorphine_extended_release",
    ),
    "naltrexone": ("moud.naltrexone_xr", "moud.naltrexone_oral"),
}
_POSITIVE = ("recommend", "consider")

_SETTING = {
    "methadone": {
        "US": "Opioid treatment programme (OTP) only; observed daily dosing at first",
        "UK": "Drug service or GP prescriber; supervised consumption at a pharmacy at first",
        "DE": "Substitution practice or clinic; observed dosing at first (BtMVV)",
        "CA": "Methadone-authorised prescriber; daily witnessed pharmacy dosing at first",
    },
    "buprenorphine": {
        "US": "Any prescriber with a DEA registration (office, telehealth, ED) or an OTP",
        "UK": "Drug service or GP prescriber; supervised at a pharmacy at first",
        "DE": "Substitution practice or clinic (BtMVV)",
        "CA": "Any prescriber; first-line option (CRISM)",
    },
    "naltrexone": {
        "US": "Any prescriber; extended-release injection every 4 weeks in clinic",
        "UK": "Oral naltrexone via drug service (NICE TA115); XR injection not licensed",
        "DE": "Any prescriber; oral naltrexone",
        "CA": "Any prescriber; oral (XR injection not marketed)",
    },
}
_START = {
    "methadone": "Any time, no withdrawal needed; start low and titrate slowly",
    "buprenorphine": "In objective withdrawal (COWS 8 or more), or low-dose initiation without waiting",
    "naltrexone": "Only once opioid-free 7-10 days (7-14 days after methadone or buprenorphine)",
}
_CAUTIONS = {
    "methadone": "QTc prolongation; sedatives and alcohol; overdose risk during titration; "
    "CYP interactions (e.g. efavirenz, rifampicin)",
    "buprenorphine": "Precipitated withdrawal if started too early, especially after fentanyl; "
    "hepatic impairment",
    "naltrexone": "Overdose after stopping (tolerance lost); blocks opioid analgesia; "
    "not started in pregnancy; hepatic impairment",
}


@dataclass(frozen=True)
class MedRow:
    family: str
    setting: str
    start: str
    cautions: str
    plan_says: tuple[tuple[str, str], ...]  # (kind or "not recommended", text)
    preferred: bool


def _offered(plan: CarePlan) -> set[str]:
    positive = plan.codes(*_POSITIVE)
    return {fam for fam, codes in FAMILIES.items() if positive & set(codes)}


def choice_is_open(plan: CarePlan, preference: str | None) -> bool:
    offered = _offered(plan)
    if len(offered) > 1:
        return True
    return preference in FAMILIES and preference not in offered


def comparison(plan: CarePlan, preference: str | None) -> list[MedRow]:
    return [_row(plan, fam, preference) for fam in FAMILIES]


def _row(plan: CarePlan, family: str, preference: str | None) -> MedRow:
    codes = FAMILIES[family]
    says: list[tuple[str, str]] = [(i.kind, i.text) for i in plan.items() if i.code in codes]
    says += [("not recommended", w.reason) for w in plan.considered_not_recommended if w.code in codes]
    return MedRow(
        family=family,
        setting=_SETTING[family].get(plan.jurisdiction, _SETTING[family]["US"]),
        start=_START[family],
        cautions=_CAUTIONS[family],
        plan_says=tuple(says) or (("not addressed", "The plan says nothing about this medication."),),
        preferred=family == preference,
    )
