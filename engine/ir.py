"""Pure reference interpreter of the condition language.

Three jobs: the test oracle for the durable_rules engine (same rules must fire), the
"why not" answer (the first clause that failed), and the three-valued reading used to find
missing information (a rule whose outcome depends on an unknown fact).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import cache
from typing import Any

from .derive import Facts
from .rulespec import All, AnyOf, Cond, FlagRef, Not, Test

__all__ = ["Firing", "holds", "holds3", "why_not", "ReferenceRunner", "matched_facts"]


@dataclass(frozen=True)
class Firing:
    rule_id: str
    matched_facts: dict[str, Any]


def _test(t: Test, facts: Facts) -> bool:
    if t.op == "known":
        return (t.fact in facts) is t.value
    if t.fact not in facts:
        return False
    v = facts[t.fact]
    match t.op:
        case "is":
            return v == t.value and type(v) is type(t.value) or _num_eq(v, t.value)
        case "is_not":
            return v != t.value
        case "in":
            return v in t.value  # type: ignore[operator]
        case "not_in":
            return v not in t.value  # type: ignore[operator]
        case "below":
            return v < t.value  # type: ignore[operator]
        case "at_most":
            return v <= t.value  # type: ignore[operator]
        case "above":
            return v > t.value  # type: ignore[operator]
        case "at_least":
            return v >= t.value  # type: ignore[operator]
    raise ValueError(f"unknown operator {t.op}")


def _num_eq(a: Any, b: Any) -> bool:
    numeric = (int, float)
    return (
        isinstance(a, numeric)
        and isinstance(b, numeric)
        and not isinstance(a, bool)
        and not isinstance(b, bool)
        and a == b
    )


Check = Callable[[Facts, frozenset[str]], bool]
Check3 = Callable[[Facts, frozenset[str]], "bool | None"]


def holds(cond: Cond, facts: Facts, flags: frozenset[str] = frozenset()) -> bool:
    """Two-valued (closed-world) truth: what decides whether a rule fires."""
    return _compiled(cond)(facts, flags)


def holds3(cond: Cond, facts: Facts, flags: frozenset[str] = frozenset()) -> bool | None:
    """Kleene three-valued truth: None when the answer depends on an unknown fact."""
    return _compiled3(cond)(facts, flags)


@cache
def _compiled(cond: Cond) -> Check:
    """The condition as nested closures, built once per condition (conditions are frozen)."""
    if isinstance(cond, Test):
        return _test_check(cond)
    if isinstance(cond, FlagRef):
        flag = cond.flag
        return lambda facts, flags: flag in flags
    if isinstance(cond, All):
        parts = tuple(_compiled(c) for c in cond.items)
        return lambda facts, flags: all(p(facts, flags) for p in parts)
    if isinstance(cond, AnyOf):
        parts = tuple(_compiled(c) for c in cond.items)
        return lambda facts, flags: any(p(facts, flags) for p in parts)
    inner = _compiled(cond.item)
    return lambda facts, flags: not inner(facts, flags)


def _test_check(t: Test) -> Check:
    fact = t.fact
    if t.op == "known":
        wanted = t.value
        return lambda facts, flags: (fact in facts) is wanted
    return lambda facts, flags: fact in facts and _test(t, facts)


@cache
def _compiled3(cond: Cond) -> Check3:
    if isinstance(cond, Test):
        fact, known = cond.fact, cond.op == "known"
        if known:
            wanted = cond.value
            return lambda facts, flags: (fact in facts) is wanted
        return lambda facts, flags: _test(cond, facts) if fact in facts else None
    if isinstance(cond, FlagRef):
        flag = cond.flag
        return lambda facts, flags: flag in flags
    if isinstance(cond, All):
        parts = tuple(_compiled3(c) for c in cond.items)
        return lambda facts, flags: _and3([p(facts, flags) for p in parts])
    if isinstance(cond, AnyOf):
        parts = tuple(_compiled3(c) for c in cond.items)
        return lambda facts, flags: _or3([p(facts, flags) for p in parts])
    inner = _compiled3(cond.item)

    def negated(facts: Facts, flags: frozenset[str]) -> bool | None:
        value = inner(facts, flags)
        return None if value is None else not value

    return negated


def _and3(values: list[bool | None]) -> bool | None:
    return False if False in values else (None if None in values else True)


def _or3(values: list[bool | None]) -> bool | None:
    return True if True in values else (None if None in values else False)


def why_not(cond: Cond, facts: Facts, flags: frozenset[str] = frozenset()) -> str:
    """The first clause that kept a condition from holding, in a clinician's words."""
    if isinstance(cond, All):
        for item in cond.items:
            if not holds(item, facts, flags):
                return why_not(item, facts, flags)
        return "all conditions hold"
    if isinstance(cond, AnyOf):
        return "none of: " + "; ".join(why_not(c, facts, flags) for c in cond.items)
    if isinstance(cond, Not):
        return f"excluded because: {_describe(cond.item)}"
    if isinstance(cond, FlagRef):
        return f"{cond.flag.replace('_', ' ')} was not established"
    if cond.op != "known" and cond.fact not in facts:
        return f"{cond.fact} is unknown (needs: {cond.describe()})"
    if cond.op == "known":
        return f"needs {cond.describe()}"
    return f"{cond.fact} is {_value(facts[cond.fact])} (needs: {cond.describe()})"


def _describe(cond: Cond) -> str:
    if isinstance(cond, Test | FlagRef):
        return cond.describe()
    if isinstance(cond, Not):
        return "not (" + _describe(cond.item) + ")"
    joiner = " and " if isinstance(cond, All) else " or "
    return "(" + joiner.join(_describe(c) for c in cond.items) + ")"


def _value(v: Any) -> str:
    return str(v).lower() if isinstance(v, bool) else str(v)


def matched_facts(facts_used: tuple[str, ...], flags_used: tuple[str, ...], facts: Facts) -> dict[str, Any]:
    found: dict[str, Any] = {name: facts[name] for name in facts_used if name in facts}
    found.update({f"flag:{f}": True for f in flags_used})
    return found


class ReferenceRunner:
    """Runs a RulePack with the pure interpreter; strata give flags before their users."""

    def __init__(self, pack: Any) -> None:
        self._rules = sorted(pack.rules, key=lambda r: (r.stratum, r.id))

    def run(self, facts: Facts) -> list[Firing]:
        flags: set[str] = set()
        fired: list[Firing] = []
        for r in self._rules:
            if holds(r.cond, facts, frozenset(flags)):
                fired.append(Firing(r.id, matched_facts(r.facts, r.flags, facts)))
                flags.update(r.rule.sets)
        return sorted(fired, key=lambda f: f.rule_id)
