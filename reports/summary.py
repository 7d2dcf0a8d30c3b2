"""The plan at a glance (page 1) and the pathway as one line per decision, in time order.

Pure view models for the clinician draft. They read the Plan v2 fields (``diagnosis``,
``asam_dimensions``, ``medication_decision``, ``pathway``, ``next_visit``, ``incomplete``) and,
for a plan assembled before Pathway v2 (no ``pathway``), fall back on what the older plan and
the intake say: DSM-5 count and dimension ratings from ``engine.derive``, medication status from
the items, the pathway grouped by phase, the first follow-up as the next visit.

Every line carries the decision of record (``reports.record``) when there is one: the text and
dose the clinician chose, or "declined" with the reason; the suggestion stays in the appendix.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import date
from typing import Any

from carepath.engine import CarePlan, Intake
from carepath.engine.labels import field_label
from carepath.engine.plan import STEPS, Caution, Item
from carepath.reports.medications import FAMILIES, comparison
from carepath.reports.record import Decision, Recorded
from carepath.reports.schedule import follow_up_schedule

__all__ = [
    "DIMENSION_NAMES",
    "PHASE_TITLES",
    "Dimension",
    "Line",
    "MedOption",
    "NextVisitView",
    "Step",
    "Summary",
    "pathway_steps",
    "plan_summary",
    "next_visit",
]

PHASE_TITLES: dict[str, str] = {
    "withdrawal_management": "Withdrawal management",
    "level_of_care": "Level of care",
    "medication": "Medication",
    "medical": "Medical care",
    "psychosocial": "Psychosocial care",
    "dual_diagnosis": "Dual diagnosis",
    "harm_reduction": "Harm reduction",
    "aftercare": "Aftercare",
}
DIMENSION_NAMES: dict[int, str] = {
    1: "Acute intoxication and withdrawal potential",
    2: "Biomedical conditions and complications",
    3: "Emotional, behavioural or cognitive conditions",
    4: "Readiness to change",
    5: "Relapse or continued use potential",
    6: "Recovery and living environment",
}
_STATUS_WORDS = {
    "recommend": "Recommended",
    "consider": "Consider",
    "later": "Later",
    "avoid": "Avoid",
    "continue": "Continue",
    "not_offered": "Not offered",
}
_TODAY_PHASES = ("withdrawal_management", "medication")
_TODAY_CODES = ("hr.naloxone", "dd.urgent_psychiatric_evaluation", "med.obstetric_comanagement")


@dataclass(frozen=True)
class Line:
    """One decision of the pathway: the item as suggested and as decided."""

    code: str
    label: str
    kind: str
    suggested: str
    text: str
    """What the plan says now: the clinician's wording when modified, else the suggestion."""
    dose: str | None
    when: str
    cautions: tuple[str, ...]
    refs: tuple[int, ...]
    decision: Decision | None
    item: Item

    @property
    def status(self) -> str:
        return self.decision.status if self.decision else "suggested"

    @property
    def declined(self) -> bool:
        return self.decision is not None and self.decision.status == "declined"

    @property
    def alternative(self) -> bool:
        """A medication to consider beside the recommended one: an alternative, not a second
        start (shown so wherever today's actions are listed)."""
        return self.kind == "consider" and self.code.startswith("moud.")


@dataclass(frozen=True)
class Step:
    key: str
    title: str
    lines: list[Line]


@dataclass(frozen=True)
class Dimension:
    number: int
    name: str
    rating: int | None
    finding: str


@dataclass(frozen=True)
class MedOption:
    label: str
    status: str
    reason: str
    when: str
    preferred: bool
    current: bool
    decision: Decision | None
    code: str | None = None


@dataclass(frozen=True)
class NextVisitView:
    on: date
    within_days: int
    reason: str


@dataclass(frozen=True)
class Summary:
    diagnosis: str
    icd10_cm: str | None
    dimensions: list[Dimension]
    today: list[Line]
    medications: list[MedOption]
    medication_note: str | None
    next_visit: NextVisitView | None
    incomplete: list[str]
    level_decision: Decision | None
    v2: bool = field(default=False)
    """True when the engine assembled the Plan v2 fields (no fallbacks used)."""


