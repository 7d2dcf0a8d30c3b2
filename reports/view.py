"""Plan -> view models for the templates. Pure: no Jinja, no I/O beyond what callers pass in."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from typing import Any

from carepath.engine import CarePlan, Intake, RulePack
from carepath.engine.facts import FACTS
from carepath.engine.labels import field_label
from carepath.engine.plan import Alert, CitationOut, Item, MissingInfo
from carepath.reports.evidence import Evidence
from carepath.reports.helplines import Helpline, helplines_for
from carepath.reports.medications import FAMILIES
from carepath.reports.notices import Confidentiality, confidentiality
from carepath.reports.patient import Patient
from carepath.reports.record import Decision, Recorded
from carepath.reports.schedule import Visit, follow_up_schedule
from carepath.reports.summary import PHASE_TITLES, Step, Summary, pathway_steps, plan_summary

__all__ = ["PHASES", "ClinicianView", "PatientView", "clinician_view", "patient_view"]

PHASES: dict[str, str] = PHASE_TITLES
KIND_ORDER = ("recommend", "consider", "caution", "avoid")


@dataclass(frozen=True)
class Trigger:
    label: str
    value: str


@dataclass(frozen=True)
class ItemView:
    """One line's evidence for the appendix: the suggestion as the engine made it, and why."""

    code: str
    label: str
    kind: str
    text: str
    rationale: str
    evidence_grade: str
    triggers: list[Trigger]
    rule_ids: list[str]
    refs: list[int]
    cautions: list[str] = field(default_factory=list)
    superseded: list[str] = field(default_factory=list)
    decision: Decision | None = None
    start: str = "now"
    start_condition: str | None = None


@dataclass(frozen=True)
class AlertView:
    code: str
    label: str
    severity: str
    text: str
    rule_ids: list[str]
    refs: list[int]
    also: tuple[str, ...] = ()
    """Further findings the engine attached to this alert (Plan v2 ``cautions``)."""


@dataclass(frozen=True)
class WhyNot:
    code: str
    label: str
    reason: str
    rule_ids: list[str]


@dataclass(frozen=True)
class MissingView:
    safety: list[MissingInfo]
    plan: list[MissingInfo]
    not_applicable: list[tuple[MissingInfo | None, str, Decision]]
    """(row if still listed, field label, the clinician's "not applicable" mark)."""


@dataclass(frozen=True)
class ClinicianView:
    plan: CarePlan
    patient: Patient | None
    recorded: Recorded | None
    summary: Summary
    steps: list[Step]
    alerts: list[AlertView]
    why_not: list[WhyNot]
    missing: MissingView
    schedule: list[Visit]
    evidence: Evidence
    appendix: list[ItemView]
    notice: Confidentiality
    with_appendix: bool

    @property
    def signed(self) -> bool:
        return self.recorded is not None and self.recorded.signed

    @property
    def status_line(self) -> str:
        if self.recorded is not None and self.recorded.signature is not None:
            return self.recorded.signature.short_line
        return "DRAFT - requires clinician review"


@dataclass(frozen=True)
class PatientLine:
    code: str
    note: str | None = None
    """The clinician's own words when they changed the line (wording or dose); shown as written."""


@dataclass(frozen=True)
class PatientView:
    plan: CarePlan
    patient: Patient | None
    language: str
    level_code: str
    level_note: str | None
    level_declined: bool
    groups: dict[str, list[PatientLine]]
    """Today's plan by kind. Later steps (e.g. naltrexone after withdrawal) are in ``later``."""
    alert_codes: list[str]
    medicines: list[str]
    tolerance_warning: bool
    schedule: list[Visit]
    helplines: list[Helpline]
    recorded: Recorded | None = None
    later: list[PatientLine] = field(default_factory=list)
    """Steps planned for later, never presented to the patient as today's advice."""

    @property
    def signed(self) -> bool:
        return self.recorded is not None and self.recorded.signed


def clinician_view(
    plan: CarePlan,
    pack: RulePack | None,
    patient: Patient | None,
    *,
    intake: Intake | None = None,
    recorded: Recorded | None = None,
    with_appendix: bool = True,
) -> ClinicianView:
    by_code = {i.code: i for i in plan.items()}

    def label(code: str) -> str:
        return _label(code, pack)

    entries = [(a.rule_ids, a.citations) for a in plan.alerts]
    loc_item = by_code.get(plan.level_of_care.code)
    if loc_item is not None:
        entries.append((loc_item.rule_ids, loc_item.citations))
    ordered = pathway_steps(plan, recorded, label, lambda _item: ())
    for line in (ln for st in ordered for ln in st.lines):
        entries.append((line.item.rule_ids, [*line.item.citations, *_caution_citations(line.item)]))
    evidence = Evidence(plan, pack, entries)

    def refs(item: Item) -> list[int]:
        return evidence.refs([*item.citations, *_caution_citations(item)])

    steps = pathway_steps(plan, recorded, label, refs)
    appendix_items = ([loc_item] if loc_item is not None else []) + [
        ln.item for st in steps for ln in st.lines
    ]
    return ClinicianView(
        plan=plan,
        patient=patient,
        recorded=recorded,
        summary=plan_summary(
            plan, intake, recorded, steps, patient.medication_preference if patient else None
        ),
        steps=steps,
        alerts=[_alert(a, pack, evidence) for a in plan.alerts],
        why_not=[
            WhyNot(w.code, _label(w.code, pack), w.reason, w.rule_ids)
            for w in plan.considered_not_recommended
        ],
        missing=_missing(plan, recorded, _answered(intake)),
        schedule=follow_up_schedule(plan),
        evidence=evidence,
        appendix=_once(_item(i, pack, evidence, recorded) for i in appendix_items),
        notice=confidentiality(plan.jurisdiction),
        with_appendix=with_appendix,
    )


