"""Plans for report tests: a real short plan from the engine and a synthetic long one.

The long plan is built by hand (valid CarePlan, contract vocabulary) so that the tests
exercise every section however thin or rich the rule pack is at the time.
"""

from __future__ import annotations

from datetime import UTC, date, datetime
from typing import Any

from carepath.engine import CarePlan

FIXED_TIME = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)

PATIENT = {
    "id": "MRN-0042-7731",
    "name": "Dana Q. Testpatient",
    "age": 29,
    "sex_at_birth": "female",
    "medication_preference": "naltrexone",
}


def _cite(key: str, title: str, locator: str) -> dict[str, str]:
    return {"key": key, "title": title, "locator": locator}


ASAM = _cite("S01", "ASAM National Practice Guideline for the Treatment of OUD, 2020 Focused Update", "p.27")
ASAM15 = _cite("S02", "ASAM National Practice Guideline 2015", "p.18")
TIP63 = _cite("S05", "SAMHSA TIP 63: Medications for Opioid Use Disorder", "Part 3")
WHO = _cite("S11", "WHO Guidelines for substance use disorders in pregnancy (2014)", "rec 9")
ACOG = _cite("S20", "ACOG Committee Opinion 711", "recommendations")
CDC = _cite("S31", "CDC Clinical Practice Guideline 2022", "Rec 8")
KRANTZ = _cite("S30", "Krantz et al., QTc Interval Screening in Methadone Treatment", "rec 4")


def _item(
    code: str, kind: str, text: str, rule: str, cites: list[dict[str, str]], **trig: Any
) -> dict[str, Any]:
    return {
        "code": code,
        "kind": kind,
        "text": text,
        "rationale": f"{rule}: {text} Rationale in the words of the rule.",
        "rule_ids": [rule],
        "citations": cites,
        "evidence_grade": "Guideline recommendation",
        "triggered_by": trig,
    }


