"""The plan at a glance: diagnosis, the six ASAM dimensions, the medication decision, the next
visit and what the intake leaves unknown. Pure functions of the facts and the assembled items.
"""

from __future__ import annotations

from datetime import date, timedelta

from .derive import DIMENSION_NAMES, Facts, asam_ratings
from .labels import field_label
from .plan import (
    Alert,
    Diagnosis,
    DimensionRating,
    Item,
    LevelOfCare,
    MedicationDecision,
    MedicationOption,
    NextVisit,
    NotRecommended,
)

__all__ = [
    "diagnosis",
    "dimensions",
    "medication_decision",
    "next_visit",
    "incomplete",
    "AVAILABLE",
    "FAMILIES",
]

# --- diagnosis ------------------------------------------------------------------------------

_ICD10 = {
    # (severity group, situation) -> ICD-10-CM (DSM-5-TR coding of opioid use disorder and
    # opioid withdrawal; S23). Mild = "opioid abuse" F11.1x, moderate/severe = "dependence" F11.2x.
    ("mild", "current"): "F11.10",
    ("mild", "remission"): "F11.11",
    ("mild", "withdrawal"): "F11.13",
    ("moderate_severe", "current"): "F11.20",
    ("moderate_severe", "remission"): "F11.21",
    ("moderate_severe", "withdrawal"): "F11.23",
}


def diagnosis(facts: Facts) -> Diagnosis:
    count = facts.get("dsm5_criteria_met")
    severity = facts.get("oud_severity")
    if count is None or severity is None:
        return Diagnosis(
            dsm5_criteria_met=None,
            severity=None,
            icd10_cm=None,
            text="Opioid use disorder: DSM-5 criteria not recorded (severity unknown)",
        )
    if severity == "none":
        return Diagnosis(
            dsm5_criteria_met=int(count),
            severity="none",
            icd10_cm=None,
            text=f"No opioid use disorder diagnosis: {count} of 11 DSM-5 criteria (2 needed)",
        )
    group = "mild" if severity == "mild" else "moderate_severe"
    situation = _situation(facts)
    code = _ICD10[(group, situation)]
    extra = {"remission": ", in remission", "withdrawal": ", with opioid withdrawal", "current": ""}[
        situation
    ]
    return Diagnosis(
        dsm5_criteria_met=int(count),
        severity=severity,  # type: ignore[arg-type]
        icd10_cm=code,
        text=f"Opioid use disorder, {severity} ({count}/11 DSM-5 criteria){extra} - ICD-10-CM {code}",
    )


def _situation(facts: Facts) -> str:
    if facts.get("stage") == "remission":
        return "remission"
    if facts.get("stage") == "in_withdrawal" or facts.get("objective_withdrawal") is True:
        return "withdrawal"
    return "current"


def dimensions(facts: Facts) -> list[DimensionRating]:
    return [
        DimensionRating(dimension=n, name=DIMENSION_NAMES[n], rating=rating, finding=finding)
        for n, (rating, finding) in asam_ratings(facts).items()
    ]


# --- the medication decision ------------------------------------------------------------------

FAMILIES: dict[str, tuple[str, ...]] = {
    "methadone": ("moud.methadone",),
    "buprenorphine": (
        "moud.buprenorphine",
        "moud.buprenorphine_low_dose_induction",
        "moud.buprenorphine_extended_release",
    ),
    "naltrexone": ("moud.naltrexone_xr", "moud.naltrexone_oral"),
    "diamorphine": ("moud.diamorphine",),
}
AVAILABLE: dict[str, tuple[str, ...]] = {
    "US": ("buprenorphine", "methadone", "naltrexone"),
    "UK": ("methadone", "buprenorphine", "naltrexone"),
    "DE": ("buprenorphine", "methadone", "naltrexone", "diamorphine"),
    "CA": ("buprenorphine", "methadone", "naltrexone"),
}
"""Medications for OUD available in each jurisdiction (F-42, F-56, F-61, F-94, F-95); diamorphine
only in Germany (licensed facilities)."""
_LABELS = {
    "methadone": "Methadone",
    "buprenorphine": "Buprenorphine",
    "naltrexone": "Naltrexone",
    "diamorphine": "Diamorphine (heroin-assisted treatment)",
}
_NOT_OFFERED = {
    "naltrexone": (
        "Not offered now: naltrexone is for a patient who wants it, once opioid-free (after withdrawal)."
    ),
    "diamorphine": (
        "Not offered now: only after substitution treatment that has not worked (BtMVV §5a criteria)."
    ),
}
_STATUS_ORDER = {"continue": 0, "recommend": 1, "consider": 2, "later": 3, "avoid": 4, "not_offered": 5}
_KIND_STATUS = {"recommend": 1, "consider": 2}


def medication_decision(facts: Facts, items: list[Item], why_not: list[NotRecommended]) -> MedicationDecision:
    preference = facts.get("preferred_medication")
    current = facts.get("current_moud")
    available = AVAILABLE.get(str(facts.get("jurisdiction")), AVAILABLE["US"])
    by_code = {i.code: i for i in items}
    options = [
        _option(med, by_code, why_not, preference == med, str(current) if current else None)
        for med in available
    ]
    declined = preference == "no_medication"
    note = None
    if declined:
        note = (
            "The patient declines medication for now (informed refusal): record the discussion of "
            "benefits and risks, keep naloxone, and offer medication again at each visit."
        )
    options.sort(key=lambda o: (_STATUS_ORDER[o.status], available.index(o.medication)))
    return MedicationDecision(
        preference=str(preference) if preference is not None else None,
        declined=declined,
        note=note,
        options=options,
    )


