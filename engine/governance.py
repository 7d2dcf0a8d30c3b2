"""Rule governance, pure: lint a pack, run each rule's own examples, diff two packs, and
measure the impact of a change on a set of intakes."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, date
from typing import Any

from .cofiring import DEFAULT_SAMPLES, wording_conflicts
from .derive import derive
from .facts import FACTS
from .intake import Intake, parse_intake_obj
from .ir import ReferenceRunner
from .rulepack import RulePack

__all__ = ["Finding", "lint", "example_intake", "run_examples", "diff_packs", "impact"]

EXAMPLE_BASE: dict[str, Any] = {"assessment_date": "2026-01-15", "patient": {"age": 35}}
"""A rule example is a partial intake merged onto this base (an adult, nothing else known)."""


@dataclass(frozen=True)
class Finding:
    level: str  # "error" | "warning" | "info"
    rule_id: str
    message: str

    def __str__(self) -> str:
        return f"{self.level.upper():7} {self.rule_id}: {self.message}"


def lint(pack: RulePack, today: date, samples: int = DEFAULT_SAMPLES) -> list[Finding]:
    """Warnings a clinical lead should see; structural errors already failed loading.

    ``samples``: synthetic intakes searched for rules that fire together and word the same
    treatment differently without a declared precedence (0 skips the search)."""
    found: list[Finding] = []
    for clash in wording_conflicts(pack, samples) if samples else []:
        found.append(
            Finding(
                "error",
                clash.rule_a,
                f"fires together with {clash.rule_b} and words {clash.code} differently at the same "
                f"rank {clash.rank}: declare which is more specific with 'rank' "
                f"(first seen in synthetic intake #{clash.example})",
            )
        )
    for r in pack.rules:
        rule = r.rule
        if rule.review_date < today:
            found.append(Finding("warning", r.id, f"past its review date ({rule.review_date})"))
        if "awaiting" in rule.reviewed_by:
            found.append(Finding("info", r.id, "changed since the last clinical review: awaiting sign-off"))
        if rule.confirmation != "confirmed":
            found.append(Finding("info", r.id, f"evidence basis is {rule.confirmation.replace('_', ' ')}"))
    used = {f for r in pack.rules for f in r.facts}
    for name in FACTS:
        if name not in used:
            found.append(Finding("info", "(pack)", f"fact '{name}' is not used by any rule"))
    produced = {t.code for r in pack.rules for t in r.rule.then}
    for code in pack.codes:
        if code not in produced:
            found.append(Finding("info", "(pack)", f"code '{code}' is never produced"))
    return found


def _merge(base: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in extra.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _merge(out[key], value)
        else:
            out[key] = value
    return out


def example_intake(partial: dict[str, Any]) -> Intake:
    return parse_intake_obj(_merge(EXAMPLE_BASE, partial))


@dataclass
class ExampleResult:
    rule_id: str
    expected: bool
    fired: bool
    note: str = ""
    error: str = ""

    @property
    def ok(self) -> bool:
        return not self.error and self.expected == self.fired


def run_examples(pack: RulePack, runner: Any | None = None) -> list[ExampleResult]:
    """Evaluate every rule's own fires / does_not_fire examples against the whole pack."""
    runner = runner or ReferenceRunner(pack)
    results = []
    for r in pack.rules:
        cases = [(True, e) for e in r.rule.examples.fires] + [
            (False, e) for e in r.rule.examples.does_not_fire
        ]
        for expected, example in cases:
            results.append(_one(runner, r.id, expected, example.intake, example.note or ""))
    return results


def _one(runner: Any, rule_id: str, expected: bool, partial: dict[str, Any], note: str) -> ExampleResult:
    try:
        intake = example_intake(partial)
    except Exception as exc:  # an example that is not a valid intake is a pack defect
        return ExampleResult(rule_id, expected, False, note, error=f"invalid example intake: {exc}")
    fired = {f.rule_id for f in runner.run(derive(intake))}
    return ExampleResult(rule_id, expected, rule_id in fired, note)


@dataclass
class PackDiff:
    added: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    changed: list[str] = field(default_factory=list)
    changed_without_version_bump: list[str] = field(default_factory=list)


def diff_packs(old: RulePack, new: RulePack) -> PackDiff:
    before = {r.id: r.rule for r in old.rules}
    after = {r.id: r.rule for r in new.rules}
    d = PackDiff(
        added=sorted(set(after) - set(before)),
        removed=sorted(set(before) - set(after)),
    )
    for rid in sorted(set(before) & set(after)):
        if before[rid].model_dump() != after[rid].model_dump():
            d.changed.append(rid)
            if after[rid].version <= before[rid].version:
                d.changed_without_version_bump.append(rid)
    return d


def impact(old: Any, new: Any, intakes: list[Intake]) -> list[dict[str, Any]]:
    """For each intake whose plan changes between two engines: codes gained and lost."""
    changes = []
    for n, intake in enumerate(intakes):
        a = _codes(old, intake)
        b = _codes(new, intake)
        if a != b:
            changes.append({"intake": n, "gained": sorted(b - a), "lost": sorted(a - b)})
    return changes


def _codes(engine: Any, intake: Intake) -> set[str]:
    from datetime import datetime

    plan = engine.evaluate(intake, datetime(2000, 1, 1, tzinfo=UTC))
    out = {f"{i.kind}:{i.code}" for i in plan.items()}
    out.add(f"level:{plan.level_of_care.code}")
    out.update(f"alert:{a.code}" for a in plan.alerts)
    return out
