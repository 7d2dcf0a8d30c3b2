"""Plan -> view models for the templates. Pure: no Jinja, no I/O beyond what callers pass in."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from carepath.engine import CarePlan, RulePack
from carepath.engine.facts import FACTS
from carepath.engine.plan import Alert, Item
from carepath.reports.evidence import Evidence
from carepath.reports.helplines import Helpline, helplines_for
from carepath.reports.medications import FAMILIES, MedRow, choice_is_open, comparison
from carepath.reports.patient import Patient
from carepath.reports.schedule import Visit, follow_up_schedule

__all__ = ["PHASES", "ClinicianView", "PatientView", "clinician_view", "patient_view"]

PHASES: dict[str, str] = {
    "withdrawal_management": "Withdrawal management",
    "level_of_care": "Level of care",
    "medication": "Medication",
    "medical": "Medical care",
    "psychosocial": "Psychosocial care",
    "dual_diagnosis": "Dual diagnosis",
    "harm_reduction": "Harm reduction",
    "aftercare": "Aftercare",
}
KIND_ORDER = ("recommend", "consider", "caution", "avoid")


@dataclass(frozen=True)
class Trigger:
    label: str
    value: str


@dataclass(frozen=True)
class ItemView:
    code: str
    label: str
    kind: str
    text: str
    rationale: str
    evidence_grade: str
    triggers: list[Trigger]
    rule_ids: list[str]
    refs: list[int]
    start: str = "now"
    start_condition: str | None = None
    cautions: tuple[str, ...] = ()


@dataclass(frozen=True)
class PhaseView:
    phase: str
    title: str
    items: list[ItemView]


@dataclass(frozen=True)
class AlertView:
    code: str
    label: str
    severity: str
    text: str
    rule_ids: list[str]
    refs: list[int]
    also: tuple[str, ...] = ()


@dataclass(frozen=True)
class WhyNot:
    code: str
    label: str
    reason: str
    rule_ids: list[str]


@dataclass(frozen=True)
class ClinicianView:
    plan: CarePlan
    patient: Patient | None
    alerts: list[AlertView]
    phases: list[PhaseView]
    why_not: list[WhyNot]
    med_rows: list[MedRow]
    schedule: list[Visit]
    evidence: Evidence


@dataclass(frozen=True)
class PatientView:
    plan: CarePlan
    patient: Patient | None
    language: str
    level_code: str
    groups: dict[str, list[str]]
    alert_codes: list[str]
    medicines: list[str]
    tolerance_warning: bool
    schedule: list[Visit]
    helplines: list[Helpline]


def clinician_view(plan: CarePlan, pack: RulePack | None, patient: Patient | None) -> ClinicianView:
    entries = [(a.rule_ids, a.citations) for a in plan.alerts]
    entries += [(i.rule_ids, i.citations) for _, i in _timeline(plan)]
    evidence = Evidence(plan, pack, entries)
    preference = patient.medication_preference if patient else None
    open_choice = choice_is_open(plan, preference)
    return ClinicianView(
        plan=plan,
        patient=patient,
        alerts=[_alert(a, pack, evidence) for a in plan.alerts],
        phases=_phases(plan, pack, evidence),
        why_not=[
            WhyNot(w.code, _label(w.code, pack), w.reason, w.rule_ids)
            for w in plan.considered_not_recommended
        ],
        med_rows=comparison(plan, preference) if open_choice else [],
        schedule=follow_up_schedule(plan),
        evidence=evidence,
    )


def patient_view(plan: CarePlan, patient: Patient | None, language: str) -> PatientView:
    positive = plan.codes("recommend", "consider", "caution")
    warn = "hr.tolerance_loss_warning" in positive  # shown as a callout beside the overdose advice
    skip = {"hr.tolerance_loss_warning"} if warn else set()
    # a later step (e.g. naltrexone after withdrawal) is not presented to the patient as today's advice
    items = [
        i
        for phase, i in _timeline(plan)
        if phase != "level_of_care" and i.code not in skip and i.start == "now"
    ]
    groups = {kind: _unique(i.code for i in items if i.kind == kind) for kind in KIND_ORDER}
    medicines = [fam for fam, codes in FAMILIES.items() if positive & set(codes)]
    return PatientView(
        plan=plan,
        patient=patient,
        language=language,
        level_code=plan.level_of_care.code,
        groups=groups,
        alert_codes=[a.code for a in plan.alerts],
        medicines=medicines or list(FAMILIES),
        tolerance_warning=warn,
        schedule=follow_up_schedule(plan),
        helplines=helplines_for(plan.jurisdiction, language),
    )


def _timeline(plan: CarePlan) -> list[tuple[str, Item]]:
    """Every item with its phase, in timeline order (whatever order the plan lists phases in)."""
    by_phase: dict[str, list[Item]] = {p.phase: p.items for p in plan.phases}
    return [(name, item) for name in PHASES for item in by_phase.get(name, [])]


def _phases(plan: CarePlan, pack: RulePack | None, evidence: Evidence) -> list[PhaseView]:
    by_phase: dict[str, list[Item]] = {p.phase: p.items for p in plan.phases}
    return [
        PhaseView(name, title, [_item(i, pack, evidence) for i in by_phase.get(name, [])])
        for name, title in PHASES.items()
    ]


def _item(item: Item, pack: RulePack | None, evidence: Evidence) -> ItemView:
    return ItemView(
        code=item.code,
        label=_label(item.code, pack),
        kind=item.kind,
        text=item.text,
        rationale=item.rationale,
        evidence_grade=item.evidence_grade,
        triggers=[_trigger(k, v) for k, v in item.triggered_by.items()],
        rule_ids=list(item.rule_ids),
        refs=evidence.refs(item.citations),
        start=item.start,
        start_condition=item.start_condition,
        cautions=tuple(c.text for c in item.cautions),
    )


def _alert(alert: Alert, pack: RulePack | None, evidence: Evidence) -> AlertView:
    return AlertView(
        code=alert.code,
        label=_label(alert.code, pack),
        severity=alert.severity,
        text=alert.text,
        rule_ids=list(alert.rule_ids),
        refs=evidence.refs(alert.citations),
        also=tuple(c.text for c in alert.cautions),
    )


def _label(code: str, pack: RulePack | None) -> str:
    found = pack.codes.get(code) if pack is not None else None
    return found.label if found is not None else code


def _trigger(name: str, value: Any) -> Trigger:
    if name.startswith("flag:"):
        return Trigger(name.removeprefix("flag:").replace("_", " ") + " (derived)", _show(value))
    fact = FACTS.get(name)
    label = fact.definition if fact is not None else name
    unit = f" {fact.unit}" if fact is not None and fact.unit and not isinstance(value, bool) else ""
    return Trigger(label, _show(value) + unit)


def _show(value: Any) -> str:
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, list | tuple | set | frozenset):
        return ", ".join(_show(v) for v in value)
    return str(value)


def _unique(codes: Any) -> list[str]:
    return list(dict.fromkeys(codes))
