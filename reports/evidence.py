"""Numbered citations and the evidence appendix.

Sources are numbered by first appearance (alerts, then the pathway in timeline order). Each
appendix entry lists every locator the plan cites, the rules that cite it, and each rule's
review date, flagged when it is past relative to the assessment date.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import date

from carepath.engine import CarePlan, RulePack
from carepath.engine.plan import CitationOut

__all__ = ["CitingRule", "Evidence", "Source", "Use"]


@dataclass(frozen=True)
class CitingRule:
    id: str
    review_date: date | None
    overdue: bool


@dataclass
class Use:
    locator: str
    rules: list[CitingRule] = field(default_factory=list)

    def by_review(self) -> list[tuple[date | None, bool, list[str]]]:
        """Citing rules grouped by review date (one date printed once): (date, overdue, ids)."""
        groups: dict[date | None, list[CitingRule]] = {}
        for r in self.rules:
            groups.setdefault(r.review_date, []).append(r)
        return [(d, any(r.overdue for r in rs), [r.id for r in rs]) for d, rs in groups.items()]


@dataclass
class Source:
    n: int
    key: str
    title: str
    uses: list[Use] = field(default_factory=list)


class Evidence:
    def __init__(
        self, plan: CarePlan, pack: RulePack | None, entries: Iterable[tuple[list[str], list[CitationOut]]]
    ):
        self._plan = plan
        self._pack = pack
        self._rules = pack.by_id if pack is not None else {}
        self._by_key: dict[str, Source] = {}
        for rule_ids, citations in entries:
            for c in citations:
                self._add(c, self._citing(rule_ids, c))

    @property
    def pack_matches(self) -> bool:
        return self._pack is not None and self._pack.sha256 == self._plan.ruleset.sha256

    @property
    def sources(self) -> list[Source]:
        return list(self._by_key.values())

    @property
    def overdue(self) -> list[str]:
        return sorted({r.id for s in self.sources for u in s.uses for r in u.rules if r.overdue})

    def refs(self, citations: Iterable[CitationOut]) -> list[int]:
        return sorted({self._by_key[c.key].n for c in citations})

    def _add(self, c: CitationOut, rules: list[CitingRule]) -> None:
        source = self._by_key.get(c.key)
        if source is None:
            source = self._by_key[c.key] = Source(len(self._by_key) + 1, c.key, c.title)
        use = next((u for u in source.uses if u.locator == c.locator), None)
        if use is None:
            use = Use(c.locator)
            source.uses.append(use)
        known = {r.id for r in use.rules}
        use.rules.extend(r for r in rules if r.id not in known)

    def _citing(self, rule_ids: list[str], c: CitationOut) -> list[CitingRule]:
        rules = self._rules
        exact = [rid for rid in rule_ids if rid in rules and _cites(rules[rid].rule.citations, c)]
        return [self._rule(rid) for rid in (exact or rule_ids)]

    def _rule(self, rule_id: str) -> CitingRule:
        found = self._rules.get(rule_id)
        review = found.rule.review_date if found is not None else None
        overdue = review is not None and review < self._plan.assessment_date
        return CitingRule(rule_id, review, overdue)


def _cites(refs: Iterable[object], c: CitationOut) -> bool:
    return any(getattr(r, "key", None) == c.key and getattr(r, "locator", None) == c.locator for r in refs)
