"""(intake) -> flat facts. Pure; the "as of" date is the intake's assessment_date.

A fact the intake does not let us know is left out of the result: absence is explicit.
Every threshold is a named constant in ``engine.facts`` with its source.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from . import facts as T
from .intake import Intake

__all__ = ["derive", "Facts", "asam_ratings", "DIMENSION_NAMES"]

Facts = dict[str, bool | int | float | str]

# Interaction table (drug names lower-case). Enzyme effects on methadone: F-85 note
# (unconfirmed, general knowledge) and F-48 S30 rec 5; QT drugs: F-48, F-71 S01 p.27;
# sedatives: F-53 S26. A clinician reviews any name not listed here.
METHADONE_LEVEL_LOWERING = frozenset(
    [
        "efavirenz",
        "nevirapine",
        "rifampicin",
        "rifampin",
        "rifabutin",
        "carbamazepine",
        "phenytoin",
        "phenobarbital",
        "lopinavir",
        "ritonavir",
        "st_johns_wort",
    ]
)
METHADONE_LEVEL_RAISING = frozenset(
    [
        "fluconazole",
        "voriconazole",
        "ketoconazole",
        "itraconazole",
        "clarithromycin",
        "erythromycin",
        "fluvoxamine",
        "ciprofloxacin",
    ]
)
QT_PROLONGING = frozenset(
    [
        "citalopram",
        "escitalopram",
        "haloperidol",
        "ondansetron",
        "amiodarone",
        "sotalol",
        "quetiapine",
        "ziprasidone",
        "chlorpromazine",
        "thioridazine",
        "domperidone",
        "levofloxacin",
        "moxifloxacin",
        "azithromycin",
        "erythromycin",
        "clarithromycin",
        "hydroxychloroquine",
        "dofetilide",
    ]
)
CNS_DEPRESSANTS = frozenset(
    [
        "gabapentin",
        "pregabalin",
        "zolpidem",
        "zopiclone",
        "eszopiclone",
        "quetiapine",
        "olanzapine",
        "diazepam",
        "lorazepam",
        "alprazolam",
        "clonazepam",
        "oxazepam",
        "temazepam",
        "baclofen",
        "promethazine",
        "diphenhydramine",
        "hydroxyzine",
    ]
)
KNOWN_DRUGS = METHADONE_LEVEL_LOWERING | METHADONE_LEVEL_RAISING | QT_PROLONGING | CNS_DEPRESSANTS


FACT_DECIMALS = 4
"""Numbers are rounded to 4 decimals (0.36 s of an hour; no threshold needs finer). Reason:
durable_rules' JSON parser refuses an exponent without a decimal point ("1e-05"), which
Python writes for some floats below 1e-4: ``last_use_hours: 0.00001`` made every evaluation
fail. Rounded, every fact in range is written without an exponent; both runners see it."""


def derive(intake: Intake) -> Facts:
    out: Facts = {}
    for part in _PARTS:
        for name, value in part(intake).items():
            if isinstance(value, float):
                value = round(value, FACT_DECIMALS)
            if value is not None:
                out[name] = value
    out.update(_asam_dimensions(out))
    return out


def _patient(i: Intake) -> dict[str, Any]:
    p = i.patient
    could_be = p.sex_at_birth != "male" and p.age <= T.CHILDBEARING_MAX_AGE
    return {
        "jurisdiction": i.jurisdiction,
        "age": p.age,
        "age_group": _age_group(p.age),
        "sex_at_birth": p.sex_at_birth,
        "pregnant": False if p.sex_at_birth == "male" else p.pregnant,
        "pregnancy_status_unknown": could_be and p.pregnant is None,
        "gestational_weeks": p.gestational_weeks,
        "stage": i.stage,
        "readiness": i.readiness,
    }


def _age_group(age: int) -> str:
    if age < 16:
        return "under_16"
    if age < 18:
        return "adolescent_16_17"
    return "older_adult" if age >= T.OLDER_ADULT_AGE else "adult"


def _opioids(i: Intake) -> dict[str, Any]:
    used = i.substance_use.opioids
    if used is None:
        return {}
    names = set(used)
    illicit = names - {"prescription_opioids"}
    found: dict[str, Any] = {f"uses_{o}": o in names for o in _OPIOID_NAMES}
    found["uses_illicit_opioids"] = bool(illicit)
    return found


_OPIOID_NAMES = [
    "heroin",
    "fentanyl",
    "prescription_opioids",
    "illicit_methadone",
    "illicit_buprenorphine",
    "other_opioid",
]


def _use(i: Intake) -> dict[str, Any]:
    su = i.substance_use
    hours = su.last_use_hours
    return {
        "route": su.route,
        "injects": None if su.route is None else su.route == "injection",
        "frequency": su.frequency,
        "last_use_hours": hours,
        "last_use_days": None if hours is None else round(hours / 24, 2),
        "dsm5_criteria_met": su.dsm5_criteria_met,
        "has_oud": _maybe(su.dsm5_criteria_met, lambda n: n >= T.DSM5_MILD_MIN),
        "oud_severity": _maybe(su.dsm5_criteria_met, _severity),
        "cows_score": su.cows_score,
        "cows_band": _maybe(su.cows_score, _cows_band),
        "objective_withdrawal": _maybe(su.cows_score, lambda c: c >= T.COWS_BUPRENORPHINE_START),
        "physically_dependent": su.physically_dependent,
        "benzodiazepines": su.benzodiazepines,
        "alcohol": su.alcohol,
        "stimulants": su.stimulants,
        "xylazine_exposure": su.xylazine_exposure,
        **_sedatives(i),
    }


def _maybe(value: Any, fn: Callable[[Any], Any]) -> Any:
    return None if value is None else fn(value)


def _any_of(*known: bool | None) -> bool | None:
    """Three-valued OR: true if any part is true, false only when every part is known false."""
    if any(k is True for k in known):
        return True
    return None if any(k is None for k in known) else False


def _severity(n: int) -> str:
    if n >= T.DSM5_SEVERE_MIN:
        return "severe"
    if n >= T.DSM5_MODERATE_MIN:
        return "moderate"
    return "mild" if n >= T.DSM5_MILD_MIN else "none"


def _cows_band(c: int) -> str:
    if c > T.COWS_SEVERE_ABOVE:
        return "severe"
    if c >= T.COWS_MOD_SEVERE_MIN:
        return "moderately_severe"
    if c >= T.COWS_MODERATE_MIN:
        return "moderate"
    return "mild" if c >= T.COWS_MILD_MIN else "none"


def _sedatives(i: Intake) -> dict[str, Any]:
    su = i.substance_use
    benzo, alcohol = su.benzodiazepines, su.alcohol
    risky = (benzo in ("prescribed", "illicit")) or alcohol == "heavy"
    known_safe = benzo == "none" and alcohol in ("none", "moderate")
    co_use = True if risky else (False if known_safe else None)
    seizures = i.medical.withdrawal_seizure_history
    seizure_risk = None
    if co_use is False or seizures is False:
        seizure_risk = False
    if co_use and seizures:
        seizure_risk = True
    return {
        "sedative_co_use": co_use,
        "sedative_withdrawal_seizure_risk": seizure_risk,
        "sedative_dependence": _sedative_dependence(benzo, su.benzodiazepine_daily_use, alcohol),
    }


def _sedative_dependence(benzo: str | None, daily: bool | None, alcohol: str | None) -> bool | None:
    """Daily benzodiazepines or heavy drinking: stopping can cause first-ever seizures (F-84;
    review 2026-12 §0 #5). Unknown while benzodiazepines are used and daily use is not recorded."""
    benzo_dependent = None if benzo is None else (benzo != "none" and daily)
    if benzo_dependent is None and benzo not in (None, "none") and daily is False:
        benzo_dependent = False
    alcohol_dependent = None if alcohol is None else alcohol == "heavy"
    return _any_of(benzo_dependent, alcohol_dependent)


def _long_acting(i: Intake) -> bool | None:
    used = i.substance_use.opioids
    on_agonist = i.current_treatment.moud in ("methadone", "buprenorphine")
    if on_agonist or (used and {"illicit_methadone", "illicit_buprenorphine"} & set(used)):
        return True
    if used is None and i.current_treatment.moud is None:
        return None
    return False


def _slow_to_clear(i: Intake) -> bool:
    """Methadone, buprenorphine or fentanyl, or not known: the long withdrawal and naltrexone
    intervals apply (F-25, F-26, F-58; the safe side when the opioids are not recorded)."""
    used = i.substance_use.opioids
    if _long_acting(i) is not False:
        return True
    return bool(used and "fentanyl" in used)


def _timing(i: Intake) -> dict[str, Any]:
    hours = i.substance_use.last_use_hours
    long_acting = _long_acting(i)
    gate = T.BUP_GATE_LONG_ACTING_H if long_acting else T.BUP_GATE_SHORT_ACTING_H
    on_agonist = i.current_treatment.moud in ("methadone", "buprenorphine")
    slow = _slow_to_clear(i)
    interval_h = T.NALTREXONE_WASHOUT_LONG_H if slow else T.NALTREXONE_WASHOUT_SHORT_H
    washout_met = False if on_agonist else (None if hours is None else hours >= interval_h)
    return {
        "long_acting_opioid_exposure": long_acting,
        "buprenorphine_time_gate_met": None if hours is None else hours >= gate,
        "withdrawal_resolved": _withdrawal_resolved(hours, i.substance_use.cows_score, slow),
        "naltrexone_interval_days": None if washout_met is None else interval_h // 24,
        "naltrexone_washout_met": washout_met,
    }


def _withdrawal_resolved(hours: float | None, cows: int | None, slow: bool) -> bool | None:
    """Withdrawal is over only when enough time has passed AND a measured COWS is below 8.

    Unmeasured COWS leaves it unknown (never "no withdrawal"), so no plan says "withdrawal has
    passed" without an assessment (review 2026-12 §0 #1, S1)."""
    if hours is None:
        return None
    if cows is not None and cows >= T.COWS_BUPRENORPHINE_START:
        return False
    if hours <= (T.WITHDRAWAL_OVER_LONG_ACTING_H if slow else T.WITHDRAWAL_OVER_H):
        return False
    return None if cows is None else True


def _treatment(i: Intake) -> dict[str, Any]:
    ct = i.current_treatment
    moud: str | None = ct.moud
    if moud is None and ("moud" in ct.model_fields_set or i.stage == "post_withdrawal"):
        moud = "none"
    high_methadone = None
    if moud is not None:
        high_methadone = moud == "methadone" and (ct.dose_mg or 0) > T.METHADONE_SWITCH_MAX_MG
    return {
        "current_moud": moud,
        "adequate_moud_dose": _adequate_dose(moud, ct.dose_mg),
        "on_moud": None if moud is None else moud != "none",
        "moud_dose_mg": ct.dose_mg,
        "months_on_moud": ct.months_on_moud,
        "moud_stable": ct.stable,
        "on_high_dose_methadone": high_methadone,
    }


def _adequate_dose(moud: str | None, dose: float | None) -> bool | None:
    """Maintenance dose in the usual effective range (F-46: methadone 60-120 mg; F-51:
    buprenorphine 16 mg/day or more); unknown without a dose, not applicable to naltrexone."""
    floor = {"methadone": T.METHADONE_ADEQUATE_MG, "buprenorphine": T.BUPRENORPHINE_ADEQUATE_MG}.get(
        str(moud)
    )
    if floor is None or dose is None:
        return None
    return dose >= floor


def _history(i: Intake) -> dict[str, Any]:
    h = i.history
    prior = h.prior_moud
    found: dict[str, Any] = {
        "withdrawal_episodes": h.withdrawal_episodes,
        "outpatient_episodes": h.outpatient_episodes,
        "residential_episodes": h.residential_episodes,
        "relapses_after_outpatient": h.relapses_after_outpatient,
        "overdoses_last_year": h.overdoses_last_year,
        "repeated_outpatient_failure": _maybe(
            h.relapses_after_outpatient, lambda n: n >= T.REPEATED_RELAPSE_MIN
        ),
    }
    if prior is not None:
        found.update({f"prior_{m}": m in prior for m in ("methadone", "buprenorphine", "naltrexone")})
    return found


def _mental_health(i: Intake) -> dict[str, Any]:
    mh = i.mental_health
    found: dict[str, Any] = {
        "suicidal_ideation": mh.suicidal_ideation,
        "recent_suicide_attempt": mh.recent_suicide_attempt,
        "in_psychiatric_care": mh.in_psychiatric_care,
    }
    if mh.conditions is not None:
        conds = set(mh.conditions)
        found.update({f"mh_{c}": c in conds for c in _CONDITION_NAMES})
        found["has_psychiatric_condition"] = bool(conds)
        found["severe_mental_illness"] = bool(conds & {"bipolar", "psychosis"})
    return found


_CONDITION_NAMES = [
    "depression",
    "anxiety",
    "ptsd",
    "bipolar",
    "psychosis",
    "personality_disorder",
    "adhd",
    "other",
]


def _medical(i: Intake) -> dict[str, Any]:
    m = i.medical
    found: dict[str, Any] = {
        "qtc_ms": m.qtc_ms,
        "qtc_band": _maybe(m.qtc_ms, _qtc_band),
        "hepatic_impairment": m.hepatic_impairment,
        "hiv": m.hiv,
        "hcv": m.hcv,
        "chronic_pain": m.chronic_pain,
        "prescribed_opioid_analgesics": m.prescribed_opioid_analgesics,
        "upcoming_surgery": m.upcoming_surgery,
        "withdrawal_seizure_history": m.withdrawal_seizure_history,
    }
    if m.interacting_medications is not None:
        found.update(_interactions(m.interacting_medications))
    return found


def _qtc_band(ms: int) -> str:
    if ms > T.QTC_PROLONGED_ABOVE:
        return "prolonged"
    return "borderline" if ms >= T.QTC_BORDERLINE_MIN else "normal"


def _drug_key(name: str) -> str:
    return name.strip().lower().replace("'", "").replace(" ", "_").replace("-", "_")


def _interactions(names: list[str]) -> dict[str, Any]:
    drugs = {_drug_key(n) for n in names}
    qt = sorted(drugs & QT_PROLONGING)
    return {
        "qt_prolonging_drugs": ", ".join(qt) if qt else None,
        "takes_methadone_level_lowering_drug": bool(drugs & METHADONE_LEVEL_LOWERING),
        "takes_methadone_level_raising_drug": bool(drugs & METHADONE_LEVEL_RAISING),
        "takes_qt_prolonging_drug": bool(drugs & QT_PROLONGING),
        "takes_cns_depressant_drug": bool(drugs & CNS_DEPRESSANTS),
        "has_unrecognised_medication": bool(drugs - KNOWN_DRUGS),
    }


def _social(i: Intake) -> dict[str, Any]:
    s = i.social
    released = _recently_released(i)
    involved = None
    if s.legal is not None or released is not None:
        involved = (s.legal not in (None, "none")) or bool(released)
    return {
        "can_leave_work": s.can_leave_work,
        "caregiver": s.caregiver,
        "privacy_concern": s.privacy_concern,
        "housing": s.housing,
        "home_supports_recovery": s.home_supports_recovery,
        "support_system": s.support_system,
        "legal": s.legal,
        "days_since_release": s.days_since_release,
        "recently_released": released,
        "criminal_justice_involved": involved,
    }


def _recently_released(i: Intake) -> bool | None:
    days = i.social.days_since_release
    return None if days is None else days <= T.RELEASE_HIGH_RISK_DAYS


def _preferences(i: Intake) -> dict[str, Any]:
    p = i.preferences
    return {
        "preferred_medication": p.medication,
        "preferred_setting": p.setting,
        "goal": p.goal,
        "declines_counselling": p.declines_counselling,
    }


def _overdose(i: Intake) -> dict[str, Any]:
    su = i.substance_use
    released = _recently_released(i)
    abstinent = _maybe(su.last_use_hours, lambda h: h >= T.NALTREXONE_WASHOUT_SHORT_H)
    lost = _lost_tolerance(i, released, abstinent)
    factors = [
        (i.history.overdoses_last_year or 0) > 0,
        bool(released),
        bool(lost),
        bool(su.opioids and "fentanyl" in su.opioids),
        su.benzodiazepines in ("prescribed", "illicit") or su.alcohol == "heavy",
        su.route == "injection",
        bool(su.xylazine_exposure),
    ]
    return {
        "loss_of_tolerance": lost,
        "recent_loss_of_tolerance": _recent_loss(i, lost, released),
        "overdose_risk_factors": sum(factors),
    }


def _recent_loss(i: Intake, lost: bool | None, released: bool | None) -> bool | None:
    """Tolerance lost within the last 4 weeks (after detox, release, or under 28 days opioid-free):
    the window of highest overdose risk (F-82). Months of remission keep the warning, not the alarm."""
    if lost is not True:
        return lost
    if i.stage == "post_withdrawal" or released:
        return True
    hours = i.substance_use.last_use_hours
    return None if hours is None else hours <= T.RECENT_ABSTINENCE_DAYS * 24


def _lost_tolerance(i: Intake, released: bool | None, abstinent: bool | None) -> bool | None:
    """After detox; or, off agonists, after release or >= 7 days opioid-free (F-20, F-51, F-82).

    Release on continued methadone or buprenorphine keeps tolerance. An unrecorded MOUD
    counts as none (the warning is the safe side of the doubt); with nothing known to decide
    it, the answer is unknown, so missing information names the fields.
    """
    if i.stage == "post_withdrawal":
        return True
    if i.current_treatment.moud in ("methadone", "buprenorphine"):
        return False
    after_detox = None if i.stage is None else False  # post_withdrawal returned above
    return _any_of(after_detox, released, abstinent)


_PARTS: tuple[Callable[[Intake], dict[str, Any]], ...] = (
    _patient,
    _opioids,
    _use,
    _timing,
    _treatment,
    _history,
    _mental_health,
    _medical,
    _social,
    _preferences,
    _overdose,
)


# --- ASAM dimensions (F-39, design inference; F-34 S42 for the 0-4 scale) -----------------

DIMENSION_NAMES = {
    1: "Acute intoxication and withdrawal potential",
    2: "Biomedical conditions and complications",
    3: "Emotional, behavioural or cognitive conditions",
    4: "Readiness to change",
    5: "Relapse, continued use or continued problem potential",
    6: "Recovery and living environment",
}
"""ASAM Criteria 3rd-edition dimension numbering (F-34); the codes use 3rd-edition levels."""

Rating = tuple[int, str]


def _asam_dimensions(f: Facts) -> dict[str, int]:
    ratings = asam_ratings(f)
    dims = {f"asam_d{n}": rating for n, (rating, _) in ratings.items()}
    dims["safety_dimension_max"] = max(ratings[1][0], ratings[2][0], ratings[3][0])
    return dims


def asam_ratings(f: Facts) -> dict[int, Rating]:
    """Each dimension's risk (0-4) and the finding behind it, in the clinician's words."""
    return {1: _d1(f), 2: _d2(f), 3: _d3(f), 4: _d4(f), 5: _d5(f), 6: _d6(f)}


def _cows(f: Facts) -> str:
    return f"COWS {f['cows_score']}" if "cows_score" in f else "COWS not measured"


def _d1(f: Facts) -> Rating:
    seizure = f.get("sedative_withdrawal_seizure_risk") is True
    dependent = f.get("sedative_dependence") is True
    withdrawing = f.get("stage") == "in_withdrawal"
    band = f.get("cows_band")
    if seizure and band == "severe":
        return 4, f"Severe opioid withdrawal ({_cows(f)}) with sedative/alcohol withdrawal-seizure history"
    if seizure:
        return 3, "Sedative or alcohol co-use with a history of withdrawal seizures or delirium"
    if band == "severe":
        return 3, f"Severe opioid withdrawal ({_cows(f)})"
    if dependent and withdrawing:
        return 3, "In withdrawal with daily benzodiazepine use or heavy drinking (seizure risk on stopping)"
    if band in ("moderate", "moderately_severe"):
        return 2, f"Moderate opioid withdrawal ({_cows(f)})"
    if dependent:
        return 2, "Daily benzodiazepine use or heavy drinking: withdrawal risk if stopped"
    if band is None and withdrawing:
        return 2, "In withdrawal; COWS not measured"
    if band == "mild":
        return 1, f"Mild opioid withdrawal ({_cows(f)})"
    return 0, f"No withdrawal signs ({_cows(f)})" if band else "No withdrawal recorded"


def _d2(f: Facts) -> Rating:
    if f.get("hepatic_impairment") == "severe":
        return 3, "Severe hepatic impairment (Child-Pugh C)"
    if f.get("qtc_band") == "prolonged":
        return 2, f"QTc {f.get('qtc_ms')} ms (over 500)"
    if f.get("hepatic_impairment") == "moderate":
        return 2, "Moderate hepatic impairment (Child-Pugh B)"
    flags = {
        "pregnant": "pregnancy",
        "hiv": "HIV",
        "hcv": "hepatitis C",
        "chronic_pain": "chronic pain",
        "upcoming_surgery": "surgery planned",
    }
    found = [label for key, label in flags.items() if f.get(key) is True]
    if found:
        return 1, "Stable medical needs: " + ", ".join(found)
    return 0, "No biomedical complications recorded"


def _d3(f: Facts) -> Rating:
    si = f.get("suicidal_ideation")
    if si == "active_with_plan":
        return 4, "Active suicidal ideation with a plan"
    if f.get("recent_suicide_attempt") is True:
        return 4, "Recent suicide attempt"
    if si == "active_no_plan":
        return 3, "Active suicidal ideation without a plan"
    if si == "passive":
        return 2, "Passive suicidal ideation"
    if f.get("severe_mental_illness") is True:
        return 2, "Serious mental illness (psychosis or bipolar disorder)"
    if f.get("has_psychiatric_condition") is True:
        return 1, "Co-occurring psychiatric condition, no suicidal ideation recorded"
    return 0, "No co-occurring psychiatric condition recorded"


def _d4(f: Facts) -> Rating:
    stage = f.get("readiness")
    rating = {"precontemplation": 3, "contemplation": 2, "preparation": 1}.get(str(stage), 0)
    return rating, f"Stage of change: {stage}" if stage else "Stage of change not recorded"


def _d5(f: Facts) -> Rating:
    if f.get("repeated_outpatient_failure") is True:
        n = f.get("relapses_after_outpatient")
        return 3, f"{n} relapses after outpatient care"
    if f.get("stage") == "remission":
        return 0, "In remission"
    overdoses = int(f.get("overdoses_last_year", 0))
    if f.get("frequency") == "daily" or overdoses > 0:
        why = "daily use" if f.get("frequency") == "daily" else f"{overdoses} overdose(s) in the last year"
        return 2, f"Continued use: {why}"
    return 1, "Use not daily; no repeated relapse recorded"


def _d6(f: Facts) -> Rating:
    homeless = f.get("housing") == "homeless"
    unsafe_home = f.get("home_supports_recovery") is False
    no_support = f.get("support_system") == "none"
    if homeless and (unsafe_home or no_support):
        return 4, "Homeless without support" if no_support else "Homeless; home does not support recovery"
    if homeless:
        return 3, "Homeless"
    if unsafe_home:
        return 3, "Home does not support recovery (others using, or violence)"
    if f.get("housing") == "unstable":
        return 2, "Unstable housing"
    if no_support:
        return 2, "No support system"
    if f.get("support_system") == "limited":
        return 1, "Limited support"
    return 0, "Stable housing and support" if f.get("housing") else "Living situation not recorded"
