"""Symbolic msgids for patient texts: the texts themselves live only in the catalogue.

Listed here so that ``pybabel extract`` keeps them in ``messages.pot`` (English included:
``reports/locale/en``). A test checks that every code in the rule pack has one, in every
language. Add a code here and to each .po file when the vocabulary grows.
"""

from __future__ import annotations

__all__ = ["PATIENT_MSGIDS"]


def N_(message: str) -> str:
    return message


PATIENT_MSGIDS: tuple[str, ...] = (
    N_("code.alert.suicide_risk"),
    N_("code.alert.pregnancy"),
    N_("code.alert.qtc_prolonged"),
    N_("code.alert.sedative_co_use"),
    N_("code.alert.high_overdose_risk"),
    N_("code.alert.hepatic_impairment"),
    N_("code.alert.precipitated_withdrawal_risk"),
    N_("code.alert.drug_interaction"),
    N_("code.loc.early_intervention"),
    N_("code.loc.outpatient"),
    N_("code.loc.otp"),
    N_("code.loc.intensive_outpatient"),
    N_("code.loc.partial_hospitalization"),
    N_("code.loc.residential_low"),
    N_("code.loc.residential_high"),
    N_("code.loc.inpatient_monitored"),
    N_("code.loc.inpatient_managed"),
    N_("code.loc.psychiatric_emergency"),
    N_("code.wm.not_indicated"),
    N_("code.wm.ambulatory"),
    N_("code.wm.inpatient"),
    N_("code.wm.agonist_assisted"),
    N_("code.wm.symptomatic"),
    N_("code.wm.sedative_withdrawal"),
    N_("code.wm.ultra_rapid"),
    N_("code.moud.methadone"),
    N_("code.moud.buprenorphine"),
    N_("code.moud.buprenorphine_low_dose_induction"),
    N_("code.moud.buprenorphine_extended_release"),
    N_("code.moud.naltrexone_xr"),
    N_("code.moud.naltrexone_oral"),
    N_("code.moud.continue_current"),
    N_("code.moud.taper"),
    N_("code.moud.diamorphine"),
    N_("code.med.ecg"),
    N_("code.med.obstetric_comanagement"),
    N_("code.med.hepatology"),
    N_("code.med.pain_management"),
    N_("code.med.perioperative_plan"),
    N_("code.psy.motivational_interviewing"),
    N_("code.psy.cbt"),
    N_("code.psy.contingency_management"),
    N_("code.psy.family_therapy"),
    N_("code.psy.group"),
    N_("code.psy.individual_counselling"),
    N_("code.psy.adolescent_family_based"),
    N_("code.dd.integrated_care"),
    N_("code.dd.psychiatric_evaluation"),
    N_("code.dd.urgent_psychiatric_evaluation"),
    N_("code.dd.assertive_community_treatment"),
    N_("code.hr.naloxone"),
    N_("code.hr.overdose_education"),
    N_("code.hr.tolerance_loss_warning"),
    N_("code.hr.infectious_disease_screening"),
    N_("code.hr.sterile_supplies"),
    N_("code.hr.reduction_programme"),
    N_("code.aft.relapse_prevention"),
    N_("code.aft.mutual_help"),
    N_("code.aft.recovery_housing"),
    N_("code.aft.follow_up"),
    N_("code.aft.peer_support"),
    N_("code.aft.case_management"),
    N_("medicine.methadone"),
    N_("medicine.buprenorphine"),
    N_("medicine.naltrexone"),
    N_("schedule.check_in"),
    N_("schedule.early_review"),
    N_("schedule.first_review"),
    N_("schedule.second_review"),
    N_("schedule.plan_review"),
    N_("schedule.reassessment"),
    N_("schedule.same_day_psychiatry"),
    N_("schedule.obstetric_visit"),
    N_("schedule.ecg"),
)