def _when(item: Item) -> str:
    if item.start == "now" or not item.start_condition:
        return "now"
    prefix = "after withdrawal" if item.start == "after_withdrawal" else "if"
    return f"{prefix}: {item.start_condition}"


def _merge_duplicates(items: Iterable[Item]) -> list[Item]:
    """Pre-v2 plans may list a code twice (a recommendation and a caution about it): one line,
    the other wording attached to it as a caution, as Plan v2 does."""
    merged: dict[str, Item] = {}
    for item in items:
        first = merged.get(item.code)
        if first is None:
            merged[item.code] = item
            continue
        keep, extra = (item, first) if first.kind == "caution" and item.kind != "caution" else (first, item)
        caution = Caution(text=extra.text, rule_ids=extra.rule_ids, citations=extra.citations)
        merged[item.code] = keep.model_copy(update={"cautions": [*keep.cautions, caution]})
    return list(merged.values())


def line_for(item: Item, label: str, refs: Sequence[int], decision: Decision | None) -> Line:
    text = item.text
    dose = None
    if decision is not None and decision.status == "modified":
        text = decision.text or item.text
        dose = decision.dose
    return Line(
        code=item.code,
        label=label,
        kind=decision.kind
        if decision and decision.kind in ("recommend", "consider", "caution", "avoid")
        else item.kind,
        suggested=item.text,
        text=text,
        dose=dose,
        when=_when(item),
        cautions=tuple(c.text for c in item.cautions),
        refs=tuple(refs),
        decision=decision,
        item=item,
    )


def pathway_steps(
    plan: CarePlan,
    recorded: Recorded | None,
    label: Callable[[str], str],
    refs: Callable[[Item], Sequence[int]],
) -> list[Step]:
    """The plan in time order, one line per decision. The level of care is on page 1, not here."""

    def line(item: Item) -> Line:
        decision = recorded.decision(item.code) if recorded else None
        return line_for(item, label(item.code), refs(item), decision)

    if plan.pathway:
        by_code = {i.code: i for i in plan.items()}
        steps = []
        for step in plan.pathway:
            items = [by_code[c] for c in step.codes if c in by_code and not c.startswith("loc.")]
            if items:
                steps.append(
                    Step(step.step, step.title or STEPS.get(step.step, step.step), [line(i) for i in items])
                )
        return steps
    by_phase = {p.phase: p.items for p in plan.phases}
    return [
        Step(phase, title, [line(i) for i in _merge_duplicates(by_phase[phase])])
        for phase, title in PHASE_TITLES.items()
        if phase != "level_of_care" and by_phase.get(phase)
    ]


def plan_summary(
    plan: CarePlan,
    intake: Intake | None,
    recorded: Recorded | None,
    steps: Sequence[Step],
    preference: str | None = None,
) -> Summary:
    """``preference``: the stated medication preference when no intake is given (report callers
    that pass only the patient's identifiers)."""
    if intake is not None:
        preference = intake.preferences.medication
    lines = [ln for s in steps for ln in s.lines]
    v2 = bool(plan.pathway)
    diagnosis, icd = _diagnosis(plan, intake)
    return Summary(
        diagnosis=diagnosis,
        icd10_cm=icd,
        dimensions=_dimensions(plan, intake),
        today=_today(lines, v2),
        medications=_medications(plan, intake, recorded, preference),
        medication_note=_medication_note(plan, preference),
        next_visit=next_visit(plan),
        incomplete=_incomplete(plan, intake),
        level_decision=recorded.decision(plan.level_of_care.code) if recorded else None,
        v2=v2,
    )


def _diagnosis(plan: CarePlan, intake: Intake | None) -> tuple[str, str | None]:
    if plan.diagnosis is not None:
        return plan.diagnosis.text, plan.diagnosis.icd10_cm
    if intake is None:
        return "Opioid use disorder (DSM-5 count and severity: see the intake)", None
    count = intake.substance_use.dsm5_criteria_met
    if count is None:
        return "Opioid use disorder: DSM-5 criteria not recorded (severity unknown)", None
    severity = _facts(intake).get("oud_severity", "unknown")
    return f"Opioid use disorder: {count} of 11 DSM-5 criteria ({severity})", None


def _facts(intake: Intake | None) -> dict[str, Any]:
    if intake is None:
        return {}
    from carepath.engine.derive import derive

    return dict(derive(intake))