def _once(items: Iterable[ItemView]) -> list[ItemView]:
    """Each rule's rationale printed once: a later item citing the same rule says so instead of
    repeating the paragraph (rationales are " | "-joined "RULE-ID: text" parts)."""
    seen: set[str] = set()
    out = []
    for it in items:
        parts = []
        for part in it.rationale.split(" | "):
            if part in seen:
                rule = part.split(": ", 1)[0] if ": " in part else ""
                parts.append(f"{rule}: see above." if rule and len(rule) < 20 else "(as above)")
            else:
                seen.add(part)
                parts.append(part)
        out.append(replace(it, rationale=" | ".join(parts)))
    return out


def _caution_citations(item: Item) -> list[CitationOut]:
    return [c for caution in item.cautions for c in caution.citations]


def _answered(intake: Intake | None) -> frozenset[str]:
    """Intake fields the clinician answered (an explicit "None" included)."""
    if intake is None:
        return frozenset()

    def walk(model: Any, prefix: str) -> Iterable[str]:
        for name in model.model_fields_set:
            value = getattr(model, name)
            if hasattr(value, "model_fields_set"):
                yield from walk(value, f"{prefix}{name}.")
            else:
                yield prefix + name

    return frozenset(walk(intake, ""))


def _missing(plan: CarePlan, recorded: Recorded | None, answered: frozenset[str]) -> MissingView:
    """Rows still open: not marked "not applicable", and not a field the intake answers (the
    engine lists a field behind any unknown fact it feeds, e.g. current MOUD answered "None"
    while the opioids used are unknown)."""
    marked = recorded.not_applicable if recorded else {}
    rows = {m.field: m for m in plan.missing_information}
    open_rows = [m for m in plan.missing_information if m.field not in marked and m.field not in answered]
    return MissingView(
        safety=[m for m in open_rows if m.impact == "safety"],
        plan=[m for m in open_rows if m.impact != "safety"],
        not_applicable=[(rows.get(f), field_label(f), d) for f, d in marked.items()],
    )


def patient_view(
    plan: CarePlan, patient: Patient | None, language: str, recorded: Recorded | None = None
) -> PatientView:
    """What the patient is told: the plan as the clinician decided it (declined lines left out,
    changed lines with the clinician's own words)."""

    def decision(code: str) -> Decision | None:
        return recorded.decision(code) if recorded else None

    kept = [(ph, i, decision(i.code)) for ph, i in _timeline(plan)]
    kept = [(ph, i, d) for ph, i, d in kept if d is None or d.status != "declined"]
    positive = {i.code for _, i, d in kept if _kind(i, d) in ("recommend", "consider", "caution")}
    warn = "hr.tolerance_loss_warning" in positive  # shown as a callout beside the overdose advice
    skip = {"hr.tolerance_loss_warning"} if warn else set()
    lines = [(i, d) for ph, i, d in kept if ph != "level_of_care" and i.code not in skip]
    later_codes = _unique(i.code for i, d in lines if i.start != "now" and _kind(i, d) != "avoid")
    lines = [(i, d) for i, d in lines if i.code not in later_codes]
    groups: dict[str, list[PatientLine]] = {}
    listed: set[str] = set()  # a code the plan lists twice (before Plan v2) is told once
    for kind in KIND_ORDER:
        codes = [c for c in _unique(i.code for i, d in lines if _kind(i, d) == kind) if c not in listed]
        listed.update(codes)
        groups[kind] = [PatientLine(code, _note(decision(code))) for code in codes]
    medicines = [fam for fam, codes in FAMILIES.items() if positive & set(codes)]
    level = decision(plan.level_of_care.code)
    return PatientView(
        plan=plan,
        patient=patient,
        language=language,
        level_code=plan.level_of_care.code,
        level_note=_note(level),
        level_declined=level is not None and level.status == "declined",
        recorded=recorded,
        groups=groups,
        later=[PatientLine(code, _note(decision(code))) for code in later_codes],
        alert_codes=[a.code for a in plan.alerts],
        medicines=medicines or list(FAMILIES),
        tolerance_warning=warn,
        schedule=follow_up_schedule(plan),
        helplines=helplines_for(plan.jurisdiction, language),
    )


def _kind(item: Item, decision: Decision | None) -> str:
    return decision.kind if decision is not None and decision.kind in KIND_ORDER else item.kind


def _note(decision: Decision | None) -> str | None:
    if decision is None or decision.status != "modified":
        return None
    return " ".join(part for part in (decision.text, decision.dose) if part) or None


def _timeline(plan: CarePlan) -> list[tuple[str, Item]]:
    """Every item with its phase, in timeline order (whatever order the plan lists phases in)."""
    by_phase: dict[str, list[Item]] = {p.phase: p.items for p in plan.phases}
    return [(name, item) for name in PHASES for item in by_phase.get(name, [])]


def _item(item: Item, pack: RulePack | None, evidence: Evidence, recorded: Recorded | None) -> ItemView:
    rules = list(dict.fromkeys([*item.rule_ids, *(r for c in item.cautions for r in c.rule_ids)]))
    return ItemView(
        code=item.code,
        label=_label(item.code, pack),
        kind=item.kind,
        text=item.text,
        rationale=item.rationale,
        evidence_grade=item.evidence_grade,
        triggers=[_trigger(k, v) for k, v in item.triggered_by.items()],
        rule_ids=rules,
        refs=evidence.refs([*item.citations, *_caution_citations(item)]),
        cautions=[c.text for c in item.cautions],
        superseded=[f"{s.rule_id}: {s.text}" for s in item.superseded],
        decision=recorded.decision(item.code) if recorded else None,
        start=item.start,
        start_condition=item.start_condition,
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
