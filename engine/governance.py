"""Rule governance, pure: lint a pack (engine/lint.py), run each rule's own examples, diff two
packs (with the version-bump guard), and measure the impact of a change on a set of intakes.

Nothing here reads files or the clock: the CLI (api/cli.py) loads packs and intakes, and
reports/impact.py renders the impact report as HTML.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, date, datetime
from typing import Any

from .derive import derive
from .errors import RulePackError
from .intake import Intake, parse_intake_obj
from .ir import ReferenceRunner
from .lint import CHECKS, ERROR, Check, Finding, LintContext, run_checks
from .rulepack import RulePack
from .rulespec import All, Cond, FlagRef, Not, Rule, Test, parse_condition

__all__ = [
    "Finding",
    "lint",
    "lint_errors",
    "require_clean",
    "example_intake",
    "run_examples",
    "ExampleResult",
    "diff_packs",
    "PackDiff",
    "RuleDiff",
    "format_diff",
    "impact",
    "ImpactReport",
    "IntakeImpact",
    "Change",
    "format_impact",
    "describe_condition",
]

EXAMPLE_BASE: dict[str, Any] = {"assessment_date": "2026-01-15", "patient": {"age": 35}}
"""A rule example is a partial intake merged onto this base (an adult, nothing else known)."""

REFUSAL_DATE = date(2000, 1, 1)
"""Errors never depend on the date; refusal checks run with a fixed one."""


# --- lint ---------------------------------------------------------------------------------------


def lint(
    pack: RulePack,
    today: date,
    population: int = 0,
    seed: int = 1,
    checks: Iterable[Check] | None = None,
    cofiring_samples: int = 0,
) -> list[Finding]:
    """Every finding of every check (engine/lint.py CHECKS), errors first within each check.

    ``cofiring_samples``: intakes sampled over the contract to find rules that fire together and
    word a treatment differently at the same rank (0 skips it; the service's start-up check does)."""
    return run_checks(LintContext(pack, today, population, seed, cofiring_samples), checks)


_CLEAN: dict[str, list[Finding]] = {}


def lint_errors(pack: RulePack) -> list[Finding]:
    """The errors that refuse a pack (cached per pack content: the sha256 covers every file)."""
    if pack.sha256 not in _CLEAN:
        found = [f for f in lint(pack, REFUSAL_DATE, checks=CHECKS) if f.level == ERROR]
        _CLEAN[pack.sha256] = found
    return _CLEAN[pack.sha256]


def require_clean(pack: RulePack) -> None:
    """Raise RulePackError, in one line, unless the pack lints without errors."""
    errors = lint_errors(pack)
    if errors:
        first = errors[0]
        more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
        raise RulePackError(
            f"{pack.id} {pack.version} does not lint clean: {first.rule_id}: {first.message}{more}; "
            "run `carepath rules lint` for every finding"
        )


# --- examples -----------------------------------------------------------------------------------


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
    index: int = 0  # 1-based, within the rule's fires (or does_not_fire) list

    @property
    def ok(self) -> bool:
        return not self.error and self.expected == self.fired

    @property
    def label(self) -> str:
        which = "fires" if self.expected else "does_not_fire"
        return f"{which}[{self.index}]" + (f" ({self.note})" if self.note else "")


def run_examples(pack: RulePack, runner: Any | None = None) -> list[ExampleResult]:
    """Evaluate every rule's own fires / does_not_fire examples against the whole pack."""
    runner = runner or ReferenceRunner(pack)
    results = []
    for r in pack.rules:
        for expected, examples in ((True, r.rule.examples.fires), (False, r.rule.examples.does_not_fire)):
            for n, example in enumerate(examples, 1):
                results.append(_one(runner, r.id, expected, example.intake, example.note or "", n))
    return results


def _one(
    runner: Any, rule_id: str, expected: bool, partial: dict[str, Any], note: str, index: int
) -> ExampleResult:
    try:
        intake = example_intake(partial)
    except Exception as exc:  # an example that is not a valid intake is a pack defect
        return ExampleResult(rule_id, expected, False, note, f"invalid example intake: {exc}", index)
    fired = {f.rule_id for f in runner.run(derive(intake))}
    return ExampleResult(rule_id, expected, rule_id in fired, note, index=index)


# --- diff ---------------------------------------------------------------------------------------


def describe_condition(cond: Cond) -> str:
    """A condition in one line: ``all(cows_score >= 8, not(uses_fentanyl is true))``."""
    if isinstance(cond, Test | FlagRef):
        return cond.describe()
    if isinstance(cond, Not):
        return f"not({describe_condition(cond.item)})"
    if isinstance(cond, All) and not cond.items:
        return "always"
    word = "all" if isinstance(cond, All) else "any"
    return f"{word}({', '.join(describe_condition(c) for c in cond.items)})"


def _clauses(rule: Rule) -> list[str]:
    cond = parse_condition(rule.when)
    if isinstance(cond, All) and cond.items:
        return [describe_condition(c) for c in cond.items]
    return [describe_condition(cond)]


def _action(item: Any) -> str:
    parts = [item.code] + [
        f"{k}={v}"
        for k, v in (("kind", item.kind), ("severity", item.severity), ("effect", item.effect))
        if v
    ]
    return " ".join(parts) + (f' "{item.text}"' if item.text else "")


@dataclass
class RuleDiff:
    rule_id: str
    old_version: int
    new_version: int
    conditions_added: list[str] = field(default_factory=list)
    conditions_removed: list[str] = field(default_factory=list)
    actions_added: list[str] = field(default_factory=list)
    actions_removed: list[str] = field(default_factory=list)
    citations_added: list[str] = field(default_factory=list)
    citations_removed: list[str] = field(default_factory=list)
    fields_changed: list[str] = field(default_factory=list)  # anything else: title, rationale, ...

    @property
    def version_bumped(self) -> bool:
        return self.new_version > self.old_version


@dataclass
class PackDiff:
    old: str  # "carepath-oud 2026.12.0"
    new: str
    added: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    changed: list[RuleDiff] = field(default_factory=list)
    codes_changed: list[str] = field(default_factory=list)  # codes.yaml wording and vocabulary
    citations_changed: list[str] = field(default_factory=list)  # citations.yaml registry
    pack_version_bumped: bool = True
    reviewed: list[str] = field(default_factory=list)  # only review records changed (no bump needed)

    @property
    def changed_without_version_bump(self) -> list[str]:
        return [c.rule_id for c in self.changed if not c.version_bumped]

    @property
    def any_change(self) -> bool:
        return bool(
            self.added or self.removed or self.changed or self.codes_changed or self.citations_changed
        )

    def problems(self) -> list[str]:
        """What the version-bump guard refuses."""
        found = [
            f"{c.rule_id} changed but kept version {c.old_version} (bump `version` in its rule file)"
            for c in self.changed
            if not c.version_bumped
        ]
        if self.any_change and not self.pack_version_bumped:
            found.append(
                f"the pack changed but rules/pack.yaml still says {self.new.split()[-1]} (bump `version`)"
            )
        return found

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["changed_without_version_bump"] = self.changed_without_version_bump
        out["problems"] = self.problems()
        return out


def _version_key(version: str) -> tuple[Any, ...]:
    return tuple(int(p) if p.isdigit() else p for p in version.replace("-", ".").split("."))


REVIEW_FIELDS = frozenset({"review_date", "reviewed_by", "reviewed_on"})
"""Review records, not clinical content: changing only these needs no version bump."""


def _content(rule: Rule) -> dict[str, Any]:
    return rule.model_dump(exclude=set(REVIEW_FIELDS))


def diff_packs(old: RulePack, new: RulePack) -> PackDiff:
    before = {r.id: r.rule for r in old.rules + tuple(_inactive(old))}
    after = {r.id: r.rule for r in new.rules + tuple(_inactive(new))}
    d = PackDiff(
        old=f"{old.id} {old.version}",
        new=f"{new.id} {new.version}",
        added=sorted(set(after) - set(before)),
        removed=sorted(set(before) - set(after)),
    )
    for rid in sorted(set(before) & set(after)):
        if _content(before[rid]) != _content(after[rid]):
            d.changed.append(_rule_diff(before[rid], after[rid]))
        elif before[rid].model_dump() != after[rid].model_dump():
            d.reviewed.append(rid)
    for code in sorted(set(old.codes) | set(new.codes)):
        if old.codes.get(code) != new.codes.get(code):
            what = "added" if code not in old.codes else "removed" if code not in new.codes else "changed"
            d.codes_changed.append(f"{code} {what}")
    for key in sorted(set(old.citations) | set(new.citations)):
        if old.citations.get(key) != new.citations.get(key):
            what = (
                "added" if key not in old.citations else "removed" if key not in new.citations else "changed"
            )
            d.citations_changed.append(f"{key} {what}")
    d.pack_version_bumped = _version_key(new.version) > _version_key(old.version)
    return d


class _Wrapped:
    """An inactive (draft/retired) rule seen by diff like an active one."""

    def __init__(self, rule: Rule) -> None:
        self.rule = rule
        self.id = rule.id


def _inactive(pack: RulePack) -> list[Any]:
    return [_Wrapped(r) for r in pack.inactive]


def _rule_diff(a: Rule, b: Rule) -> RuleDiff:
    rd = RuleDiff(a.id, a.version, b.version)
    ca, cb = _clauses(a), _clauses(b)
    rd.conditions_added = [c for c in cb if c not in ca]
    rd.conditions_removed = [c for c in ca if c not in cb]
    ta, tb = [_action(t) for t in a.then], [_action(t) for t in b.then]
    sa, sb = [f"sets flag {f}" for f in a.sets], [f"sets flag {f}" for f in b.sets]
    rd.actions_added = [t for t in tb + sb if t not in ta + sa]
    rd.actions_removed = [t for t in ta + sa if t not in tb + sb]
    cita = [f"{c.key} ({c.locator})" for c in a.citations]
    citb = [f"{c.key} ({c.locator})" for c in b.citations]
    rd.citations_added = [c for c in citb if c not in cita]
    rd.citations_removed = [c for c in cita if c not in citb]
    da, db = a.model_dump(), b.model_dump()
    rd.fields_changed = [
        k for k in da if k not in ("when", "then", "sets", "citations", "version") and da[k] != db[k]
    ]
    return rd


def format_diff(d: PackDiff, summary: bool = False) -> str:
    lines = [f"rules diff: {d.old} -> {d.new}"]
    lines.append(
        f"  {len(d.added)} added, {len(d.removed)} removed, {len(d.changed)} changed; "
        f"{len(d.codes_changed)} code and {len(d.citations_changed)} citation registry changes"
    )
    if not summary:
        lines += [f"  + {rid}" for rid in d.added] + [f"  - {rid}" for rid in d.removed]
        for c in d.changed:
            bump = (
                f"v{c.old_version} -> v{c.new_version}"
                if c.version_bumped
                else f"v{c.old_version}, NOT BUMPED"
            )
            lines.append(f"  ~ {c.rule_id} ({bump})")
            for label, values in (
                ("condition +", c.conditions_added),
                ("condition -", c.conditions_removed),
                ("action +", c.actions_added),
                ("action -", c.actions_removed),
                ("citation +", c.citations_added),
                ("citation -", c.citations_removed),
            ):
                lines += [f"      {label} {v}" for v in values]
            if c.fields_changed:
                lines.append(f"      changed: {', '.join(c.fields_changed)}")
        lines += [f"  codes.yaml: {c}" for c in d.codes_changed]
        lines += [f"  citations.yaml: {c}" for c in d.citations_changed]
    if d.reviewed:
        lines.append(
            f"  {len(d.reviewed)} rules re-reviewed only (review records changed, no version bump needed)"
        )
    problems = d.problems()
    lines += [f"REFUSED: {p}" for p in problems]
    if not problems:
        lines.append("version-bump guard: ok")
    return "\n".join(lines)


# --- impact -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Change:
    kind: str  # code | level | alert | recommendation | wording | rule_ids
    code: str
    before: str
    after: str

    def __str__(self) -> str:
        before, after = _brief(self.before, self.after)
        return f"{self.kind:14} {self.code}: {before or '-'} -> {after or '-'}"


def _brief(before: str, after: str, room: int = 90) -> tuple[str, str]:
    """Long wordings shown by what differs: the common start and end become '...'."""
    if len(before) <= room and len(after) <= room:
        return before, after
    start = 0
    while start < min(len(before), len(after)) and before[start] == after[start]:
        start += 1
    end = 0
    while end < min(len(before), len(after)) - start and before[-1 - end] == after[-1 - end]:
        end += 1
    start = max(0, start - 20)

    def cut(text: str) -> str:
        stop = len(text) - end + 20 if end > 20 else len(text)
        middle = text[start:stop]
        tail = "..." if stop < len(text) or len(middle) > room else ""
        return ("..." if start else "") + middle[:room] + tail

    return cut(before), cut(after)


@dataclass
class IntakeImpact:
    label: str  # "cases.ndjson line 17 (id synth-000017)" or "intakes/a.json (id P-1)"
    changes: list[Change]


@dataclass
class ImpactReport:
    old: str
    new: str
    intakes: int
    changed: list[IntakeImpact]
    refused: list[tuple[str, str]] = field(default_factory=list)  # (label, reason) under the new pack

    def ranked(self) -> list[IntakeImpact]:
        """Changed intakes, the weightiest change first (level, alert, recommendation, code,
        wording, rule ids), in input order within a rank: what a clinical lead reads first."""
        rank = {
            k: n for n, k in enumerate(("level", "alert", "recommendation", "code", "wording", "rule_ids"))
        }
        return sorted(self.changed, key=lambda ii: min(rank[c.kind] for c in ii.changes))

    def by_kind(self) -> dict[str, int]:
        """How many intakes have at least one change of each kind."""
        counts: Counter[str] = Counter()
        for ii in self.changed:
            counts.update({c.kind for c in ii.changes})
        return {k: counts[k] for k in CHANGE_KINDS if counts[k]}

    def by_code(self, top: int = 15) -> list[tuple[str, int]]:
        """The codes whose changes touch the most intakes."""
        counts: Counter[str] = Counter()
        for ii in self.changed:
            counts.update({c.code for c in ii.changes})
        return counts.most_common(top)

    def to_dict(self) -> dict[str, Any]:
        return {
            "old": self.old,
            "new": self.new,
            "intakes": self.intakes,
            "changed": len(self.changed),
            "by_kind": self.by_kind(),
            "by_code": dict(self.by_code()),
            "refused": [{"intake": label, "reason": reason} for label, reason in self.refused],
            "changes": [
                {"intake": ii.label, "changes": [asdict(c) for c in ii.changes]} for ii in self.changed
            ],
        }


CHANGE_KINDS = ("level", "code", "alert", "recommendation", "wording", "rule_ids")
"""level of care; a code gained or lost; an alert gained, lost or re-graded; recommend <-> consider
<-> avoid; the same recommendation worded differently; the same one made by other rules."""

_IMPACT_TIME = datetime(2000, 1, 1, tzinfo=UTC)


def impact(old: Any, new: Any, intakes: Sequence[tuple[str, Intake]] | Sequence[Intake]) -> ImpactReport:
    """Evaluate every intake on two engines and report each intake whose plan changes, and how.

    ``intakes``: (label, intake) pairs, or bare intakes (labelled ``#1``, ``#2``... 1-based).
    An intake the new pack refuses (an engine error) is listed under ``refused``.
    """
    labelled = [x if isinstance(x, tuple) else (f"#{n}", x) for n, x in enumerate(intakes, 1)]
    report = ImpactReport(_name(old), _name(new), len(labelled), [])
    for label, intake in labelled:
        a = _signature(old, intake)
        b = _signature(new, intake)
        if isinstance(b, str):
            report.refused.append((label, b))
            continue
        if isinstance(a, str):
            report.changed.append(IntakeImpact(label, [Change("code", "(plan)", f"refused: {a}", "plan")]))
            continue
        changes = _compare(a, b)
        if changes:
            report.changed.append(IntakeImpact(label, changes))
    return report


def _name(engine: Any) -> str:
    pack = getattr(engine, "pack", None)
    return f"{pack.id} {pack.version}" if pack is not None else type(engine).__name__


Entry = tuple[str, str, str, tuple[str, ...]]  # (kind or severity or level code, text, rationale, rule ids)
Signature = dict[str, dict[str, Entry]]


def _signature(engine: Any, intake: Intake) -> Signature | str:
    """code -> entry, for the plan's items, alerts and level of care (or the refusal's reason)."""
    from .errors import CarepathError

    try:
        plan = engine.evaluate(intake, _IMPACT_TIME)
    except CarepathError as exc:
        return str(exc)
    lvl = plan.level_of_care
    return {
        "items": {i.code: (i.kind, i.text, i.rationale, tuple(i.rule_ids)) for i in plan.items()},
        "alerts": {a.code: (a.severity, a.text, "", tuple(a.rule_ids)) for a in plan.alerts},
        "level": {"level_of_care": (lvl.code, "", lvl.rationale, tuple(lvl.rule_ids))},
    }


def _compare(a: Signature, b: Signature) -> list[Change]:
    out: list[Change] = []
    for section, gained_lost, regraded in (
        ("level", "level", "level"),
        ("alerts", "alert", "alert"),
        ("items", "code", "recommendation"),
    ):
        before, after = a[section], b[section]
        for code in sorted(set(before) | set(after)):
            x, y = before.get(code), after.get(code)
            if x is None or y is None:
                out.append(Change(gained_lost, code, x[0] if x else "", y[0] if y else ""))
            elif x[0] != y[0]:
                out.append(Change(regraded, code if section != "level" else "level_of_care", x[0], y[0]))
            elif section != "level":  # the level's wording and rules are its item's: compared there
                out += _same_decision(code, x, y)
    return out


def _same_decision(code: str, x: Entry, y: Entry) -> list[Change]:
    """The same code at the same strength: its wording, or the rules that made it, changed."""
    out = []
    if x[1] != y[1]:
        out.append(Change("wording", code, x[1], y[1]))
    if x[3] != y[3]:
        out.append(Change("rule_ids", code, ", ".join(x[3]), ", ".join(y[3])))
    elif x[2] != y[2]:  # the rationale names its rules, so it is only compared when they are the same
        out.append(Change("wording", f"{code} (rationale)", x[2], y[2]))
    return out


def format_impact(report: ImpactReport, limit: int = 50) -> str:
    share = f"{100 * len(report.changed) / report.intakes:.1f}%" if report.intakes else "0%"
    lines = [
        f"rules impact: {report.old} -> {report.new}",
        f"{report.intakes} intakes, {len(report.changed)} with a changed plan ({share}), "
        f"{len(report.refused)} refused by the new pack",
    ]
    kinds = report.by_kind()
    if kinds:
        lines.append("intakes by kind of change: " + ", ".join(f"{k} {n}" for k, n in kinds.items()))
        lines.append("codes changed most often: " + ", ".join(f"{c} {n}" for c, n in report.by_code(10)))
    for label, reason in report.refused[:limit]:
        lines.append(f"REFUSED {label}: {reason}")
    for ii in report.ranked()[:limit]:
        lines.append(f"{ii.label}:")
        lines += [f"    {c}" for c in ii.changes]
    if len(report.changed) > limit:
        lines.append(f"... and {len(report.changed) - limit} more intakes (--limit, or --format json/html)")
    return "\n".join(lines)