def _dimensions(plan: CarePlan, intake: Intake | None) -> list[Dimension]:
    if plan.asam_dimensions:
        return [Dimension(d.dimension, d.name, d.rating, d.finding) for d in plan.asam_dimensions]
    facts = _facts(intake)
    return [Dimension(n, name, facts.get(f"asam_d{n}"), "") for n, name in DIMENSION_NAMES.items()]


def _today(lines: Sequence[Line], v2: bool) -> list[Line]:
    def wanted(ln: Line) -> bool:
        if ln.declined or ln.kind not in ("recommend", "consider"):
            return False
        if v2:
            return ln.item.step == "today" and ln.item.start == "now"
        phase_today = ln.code.split(".", 1)[0] in ("wm", "moud") and ln.kind == "recommend"
        return phase_today or ln.code in _TODAY_CODES

    return [ln for ln in lines if wanted(ln)]


_PLAN_SAYS_STATUS = {
    "recommend": "recommend",
    "consider": "consider",
    "caution": "consider",
    "avoid": "avoid",
    "not recommended": "not_offered",
    "not addressed": "not_offered",
}


def _medications(
    plan: CarePlan, intake: Intake | None, recorded: Recorded | None, preference: str | None
) -> list[MedOption]:
    def decided(code: str | None) -> Decision | None:
        return recorded.decision(code) if recorded and code else None

    if plan.medication_decision is not None:
        return [
            MedOption(
                label=o.label,
                status=_STATUS_WORDS.get(o.status, o.status),
                reason=o.reason,
                when="now" if o.start == "now" or not o.start_condition else o.start_condition,
                preferred=o.preferred,
                current=o.current,
                decision=decided(o.code),
                code=o.code,
            )
            for o in plan.medication_decision.options
        ]
    current = intake.current_treatment.moud if intake else None
    by_code = {i.code: i for i in plan.items()}
    out = []
    for row in comparison(plan, preference):
        kind, text = row.plan_says[0]
        code = next((c for c in FAMILIES[row.family] if c in by_code), None)
        out.append(
            MedOption(
                label=row.family.capitalize(),
                status=_STATUS_WORDS[_PLAN_SAYS_STATUS.get(kind, "not_offered")],
                reason=text,
                when=_when(by_code[code]) if code else "",
                preferred=row.preferred,
                current=current == row.family,
                decision=decided(code),
            )
        )
    return out


def _medication_note(plan: CarePlan, preference: str | None) -> str | None:
    md = plan.medication_decision
    if md is not None:
        if md.note:
            return md.note
        if md.declined:
            return "The patient declines medication now."
        return f"Patient's preference: {md.preference.replace('_', ' ')}." if md.preference else None
    return f"Patient's preference: {preference.replace('_', ' ')}." if preference else None


def next_visit(plan: CarePlan) -> NextVisitView | None:
    if plan.next_visit is not None:
        nv = plan.next_visit
        return NextVisitView(nv.on, nv.within_days, nv.reason)
    visits = follow_up_schedule(plan)
    if not visits:
        return None
    first = visits[0]
    return NextVisitView(first.on, first.days, first.what)


def _incomplete(plan: CarePlan, intake: Intake | None) -> list[str]:
    if plan.pathway:
        return [field_label(f) if "." in f else f for f in plan.incomplete]
    if intake is None:
        return [field_label(f) if "." in f else f for f in plan.incomplete]
    return _unknown_core_facts(intake)


def _unknown_core_facts(intake: Intake) -> list[str]:
    """Until the engine fills ``plan.incomplete``: the core facts a plan cannot be trusted without."""
    su, p, ct = intake.substance_use, intake.patient, intake.current_treatment
    missing = []
    if su.dsm5_criteria_met is None:
        missing.append("OUD severity (DSM-5 criteria)")
    if su.physically_dependent is None and su.cows_score is None:
        missing.append("Physical dependence or COWS score")
    could_be_pregnant = p.sex_at_birth != "male" and p.age <= 55
    if could_be_pregnant and p.pregnant is None:
        missing.append("Pregnancy status")
    if ct.moud is None and "moud" not in ct.model_fields_set and intake.stage != "post_withdrawal":
        missing.append("Current medication (MOUD)")
    return missing
