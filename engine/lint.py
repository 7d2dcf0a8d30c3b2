"""Rule-pack lint, pure: a list of check functions, each looking at the pack and returning findings.

Levels: ``error`` (the pack must not run: the CLI and the service refuse it), ``warning`` (a
clinical lead must act: a review date passed) and ``info`` (worth knowing). Errors never depend
on the date, so a pack that starts today starts tomorrow.

Adding a check: write ``def check_something(ctx: LintContext) -> Iterable[Finding]`` and append
it to ``CHECKS``. ``ctx`` carries the pack, the date, the reference runner, the examples' results
and (lazily) a synthetic population's firings, so checks share the expensive work.

What "can a condition hold" means here: a search over the values each fact may take (unknown,
or any value of its type; numbers at and around the thresholds the rule names), with the
engine's closed-world reading (a test on an unknown fact is false, its negation true). Facts are
treated as independent, so it finds contradictions inside one rule's condition, not ones that
only the derivation of two facts from one answer creates (the rule's own examples catch those).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import date
from functools import cache, cached_property
from typing import Any

from .derive import Facts, derive
from .facts import FACTS
from .ir import Firing, ReferenceRunner, holds
from .rulepack import PackRule, RulePack
from .rulespec import All, AnyOf, Cond, FlagRef, Not, Test

__all__ = [
    "Finding",
    "LintContext",
    "Check",
    "CHECKS",
    "run_checks",
    "can_hold",
    "uncovered_intake",
    "always_known",
]

ERROR, WARNING, INFO = "error", "warning", "info"
LEVELS = (ERROR, WARNING, INFO)


@dataclass(frozen=True)
class Finding:
    level: str  # "error" | "warning" | "info"
    rule_id: str  # a rule id, or "(pack)"
    message: str
    check: str = ""  # the check that found it (stable name, e.g. "condition-can-hold")

    def __str__(self) -> str:
        return f"{self.level.upper():7} {self.rule_id}: {self.message}"


# --- can a condition hold? -------------------------------------------------------------------

Value = bool | int | float | str | None  # None: the fact is unknown
Literal_ = tuple[Test, bool]  # (test, positive?)
_BUDGET = 50_000  # search steps per question; past it the answer is "yes, it may hold"


@cache
def always_known() -> frozenset[str]:
    """Facts derived even from an intake that answers nothing (an adult, a date): never unknown."""
    from .intake import parse_intake_obj

    return frozenset(derive(parse_intake_obj({"assessment_date": "2026-01-15", "patient": {"age": 35}})))


def _candidates(fact: str, tests: list[Test]) -> list[Value]:
    """Values worth trying for one fact: unknown, and every value that can change a test."""
    spec = FACTS[fact]
    values: list[Value] = [] if fact in always_known() else [None]
    if spec.type == "bool":
        return values + [True, False]
    if spec.type == "enum":
        return values + list(spec.values)
    cuts = sorted(
        {
            float(v)
            for t in tests
            for v in (t.value if isinstance(t.value, tuple) else (t.value,))
            if isinstance(v, int | float) and not isinstance(v, bool)
        }
    )
    step = 1 if spec.type == "int" else 0.5
    points: set[float] = {p for c in cuts for p in (c - step, c, c + step)}
    if spec.type == "number":  # between two close thresholds (above 12, below 12.5)
        points.update((a + b) / 2 for a, b in zip(cuts, cuts[1:], strict=False))
    lo, hi = spec.range if spec.range else (float("-inf"), float("inf"))
    if spec.range:
        points.update((lo, hi))
    if not points:
        points.add(0 if lo <= 0 <= hi else lo)
    nums = sorted(p for p in points if lo <= p <= hi)
    return values + [int(p) if spec.type == "int" and float(p).is_integer() else p for p in nums]


def _literal_holds(test: Test, positive: bool, value: Value) -> bool:
    facts: Facts = {} if value is None else {test.fact: value}
    return holds(test, facts) is positive


def _fact_value(fact: str, literals: list[Literal_]) -> tuple[bool, Value]:
    """Is there a value of ``fact`` that makes every literal true? (and one such value)"""
    for value in _candidates(fact, [t for t, _ in literals]):
        if all(_literal_holds(t, pos, value) for t, pos in literals):
            return True, value
    return False, None


@dataclass
class _Search:
    steps: int = 0
    exhausted: bool = False
    conflicts: set[str] = field(default_factory=set)

    def solve(
        self, todo: list[tuple[Cond, bool]], lits: dict[str, list[Literal_]], flags: dict[str, bool]
    ) -> dict[str, Value] | None:
        """A witness (fact -> value) making every (condition, positive?) in ``todo`` true, or None."""
        self.steps += 1
        if self.steps > _BUDGET:
            self.exhausted = True
            return {}
        if not todo:
            return {f: _fact_value(f, ls)[1] for f, ls in lits.items()}
        (cond, positive), rest = todo[0], todo[1:]
        if isinstance(cond, Not):
            return self.solve([(cond.item, not positive)] + rest, lits, flags)
        if isinstance(cond, All | AnyOf):
            conjunctive = isinstance(cond, All) is positive
            parts = [(c, positive) for c in cond.items]
            if conjunctive:
                return self.solve(parts + rest, lits, flags)
            for part in parts:
                found = self.solve([part] + rest, lits, flags)
                if found is not None:
                    return found
            return None
        if isinstance(cond, FlagRef):
            if flags.get(cond.flag, positive) is not positive:
                return None
            return self.solve(rest, lits, {**flags, cond.flag: positive})
        merged = lits.get(cond.fact, []) + [(cond, positive)]
        if not _fact_value(cond.fact, merged)[0]:
            self.conflicts.add(cond.fact)
            return None
        return self.solve(rest, {**lits, cond.fact: merged}, flags)


def can_hold(cond: Cond) -> tuple[bool, set[str]]:
    """(may the condition hold for some intake?, facts whose tests contradicted each other)"""
    search = _Search()
    found = search.solve([(cond, True)], {}, {})
    return found is not None or search.exhausted, search.conflicts


def uncovered_intake(conds: list[Cond]) -> dict[str, Value] | None:
    """Facts of an intake for which none of ``conds`` holds (None: every intake is covered).

    Flags count as possibly unset, so a rule that needs a flag never covers on its own."""
    if not conds:
        return {}
    search = _Search()
    found = search.solve([(c, False) for c in conds], {}, {})
    return None if search.exhausted else found


def _describe_witness(witness: dict[str, Value]) -> str:
    if not witness:
        return "any intake"
    parts = [f"{k} {'unknown' if v is None else _show(v)}" for k, v in sorted(witness.items())]
    return "e.g. an intake with " + ", ".join(parts[:6]) + (" ..." if len(parts) > 6 else "")


def _show(v: Value) -> str:
    return str(v).lower() if isinstance(v, bool) else str(v)


# --- the context the checks share ------------------------------------------------------------


@dataclass
class LintContext:
    pack: RulePack
    today: date
    population: int = 0  # synthetic intakes for population checks (0: skip them)
    seed: int = 1
    cofiring_samples: int = 0  # contract-wide samples for the co-firing wording check (0: skip it)

    @cached_property
    def runner(self) -> ReferenceRunner:
        return ReferenceRunner(self.pack)

    @cached_property
    def examples(self) -> list[Any]:
        from .governance import run_examples

        return run_examples(self.pack, self.runner)

    @cached_property
    def satisfiable(self) -> dict[str, tuple[bool, set[str]]]:
        return {r.id: can_hold(r.cond) for r in self.pack.rules}

    @cached_property
    def can_fire(self) -> dict[str, bool]:
        """A rule can fire when its condition may hold and each flag it needs may be set."""
        alive = {rid: ok for rid, (ok, _) in self.satisfiable.items()}
        setters: dict[str, list[str]] = {}
        for r in self.pack.rules:
            for flag in r.rule.sets:
                setters.setdefault(flag, []).append(r.id)
        changed = True
        while changed:
            changed = False
            for r in self.pack.rules:
                if alive[r.id] and any(not any(alive[s] for s in setters.get(f, [])) for f in r.flags):
                    alive[r.id] = False
                    changed = True
        return alive

    @cached_property
    def population_firings(self) -> list[list[Firing]]:
        """Firings for each intake of a seeded synthetic population (``population`` of them)."""
        from .synth import synth_intakes

        return [self.runner.run(derive(i)) for i in synth_intakes(self.population, seed=self.seed)]

    def rules_giving(
        self, code: str, kinds: tuple[str | None, ...] = (), effect: str | None = None
    ) -> list[PackRule]:
        return [
            r
            for r in self.pack.rules
            if any(
                t.code == code and (not kinds or t.kind in kinds) and (effect is None or t.effect == effect)
                for t in r.rule.then
            )
        ]


Check = Callable[[LintContext], Iterable[Finding]]


# --- checks that refuse a pack (errors) ------------------------------------------------------


def check_active_rules(ctx: LintContext) -> Iterator[Finding]:
    if not ctx.pack.rules:
        yield Finding(ERROR, "(pack)", "the pack has no active rules: it cannot make a plan", "active-rules")


def _every_intake_gets(
    ctx: LintContext, rules: list[PackRule], what: str, none: str, gap: str, check: str
) -> Iterator[Finding]:
    """An error unless the conditions of ``rules`` together hold for every intake."""
    if not ctx.pack.rules:
        return
    if not rules:
        yield Finding(ERROR, "(pack)", f"no active rule {none}", check)
        return
    witness = uncovered_intake([r.cond for r in rules])
    if witness is not None:
        ids = ", ".join(r.id for r in rules)
        yield Finding(
            ERROR, "(pack)", f"{gap}: {_describe_witness(witness)} gets no {what} from {ids}", check
        )


def check_naloxone_for_every_intake(ctx: LintContext) -> Iterator[Finding]:
    yield from _every_intake_gets(
        ctx,
        ctx.rules_giving("hr.naloxone", kinds=("recommend", "consider")),
        "naloxone",
        "recommends hr.naloxone: every plan must offer it",
        "hr.naloxone is not recommended for every intake (add an 'always' rule)",
        "naloxone-every-intake",
    )


def check_baseline_level_of_care(ctx: LintContext) -> Iterator[Finding]:
    levels = [
        r
        for r in ctx.pack.rules
        if any(t.effect == "need" and ctx.pack.codes[t.code].phase == "level_of_care" for t in r.rule.then)
    ]
    yield from _every_intake_gets(
        ctx,
        levels,
        "level of care",
        "gives a baseline level of care (effect: need)",
        "not every intake gets a baseline level of care (effect: need)",
        "baseline-level-of-care",
    )


def check_conditions_can_hold(ctx: LintContext) -> Iterator[Finding]:
    for r in ctx.pack.rules:
        ok, conflicts = ctx.satisfiable[r.id]
        if not ok:
            where = f" (contradictory tests on {', '.join(sorted(conflicts))})" if conflicts else ""
            yield Finding(
                ERROR,
                r.id,
                f"its condition can never hold{where}: the rule cannot fire",
                "condition-can-hold",
            )


def check_flags_can_be_set(ctx: LintContext) -> Iterator[Finding]:
    for r in ctx.pack.rules:
        ok, _ = ctx.satisfiable[r.id]
        if ok and not ctx.can_fire[r.id]:
            dead = [
                f for f in r.flags if not any(ctx.can_fire[s.id] for s in ctx.pack.rules if f in s.rule.sets)
            ]
            yield Finding(
                ERROR,
                r.id,
                f"needs flag {', '.join(repr(f) for f in dead)}, which no rule that can fire sets: "
                "the rule cannot fire",
                "flag-can-be-set",
            )


def check_examples(ctx: LintContext) -> Iterator[Finding]:
    for ex in ctx.examples:
        if ex.error:
            yield Finding(ERROR, ex.rule_id, f"example {ex.label}: {ex.error}", "examples")
        elif ex.expected and not ex.fired:
            yield Finding(ERROR, ex.rule_id, f"example {ex.label} never fires the rule", "examples")
        elif not ex.expected and ex.fired:
            yield Finding(ERROR, ex.rule_id, f"counter-example {ex.label} fires the rule", "examples")


def check_recommend_and_avoid(ctx: LintContext) -> Iterator[Finding]:
    for r in ctx.pack.rules:
        kinds: dict[str, set[str]] = {}
        for t in r.rule.then:
            if t.kind:
                kinds.setdefault(t.code, set()).add(t.kind)
        for code, ks in sorted(kinds.items()):
            if "avoid" in ks and ks & {"recommend", "consider"}:
                yield Finding(ERROR, r.id, f"both recommends and avoids {code}", "recommend-and-avoid")


# --- review findings (warnings and information) ----------------------------------------------


def check_review_dates(ctx: LintContext) -> Iterator[Finding]:
    for r in ctx.pack.rules:
        if r.rule.review_date < ctx.today:
            yield Finding(WARNING, r.id, f"past its review date ({r.rule.review_date})", "review-date")


def check_evidence_basis(ctx: LintContext) -> Iterator[Finding]:
    for r in ctx.pack.rules:
        if r.rule.confirmation != "confirmed":
            yield Finding(
                INFO, r.id, f"evidence basis is {r.rule.confirmation.replace('_', ' ')}", "evidence"
            )


def check_unused_facts(ctx: LintContext) -> Iterator[Finding]:
    used = {f for r in ctx.pack.rules for f in r.facts}
    for name in FACTS:
        if name not in used:
            yield Finding(INFO, "(pack)", f"fact '{name}' is not used by any rule", "unused-fact")


def check_codes_produced(ctx: LintContext) -> Iterator[Finding]:
    produced = {t.code for r in ctx.pack.rules for t in r.rule.then}
    for code in ctx.pack.codes:
        if code not in produced:
            yield Finding(INFO, "(pack)", f"code '{code}' is never produced", "unused-code")


def check_wordings_have_precedence(ctx: LintContext) -> Iterator[Finding]:
    """Two rules that fire together and word a treatment differently need a declared ``rank``
    (Plan v2: one decision per treatment, never an arbitrary pick between two wordings)."""
    if ctx.cofiring_samples <= 0:
        return
    from .cofiring import wording_conflicts

    for clash in wording_conflicts(ctx.pack, ctx.cofiring_samples):
        yield Finding(
            ERROR,
            clash.rule_a,
            f"fires together with {clash.rule_b} and words {clash.code} differently at the same rank "
            f"{clash.rank}: declare which is more specific with 'rank' (sampled intake #{clash.example})",
            "wording-precedence",
        )


def check_reviewed(ctx: LintContext) -> Iterator[Finding]:
    """Every rule names who last reviewed it and when (clinical review 2026-12 §5.5)."""
    for r in ctx.pack.rules:
        if not r.rule.reviewed_by or r.rule.reviewed_on is None:
            yield Finding(
                ERROR, r.id, "needs reviewed_by and reviewed_on (who last reviewed it, and when)", "reviewed"
            )


def check_awaiting_sign_off(ctx: LintContext) -> Iterator[Finding]:
    for r in ctx.pack.rules:
        if "awaiting" in (r.rule.reviewed_by or ""):
            yield Finding(INFO, r.id, "changed since its last clinical review: awaiting sign-off", "sign-off")


def check_fires_in_population(ctx: LintContext) -> Iterator[Finding]:
    if ctx.population <= 0:
        return
    fired = {f.rule_id for firings in ctx.population_firings for f in firings}
    for r in ctx.pack.rules:
        if r.id not in fired and ctx.can_fire[r.id]:
            yield Finding(
                INFO,
                r.id,
                f"fired for none of {ctx.population} synthetic intakes (seed {ctx.seed}): a rare case, "
                "or a condition narrower than intended",
                "population",
            )


CHECKS: list[Check] = [
    check_active_rules,
    check_naloxone_for_every_intake,
    check_baseline_level_of_care,
    check_conditions_can_hold,
    check_flags_can_be_set,
    check_examples,
    check_recommend_and_avoid,
    check_wordings_have_precedence,
    check_reviewed,
    check_review_dates,
    check_awaiting_sign_off,
    check_evidence_basis,
    check_unused_facts,
    check_codes_produced,
    check_fires_in_population,
]
"""Every lint check, in report order. Checks that can find errors come first."""


def run_checks(ctx: LintContext, checks: Iterable[Check] | None = None) -> list[Finding]:
    return [f for check in (CHECKS if checks is None else checks) for f in check(ctx)]
