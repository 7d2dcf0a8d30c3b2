"""What the rule pack must cover, checked on the packaged pack (not on the vignettes):
size, every row of the knowledge base's condensed table (§12), every contract code, the
jurisdictions of §11, and the citation discipline of every rule."""

from __future__ import annotations

import re
from collections import Counter

import pytest

from carepath.engine import RulePack

# docs/clinical/knowledge-base.md §12, "Condensed rule table for implementation".
CONDENSED_TABLE_ROWS = [f"R{n}" for n in range(1, 21)]

# docs/contract.md §3: the controlled vocabulary (add codes, never rename).
CONTRACT_CODES = [
    "loc.early_intervention",
    "loc.outpatient",
    "loc.otp",
    "loc.intensive_outpatient",
    "loc.partial_hospitalization",
    "loc.residential_low",
    "loc.residential_high",
    "loc.inpatient_monitored",
    "loc.inpatient_managed",
    "loc.psychiatric_emergency",
    "wm.not_indicated",
    "wm.ambulatory",
    "wm.inpatient",
    "wm.agonist_assisted",
    "wm.symptomatic",
    "wm.sedative_withdrawal",
    "wm.ultra_rapid",
    "moud.methadone",
    "moud.buprenorphine",
    "moud.buprenorphine_low_dose_induction",
    "moud.buprenorphine_extended_release",
    "moud.naltrexone_xr",
    "moud.naltrexone_oral",
    "moud.continue_current",
    "moud.taper",
    "moud.diamorphine",
    "psy.motivational_interviewing",
    "psy.cbt",
    "psy.contingency_management",
    "psy.family_therapy",
    "psy.group",
    "psy.individual_counselling",
    "psy.adolescent_family_based",
    "dd.integrated_care",
    "dd.psychiatric_evaluation",
    "dd.urgent_psychiatric_evaluation",
    "dd.assertive_community_treatment",
    "hr.naloxone",
    "hr.overdose_education",
    "hr.tolerance_loss_warning",
    "hr.infectious_disease_screening",
    "hr.sterile_supplies",
    "hr.reduction_programme",
    "aft.relapse_prevention",
    "aft.mutual_help",
    "aft.recovery_housing",
    "aft.follow_up",
    "aft.peer_support",
    "aft.case_management",
    "med.ecg",
    "med.obstetric_comanagement",
    "med.hepatology",
    "med.pain_management",
    "med.perioperative_plan",
    "alert.suicide_risk",
    "alert.pregnancy",
    "alert.qtc_prolonged",
    "alert.sedative_co_use",
    "alert.high_overdose_risk",
    "alert.hepatic_impairment",
    "alert.precipitated_withdrawal_risk",
    "alert.drug_interaction",
]

CONTRAINDICATION_FACTS = {
    "pregnant": "pregnancy",
    "qtc_band": "QTc",
    "hepatic_impairment": "hepatic impairment",
    "sedative_co_use": "sedative co-use",
    "takes_methadone_level_raising_drug": "interacting drugs",
    "takes_qt_prolonging_drug": "interacting drugs",
}


def _then_codes(pack: RulePack) -> set[str]:
    return {t.code for r in pack.rules for t in r.rule.then}


def test_at_least_80_active_rules(pack: RulePack) -> None:
    assert len(pack.rules) >= 80


@pytest.mark.parametrize("row", CONDENSED_TABLE_ROWS)
def test_every_row_of_the_condensed_table_has_an_active_rule(pack: RulePack, row: str) -> None:
    assert any(row in r.rule.knowledge_base for r in pack.rules), f"no active rule implements {row}"


def test_every_contract_code_is_in_the_vocabulary_and_used_by_a_rule(pack: RulePack) -> None:
    assert set(CONTRACT_CODES) <= set(pack.codes), set(CONTRACT_CODES) - set(pack.codes)
    unused = set(CONTRACT_CODES) - _then_codes(pack)
    assert not unused, f"contract codes no rule can emit: {sorted(unused)}"


@pytest.mark.parametrize("jurisdiction", ["UK", "DE", "CA"])
def test_each_non_default_jurisdiction_has_its_own_rules(pack: RulePack, jurisdiction: str) -> None:
    own = [r.id for r in pack.rules if "jurisdiction" in r.facts and f"'{jurisdiction}'" in repr(r.rule.when)]
    assert len(own) >= 2, f"{jurisdiction}: {own}"


@pytest.mark.parametrize("fact", sorted(CONTRAINDICATION_FACTS))
def test_each_contraindication_area_has_a_safety_rule(pack: RulePack, fact: str) -> None:
    """An avoid or caution item, or an alert (interactions are alerts with the prescriber)."""
    guarded = [
        r.id
        for r in pack.rules
        if fact in r.facts
        and any(t.kind in ("avoid", "caution") or t.severity is not None for t in r.rule.then)
    ]
    assert guarded, f"no avoid/caution/alert rule reads {fact} ({CONTRAINDICATION_FACTS[fact]})"


def test_every_rule_cites_a_known_source_with_a_locator(pack: RulePack) -> None:
    for r in pack.rules:
        for c in r.rule.citations:
            assert c.key in pack.citations, (r.id, c.key)
            assert c.locator.strip(), (r.id, c.key)


def test_unconfirmed_and_design_inference_rules_say_so_in_their_rationale(pack: RulePack) -> None:
    words = {
        "unconfirmed": re.compile(r"unconfirmed|not confirmed", re.I),
        "design_inference": re.compile(r"design inference|design heuristic", re.I),
    }
    silent = [
        r.id
        for r in pack.rules
        if r.rule.confirmation in words and not words[r.rule.confirmation].search(r.rule.rationale)
    ]
    assert not silent, f"rationale does not state the confirmation tag: {silent}"


def test_rule_ids_are_unique_across_active_and_inactive(pack: RulePack) -> None:
    ids = Counter([r.id for r in pack.rules] + [r.id for r in pack.inactive])
    assert [i for i, n in ids.items() if n > 1] == []