def _option(
    med: str, by_code: dict[str, Item], why_not: list[NotRecommended], preferred: bool, on: str | None
) -> MedicationOption:
    label, current = _LABELS[med], on == med
    if current and "moud.continue_current" in by_code:
        item = by_code["moud.continue_current"]
        if item.kind in ("recommend", "consider"):
            return _from_item(med, label, "continue", item, preferred, current)
    items = [by_code[c] for c in FAMILIES[med] if c in by_code]
    avoid = [i for i in items if i.kind == "avoid"]
    if avoid:
        return _from_item(med, label, "avoid", avoid[0], preferred, current)
    positive = [i for i in items if i.kind in _KIND_STATUS]
    if positive:
        best = min(
            positive, key=lambda i: (i.start != "now", _KIND_STATUS[i.kind], FAMILIES[med].index(i.code))
        )
        status = best.kind if best.start == "now" else "later"
        return _from_item(med, label, status, best, preferred, current)
    return _not_offered(med, label, items, why_not, preferred, on)


def _from_item(
    med: str, label: str, status: str, item: Item, preferred: bool, current: bool
) -> MedicationOption:
    return MedicationOption(
        medication=med,  # type: ignore[arg-type]
        label=label,
        status=status,  # type: ignore[arg-type]
        code=item.code,
        reason=item.text,
        start=item.start,
        start_condition=item.start_condition,
        preferred=preferred,
        current=current,
        rule_ids=item.rule_ids,
    )


def _not_offered(
    med: str,
    label: str,
    items: list[Item],
    why_not: list[NotRecommended],
    preferred: bool,
    on: str | None,
) -> MedicationOption:
    cautions = [i for i in items if i.kind == "caution"]
    reasons = [w for w in why_not if w.code in FAMILIES[med]]
    current = on == med
    if cautions:
        reason, code, rule_ids = cautions[0].text, cautions[0].code, cautions[0].rule_ids
    elif med in _NOT_OFFERED:
        reason, code, rule_ids = _NOT_OFFERED[med], None, []
    elif on in _LABELS and not current and med != "diamorphine":
        reason = (
            f"Not offered while {on} continues: a change of medication is a planned switch, not a new start."
        )
        code, rule_ids = None, []
    elif reasons:
        reason = "Not offered now: " + reasons[0].reason.split(" did not apply: ", 1)[-1]
        code, rule_ids = reasons[0].code, reasons[0].rule_ids
    else:
        reason, code, rule_ids = _NOT_OFFERED.get(med, "No rule offers it for this patient now."), None, []
    return MedicationOption(
        medication=med,  # type: ignore[arg-type]
        label=label,
        status="not_offered",
        code=code,
        reason=reason,
        preferred=preferred,
        current=current,
        rule_ids=rule_ids,
    )


# --- next visit -------------------------------------------------------------------------------

_STARTS = {"moud.buprenorphine", "moud.methadone", "moud.buprenorphine_low_dose_induction"}


def next_visit(
    facts: Facts, assessment: date, alerts: list[Alert], level: LevelOfCare, items: list[Item]
) -> NextVisit:
    """The first review after this visit (design inference from the plan's own rules: same day
    for suicide risk, the next day during starts and withdrawal management, within a week when
    overdose risk is high or preference lowered the level, monthly when stable)."""
    days, reason = _next(facts, alerts, level, items)
    return NextVisit(within_days=days, on=assessment + timedelta(days=days), reason=reason)


def _next(facts: Facts, alerts: list[Alert], level: LevelOfCare, items: list[Item]) -> tuple[int, str]:
    severity = {a.code: a.severity for a in alerts}
    now = {i.code for i in items if i.kind in ("recommend", "consider") and i.start == "now"}
    if severity.get("alert.suicide_risk") == "urgent":
        return 0, "Same-day psychiatric evaluation (suicide risk)"
    if now & _STARTS and facts.get("on_moud") is not True:
        return 1, "Next-day review of the first doses (withdrawal, sedation, dose)"
    if (
        any(c.startswith("wm.") and c != "wm.not_indicated" for c in now)
        and facts.get("stage") == "in_withdrawal"
    ):
        return 1, "Daily review during withdrawal management"
    if "alert.high_overdose_risk" in severity:
        return 7, "Within 7 days: high overdose risk"
    if "urgent" in severity.values():
        return 7, "Within 7 days: urgent finding (see alerts)"
    if level.adjusted_by_preference:
        return 7, "Within 7 days: the level of care was lowered by preference or logistics"
    if facts.get("moud_stable") is True or facts.get("stage") == "remission":
        return 30, "Monthly review (stable)"
    return 7, "First review within 7 days"


# --- incomplete intake --------------------------------------------------------------------------

_CORE = (
    ("dsm5_criteria_met", "substance_use.dsm5_criteria_met"),
    ("current_moud", "current_treatment.moud"),
)


def incomplete(facts: Facts) -> list[str]:
    """Core facts the intake leaves unknown; the plan is then marked incomplete."""
    missing = [field_label(path) for fact, path in _CORE if fact not in facts]
    if "physically_dependent" not in facts and "cows_score" not in facts:
        dependence, cows = (field_label(f"substance_use.{f}") for f in ("physically_dependent", "cows_score"))
        missing.append(f"{dependence} or {cows}")
    if facts.get("pregnancy_status_unknown") is True:
        missing.append(field_label("patient.pregnant"))
    return missing
