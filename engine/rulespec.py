"""Schema of a rule document, and its condition language.

A rule is a cited, versioned document a clinician can review without reading Python::

    id: OUD-MOUD-110
    version: 1
    status: active                      # active | draft | retired (only active rules run)
    title: ...
    phase: medication
    when:                               # the condition (see below)
      all:
        - {fact: cows_score, below: 8}
        - {fact: uses_fentanyl, is: true}
    then:                               # what the plan says
      - {code: moud.buprenorphine_low_dose_induction, kind: recommend, text: "...", rank: 50}
      - {code: alert.precipitated_withdrawal_risk, severity: warning}
      - {code: loc.inpatient_managed, effect: floor}      # level-of-care effects
      - {code: moud.naltrexone_xr, kind: consider, start: after_withdrawal,
         start_condition: "...", text: "...", rank: 40}
      - {code: moud.buprenorphine, kind: caution, text: "...", forbids: [OUD-MOUD-101, default]}
    sets: [precipitated_withdrawal_risk]   # flags other rules may require (chaining)
    rationale: ...
    citations: [{key: S03, locator: "GuidelineCentral 4054694"}]
    knowledge_base: [F-26, F-49]
    confirmation: confirmed | confirmed_secondary | unconfirmed | design_inference
    evidence_grade: "..."
    review_date: 2027-06-30             # next review (staggered by how fast the evidence moves)
    reviewed_by: clinical-lead           # who last reviewed the rule, and when
    reviewed_on: 2026-12-01
    examples:
      fires: [{intake: {...partial intake...}}]
      does_not_fire: [{intake: {...}}]

Condition language: ``always`` (as the whole condition: applies to every intake),
``{all: [...]}``, ``{any: [...]}``, ``{not: ...}``, ``{flag: NAME}`` (only
directly under the top-level ``all``), and tests on one fact::

    {fact: F, is: V}  {fact: F, is_not: V}  {fact: F, in: [..]}  {fact: F, not_in: [..]}
    {fact: F, below: N}  {fact: F, at_most: N}  {fact: F, above: N}  {fact: F, at_least: N}
    {fact: F, known: true|false}

Every test but ``known`` is false when the fact is unknown (closed world for firing);
``engine.explain`` uses the three-valued reading to find answers that could change the plan.

One decision per treatment (Plan v2). Several rules may speak of the same code; the plan keeps
one item per code:

- ``rank`` orders the wordings of a code: the highest-ranked wording of the rules that fired
  becomes the item's ``text`` (and its ``start``); the others go to ``superseded``. A then-item
  without text keeps the code's default wording at rank 0. Two rules that can fire together and
  word a code differently at the same rank are a pack defect (``carepath rules lint``).
- ``kind: caution`` is a warning attached to the item of the same code (``cautions``); it stands
  alone only when nothing else speaks of the code. ``forbids`` lists the rules (or ``default``,
  the code's own wording) whose wording the warning contradicts: those wordings can never be the
  item's text while it applies, and a pack where no other wording is left is refused.
- ``avoid`` wins over every positive kind; the positive wordings go to "considered, not
  recommended".
- ``start`` (``now`` | ``after_withdrawal`` | ``conditional``) with ``start_condition`` plans a
  later step; ``text_for`` gives the wording for one jurisdiction (e.g. ``{US: "..."}``), so a
  US-only note never reaches a UK plan.
- Texts may name intake facts in braces (``{qt_prolonging_drugs}``); the rule's condition must
  make the fact known.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

__all__ = [
    "Cond",
    "Test",
    "FlagRef",
    "All",
    "AnyOf",
    "Not",
    "Rule",
    "ThenItem",
    "Example",
    "parse_condition",
    "OPS",
    "KINDS",
    "PHASES",
    "referenced_facts",
    "referenced_flags",
    "walk",
    "JURISDICTIONS",
]

OPS = ("is", "is_not", "in", "not_in", "below", "at_most", "above", "at_least", "known")
NUMERIC_OPS = ("below", "at_most", "above", "at_least")
KINDS = ("recommend", "consider", "caution", "avoid")
PHASES = (
    "withdrawal_management",
    "level_of_care",
    "medication",
    "medical",
    "psychosocial",
    "dual_diagnosis",
    "harm_reduction",
    "aftercare",
)

Scalar = bool | int | float | str


@dataclass(frozen=True)
class Test:
    fact: str
    op: str
    value: Scalar | tuple[Scalar, ...]

    def describe(self) -> str:
        words = {
            "is": "is",
            "is_not": "is not",
            "in": "is one of",
            "not_in": "is none of",
            "below": "<",
            "at_most": "<=",
            "above": ">",
            "at_least": ">=",
        }
        if self.op == "known":
            return f"{self.fact} is {'known' if self.value else 'unknown'}"
        value = self.value
        shown = ", ".join(map(_show, value)) if isinstance(value, tuple) else _show(value)
        return f"{self.fact} {words[self.op]} {shown}"


def _show(v: Scalar) -> str:
    return str(v).lower() if isinstance(v, bool) else str(v)


@dataclass(frozen=True)
class FlagRef:
    flag: str

    def describe(self) -> str:
        return f"flag {self.flag} is set"


@dataclass(frozen=True)
class All:
    items: tuple[Cond, ...]


@dataclass(frozen=True)
class AnyOf:
    items: tuple[Cond, ...]


@dataclass(frozen=True)
class Not:
    item: Cond


Cond = Test | FlagRef | All | AnyOf | Not


class ConditionSyntaxError(ValueError):
    pass


def parse_condition(raw: Any, top: bool = True) -> Cond:
    if raw == "always" and top:
        return All(())  # applies to every intake; records no triggering facts
    if not isinstance(raw, dict) or len(raw) == 0:
        raise ConditionSyntaxError("a condition must be a non-empty mapping")
    if "all" in raw or "any" in raw:
        key = "all" if "all" in raw else "any"
        _only(raw, {key})
        items = raw[key]
        if not isinstance(items, list) or not items:
            raise ConditionSyntaxError(f"'{key}' needs a non-empty list")
        parsed = tuple(parse_condition(x, top=top and key == "all") for x in items)
        return All(parsed) if key == "all" else AnyOf(parsed)
    if "not" in raw:
        _only(raw, {"not"})
        return Not(parse_condition(raw["not"], top=False))
    if "flag" in raw:
        _only(raw, {"flag"})
        if not top:
            raise ConditionSyntaxError("a flag may only appear directly under the top-level 'all'")
        return FlagRef(str(raw["flag"]))
    return _parse_test(raw)


def _only(raw: dict[str, Any], keys: set[str]) -> None:
    extra = set(raw) - keys
    if extra:
        raise ConditionSyntaxError(f"unexpected keys {sorted(extra)} beside {sorted(keys)}")


def _parse_test(raw: dict[str, Any]) -> Test:
    if "fact" not in raw:
        raise ConditionSyntaxError(f"a test needs 'fact' and one of {OPS}; got {sorted(raw)}")
    ops = [k for k in raw if k != "fact"]
    if len(ops) != 1 or ops[0] not in OPS:
        raise ConditionSyntaxError(f"test on '{raw['fact']}' needs exactly one of {OPS}")
    op, value = ops[0], raw[ops[0]]
    if op in ("in", "not_in"):
        if not isinstance(value, list) or not value:
            raise ConditionSyntaxError(f"'{op}' needs a non-empty list")
        return Test(str(raw["fact"]), op, tuple(value))
    if op == "known" and not isinstance(value, bool):
        raise ConditionSyntaxError("'known' takes true or false")
    if op in NUMERIC_OPS and (isinstance(value, bool) or not isinstance(value, int | float)):
        raise ConditionSyntaxError(f"'{op}' needs a number")
    if not isinstance(value, bool | int | float | str):
        raise ConditionSyntaxError(f"'{op}' needs a single value")
    return Test(str(raw["fact"]), op, value)


def referenced_facts(cond: Cond) -> list[str]:
    """Facts a condition tests, in order of appearance, without repeats."""
    seen: dict[str, None] = {}
    walk(cond, lambda c: seen.setdefault(c.fact, None) if isinstance(c, Test) else None)
    return list(seen)


def referenced_flags(cond: Cond) -> list[str]:
    seen: dict[str, None] = {}
    walk(cond, lambda c: seen.setdefault(c.flag, None) if isinstance(c, FlagRef) else None)
    return list(seen)


def walk(cond: Cond, visit: Any) -> None:
    """Call ``visit`` on every node of a condition, depth first."""
    visit(cond)
    if isinstance(cond, All | AnyOf):
        for item in cond.items:
            walk(item, visit)
    elif isinstance(cond, Not):
        walk(cond.item, visit)


class _Strict(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class CitationRef(_Strict):
    key: str
    locator: str = Field(min_length=1)


JURISDICTIONS = ("US", "UK", "DE", "CA")


class ThenItem(_Strict):
    code: str
    kind: Literal["recommend", "consider", "caution", "avoid"] | None = None
    text: str | None = None
    severity: Literal["urgent", "warning", "info"] | None = None
    effect: Literal["floor", "need", "ceiling"] | None = None
    rank: int | None = Field(default=None, ge=0, le=100)
    """Precedence of this wording among the wordings of the same code (higher wins). Default:
    10 with a text, 0 without (the code's default wording)."""
    forbids: list[str] = Field(default_factory=list)
    """Cautions only: rule ids (or ``default``) whose wording this warning contradicts."""
    start: Literal["now", "after_withdrawal", "conditional"] | None = None
    start_condition: str | None = None
    text_for: dict[str, str] = Field(default_factory=dict)
    """The wording in one jurisdiction, replacing ``text`` there (keys: US, UK, DE, CA)."""

    @property
    def precedence(self) -> int:
        if self.rank is not None:
            return self.rank
        return 10 if self.text or self.text_for else 0

    def wording(self, jurisdiction: str) -> str | None:
        return self.text_for.get(jurisdiction, self.text)

    @model_validator(mode="after")
    def _consistent(self) -> ThenItem:
        if self.start not in (None, "now") and not self.start_condition:
            raise ValueError(f"{self.code}: start '{self.start}' needs a start_condition")
        if self.start_condition and self.start in (None, "now"):
            raise ValueError(f"{self.code}: start_condition given without a later start")
        if self.forbids and self.kind != "caution":
            raise ValueError(f"{self.code}: only a caution may forbid other wordings")
        unknown = set(self.text_for) - set(JURISDICTIONS)
        if unknown:
            raise ValueError(f"{self.code}: text_for has unknown jurisdictions {sorted(unknown)}")
        if self.start not in (None, "now") and self.kind not in ("recommend", "consider"):
            raise ValueError(f"{self.code}: only a recommend/consider item can start later")
        return self


class Example(_Strict):
    intake: dict[str, Any]
    note: str | None = None


class Examples(_Strict):
    fires: list[Example] = Field(min_length=1)
    does_not_fire: list[Example] = Field(default_factory=list)


class Rule(_Strict):
    id: str = Field(pattern=r"^OUD-[A-Z]{2,5}-\d{3}$")
    version: int = Field(ge=1)
    status: Literal["active", "draft", "retired"]
    title: str = Field(min_length=5)
    phase: Literal[
        "withdrawal_management",
        "level_of_care",
        "medication",
        "medical",
        "psychosocial",
        "dual_diagnosis",
        "harm_reduction",
        "aftercare",
        "alerts",
    ]
    when: Any
    then: list[ThenItem] = Field(default_factory=list)
    sets: list[str] = Field(default_factory=list)
    rationale: str = Field(min_length=10)
    citations: list[CitationRef] = Field(min_length=1)
    knowledge_base: list[str] = Field(min_length=1)
    confirmation: Literal["confirmed", "confirmed_secondary", "unconfirmed", "design_inference"]
    evidence_grade: str = Field(min_length=1)
    review_date: date
    reviewed_by: str | None = Field(default=None, min_length=3)
    reviewed_on: date | None = None
    """Who last reviewed the rule, and when. Optional so that packs released before December
    2026 still load for ``rules diff``; ``carepath rules lint`` refuses a pack without them."""
    examples: Examples

    @field_validator("knowledge_base")
    @classmethod
    def _fact_ids(cls, ids: list[str]) -> list[str]:
        for fid in ids:
            if not (fid.startswith("F-") or fid.startswith("R")):
                raise ValueError(f"knowledge-base reference '{fid}' must look like F-nn or Rnn")
        return ids

    @model_validator(mode="after")
    def _review_order(self) -> Rule:
        if self.reviewed_on is not None and self.reviewed_on > self.review_date:
            raise ValueError("reviewed_on is after the next review_date")
        return self

    @model_validator(mode="after")
    def _counter_example(self) -> Rule:
        if self.when != "always" and not self.examples.does_not_fire:
            raise ValueError("examples.does_not_fire needs a case (only 'always' rules may omit it)")
        return self
