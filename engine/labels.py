"""The clinician's wording for every intake field (contract §1): a label and a short help text.

Used wherever a field is named to a person: the web form, the FHIR Questionnaire, and the
plan's missing information. Keys are contract paths; a path missing here gets a humanised label.
"""

from __future__ import annotations

__all__ = ["FIELD_LABELS", "field_label", "field_help"]

FIELD_LABELS: dict[str, tuple[str, str]] = {
    "assessment_date": ("Assessment date", "The 'as of' date of this assessment."),
    "jurisdiction": ("Jurisdiction", "Changes setting rules (e.g. methadone via OTP in the US)."),
    "patient.id": ("Patient ID / MRN", "Optional. Never logged."),
    "patient.name": ("Patient name", "Optional. Never logged."),
    "patient.age": ("Age (years)", "12 to 110."),
    "patient.sex_at_birth": ("Sex at birth", ""),
    "patient.pregnant": ("Pregnant", ""),
    "patient.gestational_weeks": ("Gestational age (weeks)", "Only when pregnant."),
    "stage": ("Stage in the care process", ""),
    "readiness": ("Readiness (stage of change)", ""),
    "substance_use.opioids": ("Opioids used", ""),
    "substance_use.route": ("Main route", ""),
    "substance_use.frequency": ("Frequency", ""),
    "substance_use.last_use_hours": ("Hours since last opioid use", ""),
    "substance_use.dsm5_criteria_met": (
        "DSM-5 OUD criteria met (0-11)",
        "2-3 mild, 4-5 moderate, 6+ severe.",
    ),
    "substance_use.cows_score": ("COWS score (0-48)", "Clinical Opiate Withdrawal Scale, when measured."),
    "substance_use.physically_dependent": ("Physically dependent", ""),
    "substance_use.benzodiazepines": ("Benzodiazepines", ""),
    "substance_use.benzodiazepine_daily_use": (
        "Benzodiazepines taken every day",
        "Daily use means dependence is likely: stopping abruptly can cause seizures.",
    ),
    "substance_use.alcohol": ("Alcohol", ""),
    "substance_use.stimulants": ("Stimulant use", ""),
    "substance_use.xylazine_exposure": ("Xylazine exposure", ""),
    "current_treatment.moud": ("Current MOUD", ""),
    "current_treatment.dose_mg": ("Daily dose (mg)", "Needs a current MOUD."),
    "current_treatment.months_on_moud": ("Months on MOUD", "Needs a current MOUD."),
    "current_treatment.stable": ("Stable on treatment", "No illicit use, engaged."),
    "history.withdrawal_episodes": ("Withdrawal-only (detox) episodes", ""),
    "history.outpatient_episodes": ("Outpatient episodes", ""),
    "history.residential_episodes": ("Residential episodes", ""),
    "history.relapses_after_outpatient": ("Relapses after outpatient treatment", ""),
    "history.prior_moud": ("Prior MOUD", ""),
    "history.overdoses_last_year": ("Overdoses in the last year", ""),
    "mental_health.conditions": ("Mental health conditions", ""),
    "mental_health.suicidal_ideation": ("Suicidal ideation", ""),
    "mental_health.recent_suicide_attempt": ("Recent suicide attempt", ""),
    "mental_health.in_psychiatric_care": ("In psychiatric care", ""),
    "medical.qtc_ms": ("QTc (ms)", "From the latest ECG."),
    "medical.hepatic_impairment": ("Hepatic impairment", ""),
    "medical.hiv": ("HIV", ""),
    "medical.hcv": ("Hepatitis C", ""),
    "medical.chronic_pain": ("Chronic pain", ""),
    "medical.prescribed_opioid_analgesics": ("Prescribed opioid analgesics", ""),
    "medical.upcoming_surgery": ("Upcoming surgery", ""),
    "medical.withdrawal_seizure_history": (
        "History of withdrawal seizures or DTs",
        "Alcohol or benzodiazepine withdrawal.",
    ),
    "medical.interacting_medications": (
        "Interacting medications",
        "Comma-separated, e.g. efavirenz, rifampicin; 'none' if there are none.",
    ),
    "social.can_leave_work": ("Can step away from work for residential care", ""),
    "social.caregiver": ("Cares for children or dependants", ""),
    "social.privacy_concern": ("Needs discreet care", "E.g. licensed professional."),
    "social.housing": ("Housing", ""),
    "social.home_supports_recovery": ("Home supports recovery", "No: others using at home, violence."),
    "social.support_system": ("Support system", ""),
    "social.legal": ("Legal situation", ""),
    "social.days_since_release": ("Days since release from prison or jail", "When recent."),
    "preferences.medication": ("Preferred medication", ""),
    "preferences.setting": ("Preferred setting", ""),
    "preferences.goal": ("Goal", ""),
    "preferences.declines_counselling": ("Declines counselling", ""),
    "preferences.language": ("Language of the patient summary", ""),
}


def field_label(path: str) -> str:
    """``medical.qtc_ms`` -> ``QTc (ms)``; unknown paths get their last part, humanised."""
    found = FIELD_LABELS.get(path)
    return found[0] if found else path.rsplit(".", 1)[-1].replace("_", " ").capitalize()


def field_help(path: str) -> str:
    found = FIELD_LABELS.get(path)
    return found[1] if found else ""
