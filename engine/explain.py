"""Trace, "why not", and missing information.

- The trace is what the engine recorded while rules fired (never reconstructed).
- "Why not" for medications and the preferred setting comes from ``engine.ir.why_not``: the
  first clause of the relevant rule that did not hold.
- Missing information: a rule whose three-valued outcome is *unknown* could change the plan
  if an absent fact were answered; the intake fields behind those facts are listed.
"""

from __future__ import annotations

from typing import Literal

from .derive import Facts
from .facts import FACTS
from .intake import FIELD_PATHS, FIELD_PREREQUISITES
from .ir import Firing, holds, holds3, why_not
from .labels import field_label
from .plan import Item, MissingInfo, NotRecommended, TraceEntry
from .rulepack import PackRule, RulePack
from .rulespec import All

__all__ = ["trace_of", "missing_information", "why_not_recommended"]

WHY_NOT_CODES = ("moud.methadone", "moud.buprenorphine", "moud.naltrexone_xr")
_PREFERRED_CODE = {
    "methadone": "moud.methadone",
    "buprenorphine": "moud.buprenorphine",
    "naltrexone": "moud.naltrexone_xr",
}
_MAX_RULES_NAMED = 3


def trace_of(firings: list[Firing]) -> list[TraceEntry]:
    return [TraceEntry(rule_id=f.rule_id, matched_facts=f.matched_facts) for f in firings]


def _flags(pack: RulePack, firings: list[Firing]) -> frozenset[str]:
    by_id = pack.by_id
    return frozenset(flag for f in firings for flag in by_id[f.rule_id].rule.sets)


_UNKNOWN = object()
_UNDECIDED: dict[tuple[object, ...], bool] = {}
"""Per-rule memo of the three-valued reading, keyed by the rule and the values of the facts and
flags it reads (absent facts as unknown). A rule's answer depends on nothing else, so the work
is done once per distinct situation, not once per evaluation."""
_MEMO_LIMIT = 200_000


def _candidates(pack: RulePack, facts: Facts) -> list[PackRule]:
    """Rules that read at least one unknown fact (only those can depend on one)."""
    readers = pack.readers
    positions: set[int] = set()
    for name in readers.keys() - facts.keys():
        positions.update(readers[name])
    return [pack.rules[n] for n in sorted(positions)]


def _undecided(rule: PackRule, facts: Facts, flags: frozenset[str]) -> bool:
    """True when the rule's outcome depends on an unknown fact."""
    values = tuple(facts.get(name, _UNKNOWN) for name in rule.facts)
    key = (rule.id, values, tuple(f in flags for f in rule.flags))
    found = _UNDECIDED.get(key)
    if found is None:
        if len(_UNDECIDED) > _MEMO_LIMIT:
            _UNDECIDED.clear()
        found = _UNDECIDED[key] = holds3(rule.cond, facts, flags) is None
    return found


def missing_information(pack: RulePack, facts: Facts, firings: list[Firing]) -> list[MissingInfo]:
    flags = _flags(pack, firings)
    fired = {f.rule_id for f in firings}
    by_field: dict[str, list[PackRule]] = {}
    for rule in _candidates(pack, facts):
        if not _undecided(rule, facts, flags):
            continue
        for fact in rule.facts:
            if fact in facts:
                continue
            for field in FACTS[fact].sources:
                if not _answered(field, facts):
                    by_field.setdefault(field, []).append(rule)
    _ask_prerequisites_first(by_field, facts)
    found = [
        MissingInfo(
            field=field, label=field_label(field), why_it_matters=_why(rules, fired), impact=_impact(rules)
        )
        for field, rules in by_field.items()
    ]
    return sorted(found, key=lambda m: (m.impact != "safety", _field_order(m.field)))


def _ask_prerequisites_first(by_field: dict[str, list[PackRule]], facts: Facts) -> None:
    """A field the intake accepts only after another (dose after the MOUD) is not asked for
    while that one is missing: its rules are named under the prerequisite instead. With no
    MOUD taken, questions about the MOUD (dose, months, stability) are not asked at all."""
    for field, prerequisite in [*FIELD_PREREQUISITES.items(), *_NEEDS_THE_MOUD]:
        if field in by_field and prerequisite in by_field:
            by_field[prerequisite] += by_field.pop(field)
    if facts.get("current_moud") == "none":
        for field in _ABOUT_THE_MOUD:
            by_field.pop(field, None)


