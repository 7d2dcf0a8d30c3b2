"""The single entry point: validate -> derive -> run -> assemble -> explain -> check.

The engine never reads the clock: ``generated_at`` is an input. Everything else in the plan
is a function of the intake and the rule pack.
"""

from __future__ import annotations

import hashlib
from datetime import datetime
from typing import Literal, Protocol

from .derive import Facts, derive
from .errors import EngineError, RulePackError
from .explain import missing_information, trace_of, why_not_recommended
from .intake import Intake, intake_sha256
from .ir import Firing, ReferenceRunner
from .pathway import build_alerts, build_phases, choose_level, emissions
from .plan import CarePlan, RulesetRef
from .rulepack import RulePack

__all__ = ["Engine", "Runner", "check_plan"]


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
        check_plan(plan, facts)
        return plan


def assemble(
    pack: RulePack, intake: Intake, facts: Facts, firings: list[Firing], generated_at: datetime
) -> CarePlan:
    ems = emissions(pack, firings)
    level, level_item, other_levels = choose_level(pack, ems)
    phases, dropped = build_phases(pack, ems, level_item)
    items = [i for p in phases for i in p.items]
    why_not = why_not_recommended(pack, facts, firings, items, {d.code for d in dropped})
    digest = intake_sha256(intake)
    return CarePlan(
        plan_id="cp_" + hashlib.sha256(f"{digest}:{pack.sha256}".encode()).hexdigest()[:24],
        generated_at=generated_at,
        assessment_date=intake.assessment_date,
        jurisdiction=intake.jurisdiction,
        ruleset=RulesetRef(
            id=pack.id, version=pack.version, sha256=pack.sha256, effective_date=pack.effective_date
        ),
        intake_sha256=digest,
        alerts=build_alerts(pack, ems),
        level_of_care=level,
        phases=phases,
        considered_not_recommended=dropped + other_levels + why_not,
        missing_information=missing_information(pack, facts, firings),
        trace=trace_of(firings),
    )


def check_plan(plan: CarePlan, facts: Facts) -> None:
    """Safety invariants. A violation is a defect in the rule pack: refuse, never guess."""
    items = plan.items()
    avoided = {i.code for i in items if i.kind == "avoid"}
    clash = avoided & {i.code for i in items if i.kind in ("recommend", "consider")}
    if clash:
        raise EngineError(f"plan both recommends and avoids {sorted(clash)}")
    positive = {i.code for i in items if i.kind in ("recommend", "consider")}
    if "hr.naloxone" not in positive:
        raise EngineError("plan lacks naloxone (every OUD plan must offer it)")
    wm = {c for c in positive if c.startswith("wm.") and c != "wm.not_indicated"}
    if wm and not ({c for c in positive if c.startswith("moud.")} and "aft.follow_up" in positive):
        raise EngineError("withdrawal management without an offer of medication and follow-up")
    if wm and "hr.tolerance_loss_warning" not in positive:
        raise EngineError("withdrawal management without a loss-of-tolerance warning (F-20)")