def long_plan_dict() -> dict[str, Any]:
    phases = {
        "withdrawal_management": [
            _item(
                "wm.agonist_assisted",
                "consider",
                "Agonist-assisted withdrawal if she declines maintenance.",
                "OUD-WM-020",
                [ASAM, TIP63],
                cows_score=14,
                stage="in_withdrawal",
            ),
            _item(
                "wm.ultra_rapid",
                "avoid",
                "Ultra-rapid detoxification must not be offered.",
                "OUD-WM-900",
                [ASAM15],
            ),
        ],
        "level_of_care": [
            _item(
                "loc.intensive_outpatient",
                "recommend",
                "Intensive outpatient care (ASAM 2.1).",
                "OUD-LOC-001",
                [ASAM],
                support_system="limited",
            ),
        ],
        "medication": [
            _item(
                "moud.buprenorphine",
                "recommend",
                "Buprenorphine maintenance, 16-24 mg/day.",
                "OUD-MOUD-100",
                [ASAM, TIP63, WHO],
                pregnant=True,
                cows_score=14,
            ),
            _item(
                "moud.methadone",
                "caution",
                "Methadone with ECG monitoring (QTc 470 ms).",
                "OUD-MOUD-140",
                [KRANTZ, TIP63],
                qtc_ms=470,
                interacting_medications=["efavirenz", "rifampicin"],
            ),
            _item(
                "moud.naltrexone_xr",
                "avoid",
                "Do not start XR-naltrexone in pregnancy.",
                "OUD-MOUD-900",
                [ACOG, WHO],
                pregnant=True,
            ),
        ],
        "medical": [
            _item(
                "med.obstetric_comanagement",
                "recommend",
                "Obstetric co-management.",
                "OUD-MED-010",
                [ACOG],
                gestational_weeks=22,
            ),
            _item("med.ecg", "recommend", "ECG within 30 days.", "OUD-MED-020", [KRANTZ], qtc_ms=470),
        ],
        "psychosocial": [
            _item("psy.cbt", "recommend", "CBT for depression.", "OUD-PSY-020", [TIP63]),
            _item(
                "psy.contingency_management", "consider", "Contingency management.", "OUD-PSY-030", [TIP63]
            ),
        ],
        "dual_diagnosis": [
            _item(
                "dd.urgent_psychiatric_evaluation",
                "recommend",
                "Same-day psychiatric evaluation.",
                "OUD-DD-010",
                [ASAM15],
                suicidal_ideation="active_no_plan",
                **{"flag:suicide_risk": True},
            ),
            _item("dd.integrated_care", "recommend", "Integrated care.", "OUD-DD-020", [ASAM]),
        ],
        "harm_reduction": [
            _item(
                "hr.naloxone",
                "recommend",
                "Naloxone kit for patient and household.",
                "OUD-HR-001",
                [ASAM15, CDC],
            ),
            _item("hr.overdose_education", "recommend", "Overdose education.", "OUD-HR-001", [ASAM15, CDC]),
            _item(
                "hr.tolerance_loss_warning",
                "recommend",
                "Warn that tolerance is lost.",
                "OUD-HR-011",
                [CDC],
                **{"flag:high_overdose_risk": True},
            ),
            _item(
                "hr.sterile_supplies",
                "recommend",
                "Syringe services.",
                "OUD-HR-020",
                [CDC],
                route="injection",
            ),
        ],
        "aftercare": [
            _item("aft.follow_up", "recommend", "Follow-up within 7 days.", "OUD-HR-011", [CDC]),
            _item("aft.peer_support", "consider", "Peer recovery support.", "OUD-AFT-010", [TIP63]),
        ],
    }
    return {
        "plan_id": "cp_longplanfortests0000001",
        "generated_at": FIXED_TIME.isoformat(),
        "assessment_date": "2026-03-02",
        "jurisdiction": "US",
        "ruleset": {
            "id": "carepath-oud",
            "version": "2026.11.0",
            "sha256": "ab" * 32,
            "effective_date": "2026-11-23",
        },
        "intake_sha256": "cd" * 32,
        "alerts": [
            {
                "code": "alert.suicide_risk",
                "severity": "urgent",
                "text": "Suicide risk: same-day evaluation.",
                "rule_ids": ["OUD-DD-010"],
                "citations": [ASAM15],
            },
            {
                "code": "alert.pregnancy",
                "severity": "warning",
                "text": "Pregnancy: agonist treatment preferred.",
                "rule_ids": ["OUD-MED-010"],
                "citations": [ACOG, WHO],
            },
            {
                "code": "alert.high_overdose_risk",
                "severity": "urgent",
                "text": "High overdose risk.",
                "rule_ids": ["OUD-HR-010"],
                "citations": [CDC],
            },
        ],
        "level_of_care": {
            "code": "loc.intensive_outpatient",
            "label": "Intensive outpatient",
            "asam_level": "2.1",
            "rationale": "Residential need lowered to intensive outpatient by the patient's preference.",
            "rule_ids": ["OUD-LOC-001"],
            "adjusted_by_preference": True,
        },
        "phases": [{"phase": name, "items": items} for name, items in phases.items()],
        "considered_not_recommended": [
            {
                "code": "loc.residential_high",
                "reason": "Declined by the patient; see adjusted level.",
                "rule_ids": ["OUD-LOC-030"],
            },
            {
                "code": "moud.naltrexone_oral",
                "reason": "Physically dependent; needs 7-10 days opioid-free.",
                "rule_ids": ["OUD-MOUD-300"],
            },
        ],
        "missing_information": [
            {
                "field": "medical.hepatic_impairment",
                "label": "Hepatic impairment",
                "why_it_matters": "Decides buprenorphine formulation.",
                "impact": "safety",
            },
            {
                "field": "social.housing",
                "label": "Housing",
                "why_it_matters": "Recovery housing and level of care.",
            },
        ],
        "trace": [{"rule_id": "OUD-HR-001", "matched_facts": {}}],
    }


def long_plan() -> CarePlan:
    return CarePlan.model_validate(long_plan_dict())


def with_date(plan: CarePlan, day: date) -> CarePlan:
    return plan.model_copy(update={"assessment_date": day})