_NEEDS_THE_MOUD = (("current_treatment.stable", "current_treatment.moud"),)
"""Asked only once the MOUD is known (the intake accepts it alone, but it means nothing alone)."""
_ABOUT_THE_MOUD = (
    "current_treatment.dose_mg",
    "current_treatment.months_on_moud",
    "current_treatment.stable",
)


def _impact(rules: list[PackRule]) -> Literal["safety", "plan"]:
    for r in rules:
        for t in r.rule.then:
            if t.kind in ("avoid", "caution") or t.severity is not None or t.effect == "floor":
                return "safety"
    return "plan"


_SINGLE_SOURCE: dict[str, tuple[str, ...]] = {}
for _fact in FACTS.values():
    if len(_fact.sources) == 1:
        _SINGLE_SOURCE[_fact.sources[0]] = (*_SINGLE_SOURCE.get(_fact.sources[0], ()), _fact.name)
_SINGLE_SOURCE["current_treatment.moud"] = ("current_moud",)
"""``current_moud`` also reads the stage (after detox: none), but it is known only when the MOUD
question is settled, e.g. an explicit ``moud: null`` ("no MOUD"): then it is not asked again."""


def _answered(field: str, facts: Facts) -> bool:
    """A source field counts as answered when any fact read only from it is known."""
    return any(name in facts for name in _SINGLE_SOURCE.get(field, ()))


_ORDER = {path: n for n, path in enumerate(FIELD_PATHS)}


def _field_order(field: str) -> int:
    """Contract order (assessment, patient, stage, ... preferences), as on the intake form."""
    return _ORDER.get(field, len(_ORDER))


def _why(rules: list[PackRule], fired: set[str]) -> str:
    unique = sorted({r.id: r for r in rules}.values(), key=lambda r: r.id)
    named = [
        f"{r.id} ({r.rule.title}){' - currently applied' if r.id in fired else ''}"
        for r in unique[:_MAX_RULES_NAMED]
    ]
    more = len(unique) - len(named)
    tail = f" and {more} more rule(s)" if more > 0 else ""
    return "Could change: " + "; ".join(named) + tail


def why_not_recommended(
    pack: RulePack, facts: Facts, firings: list[Firing], items: list[Item], already: set[str]
) -> list[NotRecommended]:
    present = {i.code for i in items}
    wanted = list(WHY_NOT_CODES)
    preferred = _PREFERRED_CODE.get(str(facts.get("preferred_medication")))
    if preferred and preferred not in wanted:
        wanted.append(preferred)
    flags = _flags(pack, firings)
    continuing = (
        _CONTINUED_CODE.get(str(facts.get("current_moud"))) if "moud.continue_current" in present else None
    )
    out = []
    for code in wanted:
        if code in present or code in already or code == continuing:
            continue
        rules = _proposers(pack, code)
        if rules:
            first = min(rules, key=lambda r: (_failing_clauses(r, facts, flags), r.id))
            reason = f"{first.id} ({first.rule.title}) did not apply: {why_not(first.cond, facts, flags)}"
            if code == preferred:
                reason = "Patient's preferred medication. " + reason
            out.append(NotRecommended(code=code, reason=reason, rule_ids=[r.id for r in rules]))
    return out


_CONTINUED_CODE = {
    "methadone": "moud.methadone",
    "buprenorphine": "moud.buprenorphine",
    "naltrexone": "moud.naltrexone_xr",
}


def _failing_clauses(rule: PackRule, facts: Facts, flags: frozenset[str]) -> int:
    """How far a rule was from firing: the number of its top-level clauses that failed."""
    clauses = rule.cond.items if isinstance(rule.cond, All) else (rule.cond,)
    return sum(not holds(c, facts, flags) for c in clauses)


def _proposers(pack: RulePack, code: str) -> list[PackRule]:
    return list(pack.speakers.get(code, ()))
