"""Reassessment and follow-up dates, counted from the assessment date (never from the clock).

Standard cadence: next day, one week, one month, three months. It tightens when the plan
carries a high overdose risk or an urgent suicide risk, or when the patient's preference lowered the level
of care (review early whether the lower level holds). Intervals follow the plan's own rules
(OUD-HR-011: MOUD and follow-up within the week when overdose risk is high).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date, timedelta

from carepath.engine import CarePlan

__all__ = ["Visit", "follow_up_schedule"]


@dataclass(frozen=True)
class Visit:
    key: str  # stable id; the patient summary translates "schedule.<key>"
    days: int
    on: date
    what: str
    why: str


_STANDARD = (
    (1, "check_in", "Check-in (phone or visit): withdrawal, first doses, side effects, naloxone in hand"),
    (7, "first_review", "First review: dose, cravings, illicit use, engagement; book the next visits"),
    (30, "plan_review", "Plan review: medication response, psychosocial care, labs and screening results"),
    (90, "reassessment", "Reassessment of the ASAM dimensions and the level of care; update this plan"),
)
_SOONER = (
    (1, "check_in", _STANDARD[0][2]),
    (3, "early_review", "Early review: overdose risk, MOUD started, naloxone carried"),
    (7, "first_review", _STANDARD[1][2]),
    (14, "second_review", "Second review: is the current level of care holding?"),
    (30, "plan_review", _STANDARD[2][2]),
    (90, "reassessment", _STANDARD[3][2]),
)


def follow_up_schedule(plan: CarePlan) -> list[Visit]:
    alerts = {a.code: a.severity for a in plan.alerts}
    reasons = _sooner_reasons(plan, alerts)
    cadence = _SOONER if reasons else _STANDARD
    why = "; ".join(reasons) if reasons else "standard cadence"
    visits = [_visit(plan.assessment_date, d, key, what, why) for d, key, what in cadence]
    visits += _extras(plan, alerts)
    return sorted(visits, key=lambda v: (v.days, v.key))


def _sooner_reasons(plan: CarePlan, alerts: Mapping[str, str]) -> list[str]:
    reasons = []
    if "alert.high_overdose_risk" in alerts:
        reasons.append("high overdose risk")
    if alerts.get("alert.suicide_risk") == "urgent":
        reasons.append("suicide risk")
    if plan.level_of_care.adjusted_by_preference:
        reasons.append("level of care lowered by the patient's preference")
    return reasons


def _extras(plan: CarePlan, alerts: Mapping[str, str]) -> list[Visit]:
    codes = plan.codes("recommend", "consider")
    start = plan.assessment_date
    out = []
    if alerts.get("alert.suicide_risk") == "urgent" or "dd.urgent_psychiatric_evaluation" in codes:
        out.append(
            _visit(start, 0, "same_day_psychiatry", "Same day: urgent psychiatric evaluation", "suicide risk")
        )
    if "med.obstetric_comanagement" in codes or "alert.pregnancy" in alerts:
        out.append(_visit(start, 7, "obstetric_visit", "Obstetric visit (co-management)", "pregnancy"))
    if "med.ecg" in codes:
        out.append(_visit(start, 30, "ecg", "ECG (within 30 days of starting methadone)", "ECG recommended"))
    return out


def _visit(start: date, days: int, key: str, what: str, why: str) -> Visit:
    return Visit(key=key, days=days, on=start + timedelta(days=days), what=what, why=why)
