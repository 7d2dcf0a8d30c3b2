"""The single entry point: validate -> derive -> run -> assemble -> explain -> check.

The engine never reads the clock: ``generated_at`` is an input. Everything else in the plan
is a function of the intake and the rule pack.
"""

from __future__ import annotations

import hashlib
from datetime import datetime
from typing import Literal, Protocol

from . import summary
from .derive import Facts, derive
from .errors import EngineError, RulePackError
from .explain import missing_information, trace_of, why_not_recommended
from .intake import Intake, intake_sha256
from .ir import Firing, ReferenceRunner
from .pathway import build_alerts, build_pathway, build_phases, choose_level, emissions
from .plan import CarePlan, RulesetRef
from .rulepack import RulePack

__all__ = ["Engine", "Runner", "check_plan", "plan_problems", "assemble"]


class Runner(Protocol):
    def run(self, facts: Facts) -> list[Firing]: ...


class Engine:
    """A rule pack bound to a runner. Build once; evaluate many intakes."""

    def __init__(self, pack: RulePack, runner: Literal["durable", "reference"] | Runner = "durable") -> None:
        """``runner``: a name, or a Runner built on ``pack`` (the seam for fakes in tests)."""
        if not pack.rules:  # fail closed before any runner sees it (durable crashes on it)
            raise RulePackError(f"{pack.id} {pack.version} has no active rules: nothing to run")
        self.pack = pack
        self._runner: Runner
        if not isinstance(runner, str):
            self.runner_name = type(runner).__name__
            self._runner = runner
        elif runner == "durable":
            from ._durable import DurableRunner

            self.runner_name = runner
            self._runner = DurableRunner(pack)
        else:
            self.runner_name = runner
            self._runner = ReferenceRunner(pack)

    def fire(self, intake: Intake) -> tuple[Facts, list[Firing]]:
        facts = derive(intake)
        return facts, self._runner.run(facts)

    def evaluate(self, intake: Intake, generated_at: datetime) -> CarePlan:
        facts, firings = self.fire(intake)
        plan = assemble(self.pack, intake, facts, firings, generated_at)
        check_plan(plan, facts, self.pack)
        return plan


def assemble(
    pack: RulePack, intake: Intake, facts: Facts, firings: list[Firing], generated_at: datetime
) -> CarePlan:
    jurisdiction = intake.jurisdiction
    ems = emissions(pack, firings, facts)
    level, level_item, other_levels = choose_level(pack, ems, jurisdiction)
    phases, dropped = build_phases(pack, ems, level_item, jurisdiction)
    items = [i for p in phases for i in p.items]
    why_not = why_not_recommended(pack, facts, firings, items, {d.code for d in dropped})
    alerts = build_alerts(pack, ems, jurisdiction)
    digest = intake_sha256(intake)
    return CarePlan(
        plan_id="cp_" + hashlib.sha256(f"{digest}:{pack.sha256}".encode()).hexdigest()[:24],
        generated_at=generated_at,
        assessment_date=intake.assessment_date,
        jurisdiction=jurisdiction,
        ruleset=RulesetRef(
            id=pack.id, version=pack.version, sha256=pack.sha256, effective_date=pack.effective_date
        ),
        intake_sha256=digest,
        alerts=alerts,
        level_of_care=level,
        phases=phases,
        considered_not_recommended=dropped + other_levels + why_not,
        missing_information=missing_information(pack, facts, firings),
        trace=trace_of(firings),
        diagnosis=summary.diagnosis(facts),
        asam_dimensions=summary.dimensions(facts),
        medication_decision=summary.medication_decision(facts, items, dropped + why_not),
        pathway=build_pathway(phases, pack),
        next_visit=summary.next_visit(facts, intake.assessment_date, alerts, level, items),
        incomplete=summary.incomplete(facts),
    )


_DETOX_METHODS = frozenset({"wm.agonist_assisted", "wm.symptomatic"})
_MAINTENANCE = frozenset(
    {"moud.methadone", "moud.buprenorphine", "moud.buprenorphine_low_dose_induction", "moud.continue_current"}
)
_HIGH_LEVEL = 3.7  # ASAM 3.7 and above: withdrawal is managed where the patient is placed


def check_plan(plan: CarePlan, facts: Facts, pack: RulePack | None = None) -> None:
    """Safety invariants. A violation is a defect in the rule pack: refuse, never guess."""
    problems = plan_problems(plan, facts, pack)
    if problems:
        raise EngineError(problems[0])


def plan_problems(plan: CarePlan, facts: Facts, pack: RulePack | None = None) -> list[str]:
    """Every safety invariant the plan breaks (empty: the plan may be shown)."""
    items = plan.items()
    found: list[str] = []
    codes = [i.code for i in items]
    twice = sorted({c for c in codes if codes.count(c) > 1})
    if twice:
        found.append(f"plan lists {twice} more than once (one decision per treatment)")
    positive = {i.code for i in items if i.kind in ("recommend", "consider")}
    if {i.code for i in items if i.kind == "avoid"} & positive:
        found.append("plan both recommends and avoids the same treatment")
    if "hr.naloxone" not in positive:
        found.append("plan lacks naloxone (every OUD plan must offer it)")
    wm = {c for c in positive if c.startswith("wm.") and c != "wm.not_indicated"}
    if wm and not ({c for c in positive if c.startswith("moud.")} and "aft.follow_up" in positive):
        found.append("withdrawal management without an offer of medication and follow-up")
    if wm and "hr.tolerance_loss_warning" not in positive:
        found.append("withdrawal management without a loss-of-tolerance warning (F-20)")
    found += _forbidden_wordings(plan, pack)
    found += _two_defaults_today(plan, facts)
    found += _ambulatory_at_high_level(plan, pack)
    return found


def _forbidden_wordings(plan: CarePlan, pack: RulePack | None) -> list[str]:
    """No recommended item carries a caution that forbids its own wording."""
    if pack is None:
        return []
    by_id = pack.by_id
    found = []
    for item in plan.items():
        for caution in item.cautions:
            for rid in caution.rule_ids:
                forbids = {f for t in by_id[rid].rule.then if t.code == item.code for f in t.forbids}
                if item.worded_by in forbids:
                    found.append(f"{item.code}: its wording ({item.worded_by}) is forbidden by {rid}")
    return found


def _two_defaults_today(plan: CarePlan, facts: Facts) -> list[str]:
    """Withdrawal management and maintenance are not both today's default unless the patient
    stated a choice (goal or medication preference)."""
    today = {i.code for i in plan.items() if i.kind == "recommend" and i.start == "now"}
    stated = facts.get("goal") in ("abstinence", "reduction") or facts.get("preferred_medication") in (
        "methadone",
        "buprenorphine",
        "naltrexone",
        "no_medication",
    )
    if today & _DETOX_METHODS and today & _MAINTENANCE and not stated:
        return ["plan recommends both a detox method and maintenance today without the patient's choice"]
    return []


def _ambulatory_at_high_level(plan: CarePlan, pack: RulePack | None) -> list[str]:
    if pack is None or "wm.ambulatory" not in plan.codes("recommend", "consider"):
        return []
    intensity = pack.codes[plan.level_of_care.code].intensity or 0
    if intensity >= _HIGH_LEVEL:
        return ["ambulatory withdrawal management offered with a placement at ASAM 3.7 or above"]
    return []
