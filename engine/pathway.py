"""Firings -> alerts, one level of care, and one decision per treatment, in time order.

One decision per treatment (Plan v2): every code stands in at most one item.

- ``avoid`` wins: any rule that avoids a code makes the item an avoid; the rules that offered it
  go to "considered, not recommended" with the reason.
- Otherwise the item is a recommendation when any rule recommends the code, else a
  consideration. Its ``text`` is the highest-ranked wording of the rules that fired (``rank`` in
  the rule pack; the code's default wording ranks 0); the other wordings are kept in
  ``superseded``. Wordings never concatenate.
- A ``caution`` on the code is attached to the item as one of its ``cautions``. A caution may
  ``forbid`` wordings it contradicts: those never become the text while it applies, and when no
  wording is left the plan is refused (a rule-pack defect, never a guess).
- The winning wording also decides when the item starts (``start``, ``start_condition``) and
  where it stands in the pathway (``step``).

Level of care (F-36, F-40): every rule proposing a level says how it counts:
- ``need``: the level this finding needs; the most intensive need is the starting point;
- ``ceiling``: patient preference or logistics cap the need (never below a floor);
- ``floor``: a safety finding (ASAM dimensions 1-3 >= 3); nothing may lower it.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

from .derive import Facts
from .errors import EngineError
from .ir import Firing
from .plan import (
    STEPS,
    Alert,
    Caution,
    CitationOut,
    Item,
    LevelOfCare,
    NotRecommended,
    PathwayStep,
    Phase,
    Superseded,
)
from .rulepack import Code, PackRule, RulePack
from .rulespec import PHASES, ThenItem

__all__ = [
    "Emission",
    "emissions",
    "build_alerts",
    "choose_level",
    "build_phases",
    "build_pathway",
    "citations_of",
    "fill_placeholders",
]

KIND_ORDER = {"recommend": 0, "consider": 1, "caution": 2, "avoid": 3}
SEVERITY_ORDER = {"urgent": 0, "warning": 1, "info": 2}
POSITIVE = ("recommend", "consider")
_BASIS = {
    "confirmed_secondary": " [Basis: confirmed only through a secondary summary; re-check the primary.]",
    "unconfirmed": " [Basis: unconfirmed (general knowledge); treat as a hypothesis.]",
    "design_inference": " [Basis: carepath design inference combining guideline principles.]",
}
_PHASE_STEP = {
    "withdrawal_management": "during_withdrawal",
    "level_of_care": "today",
    "medication": "today",
    "medical": "today",
    "psychosocial": "maintenance",
    "dual_diagnosis": "maintenance",
    "harm_reduction": "today",
    "aftercare": "aftercare",
}
DEFAULT_WORDING = "default"


@dataclass(frozen=True)
class Emission:
    """What one fired rule says about one code, worded for this patient's jurisdiction."""

    code: str
    kind: str | None
    text: str | None
    severity: str | None
    effect: str | None
    rule: PackRule
    firing: Firing
    then: ThenItem
    start_condition: str | None = None

    @property
    def rank(self) -> int:
        return self.then.precedence


def emissions(pack: RulePack, firings: list[Firing], facts: Facts) -> list[Emission]:
    rules = pack.by_id
    jurisdiction = str(facts.get("jurisdiction", "US"))
    found = []
    for firing in firings:
        rule = rules[firing.rule_id]
        for t in rule.rule.then:
            text = t.wording(jurisdiction)
            if text:
                text = fill_placeholders(text.strip(), facts, rule.id)
            condition = t.start_condition and fill_placeholders(t.start_condition.strip(), facts, rule.id)
            found.append(Emission(t.code, t.kind, text, t.severity, t.effect, rule, firing, t, condition))
    return found


_PLACEHOLDER = re.compile(r"\{([a-z0-9_]+)\}")


def fill_placeholders(text: str, facts: Facts, rule_id: str) -> str:
    """Replace ``{fact}`` with the patient's value; a fact the rule did not make known is a defect."""

    def value(match: re.Match[str]) -> str:
        name = match.group(1)
        if name not in facts:
            raise EngineError(f"{rule_id}: its wording names {{{name}}}, which this intake leaves unknown")
        v = facts[name]
        if isinstance(v, float) and v.is_integer():
            return str(int(v))
        return str(v).lower() if isinstance(v, bool) else str(v)

    return _PLACEHOLDER.sub(value, text)


def citations_of(pack: RulePack, rules: Iterable[PackRule]) -> list[CitationOut]:
    seen: dict[tuple[str, str], CitationOut] = {}
    for r in rules:
        for cited in pack.cited[r.id]:
            seen.setdefault((cited.key, cited.locator), cited)
    return list(seen.values())


def _unique_rules(ems: Iterable[Emission]) -> list[PackRule]:
    seen: dict[str, PackRule] = {}
    for e in ems:
        seen.setdefault(e.rule.id, e.rule)
    return sorted(seen.values(), key=lambda r: r.id)


def _rationale(rules: list[PackRule]) -> str:
    parts = []
    for r in rules:
        parts.append(f"{r.id}: {r.rule.rationale.strip()}{_BASIS.get(r.rule.confirmation, '')}")
    return " | ".join(parts)


def _triggered_by(ems: list[Emission]) -> dict[str, object]:
    facts: dict[str, object] = {}
    for e in sorted(ems, key=lambda e: e.rule.id):
        facts.update(e.firing.matched_facts)
    return dict(sorted(facts.items()))


def _group(ems: Iterable[Emission]) -> dict[str, list[Emission]]:
    groups: dict[str, list[Emission]] = {}
    for e in ems:
        groups.setdefault(e.code, []).append(e)
    return groups


def _default_text(code: Code, jurisdiction: str) -> str:
    return code.text_for.get(jurisdiction, code.text)


def _top(ems: list[Emission]) -> Emission:
    """The most specific wording: highest rank, then a wording over none, then rule id."""
    return min(ems, key=lambda e: (-e.rank, e.text is None, e.rule.id))


# --- alerts -----------------------------------------------------------------------------


def build_alerts(pack: RulePack, ems: list[Emission], jurisdiction: str) -> list[Alert]:
    groups = _group(e for e in ems if pack.codes[e.code].phase == "alerts")
    alerts = []
    for code, group in groups.items():
        severity = min((e.severity or "info" for e in group), key=SEVERITY_ORDER.__getitem__)
        strongest = [e for e in group if (e.severity or "info") == severity]
        chosen = _top(strongest)
        text = chosen.text or _default_text(pack.codes[code], jurisdiction)
        rules = _unique_rules(group)
        alerts.append(
            Alert(
                code=code,
                severity=severity,  # type: ignore[arg-type]
                text=text,
                rule_ids=[r.id for r in rules],
                citations=citations_of(pack, rules),
                cautions=_further(pack, group, text),
            )
        )
    order = list(pack.codes)
    return sorted(alerts, key=lambda a: (SEVERITY_ORDER[a.severity], order.index(a.code)))


def _further(pack: RulePack, group: list[Emission], chosen_text: str) -> list[Caution]:
    """Alerts and the level of care: the other findings behind the same code, kept as cautions
    (they add reasons, they do not compete with the chosen wording)."""
    return _cautions(pack, [e for e in group if e.text and e.text != chosen_text])


def _superseded(group: list[Emission], chosen_text: str) -> list[Superseded]:
    seen: dict[tuple[str, str], None] = {}
    for e in sorted(group, key=lambda e: e.rule.id):
        if e.text and e.text != chosen_text:
            seen.setdefault((e.rule.id, e.text), None)
    return [Superseded(rule_id=rid, text=text) for rid, text in seen]


# --- level of care ----------------------------------------------------------------------


def _intensity(pack: RulePack, code: str) -> float:
    value = pack.codes[code].intensity
    if value is None:
        raise EngineError(f"level-of-care code {code} has no intensity in codes.yaml")
    return value


def choose_level(
    pack: RulePack, ems: list[Emission], jurisdiction: str
) -> tuple[LevelOfCare, Item, list[NotRecommended]]:
    loc = [e for e in ems if pack.codes[e.code].phase == "level_of_care"]
    needs = [e for e in loc if e.effect == "need"]
    if not needs:
        raise EngineError("the rule pack proposed no level of care (a baseline rule is missing)")
    top = max(needs, key=lambda e: (_intensity(pack, e.code), e.code))
    chosen, adjusted, shaping = top.code, False, [e for e in needs if e.code == top.code]
    ceilings = [e for e in loc if e.effect == "ceiling"]
    if ceilings:
        cap = min(ceilings, key=lambda e: (_intensity(pack, e.code), e.code))
        if _intensity(pack, cap.code) < _intensity(pack, chosen):
            chosen, adjusted = cap.code, True
            shaping += [e for e in ceilings if e.code == cap.code]
    floors = [e for e in loc if e.effect == "floor"]
    if floors:
        floor = max(floors, key=lambda e: (_intensity(pack, e.code), e.code))
        if _intensity(pack, floor.code) >= _intensity(pack, chosen):
            adjusted = adjusted and _intensity(pack, floor.code) < _intensity(pack, top.code)
            chosen = floor.code
            shaping = [e for e in floors if e.code == chosen] + (shaping if adjusted else [])
    rules = _unique_rules(shaping)
    code = pack.codes[chosen]
    rationale = _level_rationale(pack, top, chosen, adjusted, rules)
    level = LevelOfCare(
        code=chosen,
        label=code.label,
        asam_level=code.asam or "",
        rationale=rationale,
        rule_ids=[r.id for r in rules],
        adjusted_by_preference=adjusted,
    )
    worded = [e for e in shaping if e.code == chosen]
    winner = _top(worded)
    text = winner.text or _default_text(code, jurisdiction)
    item = Item(
        code=chosen,
        kind="recommend",
        text=text,
        rationale=rationale,
        rule_ids=level.rule_ids,
        citations=citations_of(pack, rules),
        evidence_grade=rules[0].rule.evidence_grade,
        triggered_by=_triggered_by(shaping),
        cautions=_further(pack, worded, text),
        worded_by=winner.rule.id if winner.text else DEFAULT_WORDING,
        step="today",
    )
    return level, item, _levels_not_chosen(pack, loc, chosen, top.code)


def _level_rationale(
    pack: RulePack, top: Emission, chosen: str, adjusted: bool, rules: list[PackRule]
) -> str:
    label = pack.codes[chosen].label
    text = f"{label}: " + _rationale(rules)
    if adjusted:
        text += (
            f" | Lowered from {pack.codes[top.code].label} by patient preference or logistics; "
            "no safety dimension (ASAM 1-3) is at risk 3 or more (F-40, design inference). "
            "Residual risk: keep naloxone, shorten follow-up, reassess and step up if needed."
        )
    return text


def _levels_not_chosen(
    pack: RulePack, loc: list[Emission], chosen: str, top_need: str
) -> list[NotRecommended]:
    out = []
    adjusted = _intensity(pack, chosen) < _intensity(pack, top_need)
    for code, group in _group(e for e in loc if e.code != chosen).items():
        if all(e.effect == "ceiling" for e in group):
            if _intensity(pack, code) >= _intensity(pack, top_need):
                reason = (
                    f"Preference or logistics limit not needed: the findings call for no more than "
                    f"{pack.codes[chosen].label}."
                )
            else:
                reason = "Preference or logistics limit did not apply: a safety finding requires more."
        elif adjusted and _intensity(pack, code) > _intensity(pack, chosen):
            reason = (
                f"Needed by the findings but lowered to {pack.codes[chosen].label} by patient "
                "preference or logistics (no ASAM dimension 1-3 risk >= 3)."
            )
        elif _intensity(pack, code) < _intensity(pack, chosen):
            reason = f"A more intensive level is needed: {pack.codes[chosen].label}."
        else:
            reason = f"Not chosen: {pack.codes[chosen].label} fits the findings better."
        out.append(NotRecommended(code=code, reason=reason, rule_ids=[r.id for r in _unique_rules(group)]))
    return out


# --- one decision per code ----------------------------------------------------------------


def build_phases(
    pack: RulePack, ems: list[Emission], level_item: Item, jurisdiction: str
) -> tuple[list[Phase], list[NotRecommended]]:
    items: dict[str, list[Item]] = {p: [] for p in PHASES}
    items["level_of_care"].append(level_item)
    dropped: list[NotRecommended] = []
    body = [e for e in ems if pack.codes[e.code].phase not in ("alerts", "level_of_care")]
    for code, group in _group(body).items():
        item, lost = _decide(pack, pack.codes[code], group, jurisdiction)
        items[pack.codes[code].phase].append(item)
        dropped.extend(lost)
    order = {c: n for n, c in enumerate(pack.codes)}
    phases = [
        Phase(phase=p, items=sorted(items[p], key=lambda i: (KIND_ORDER[i.kind], order[i.code])))  # type: ignore[arg-type]
        for p in PHASES
    ]
    return phases, dropped


def _decide(
    pack: RulePack, code: Code, group: list[Emission], jurisdiction: str
) -> tuple[Item, list[NotRecommended]]:
    by_kind: dict[str, list[Emission]] = {k: [] for k in KIND_ORDER}
    for e in group:
        by_kind[e.kind or "recommend"].append(e)
    cautions = by_kind["caution"]
    if by_kind["avoid"]:
        item = _item(pack, code, "avoid", by_kind["avoid"], cautions, jurisdiction)
        overruled = by_kind["recommend"] + by_kind["consider"]
        lost = []
        if overruled:
            reason = f"Contraindicated now (avoid wins): {item.text}"
            ids = [r.id for r in _unique_rules(overruled)]
            lost.append(NotRecommended(code=code.code, reason=reason, rule_ids=ids))
        return item, lost
    positive = by_kind["recommend"] + by_kind["consider"]
    if positive:
        kind = "recommend" if by_kind["recommend"] else "consider"
        return _item(pack, code, kind, positive, cautions, jurisdiction), []
    return _item(pack, code, "caution", [_top(cautions)], cautions, jurisdiction), []


def _item(
    pack: RulePack,
    code: Code,
    kind: str,
    speakers: list[Emission],
    cautions: list[Emission],
    jurisdiction: str,
) -> Item:
    """One item: the most specific allowed wording of ``speakers``, the cautions attached."""
    winner = _winning_wording(code, speakers, cautions)
    text = winner.text if winner and winner.text else _default_text(code, jurisdiction)
    start = (winner.then.start if winner else None) or "now"
    attached = [c for c in cautions if c.text != text]
    everyone = speakers + cautions
    rules = _ordered_rules(winner, everyone)
    return Item(
        code=code.code,
        kind=kind,  # type: ignore[arg-type]
        text=text,
        rationale=_rationale(rules),
        rule_ids=sorted(r.id for r in rules),
        citations=citations_of(pack, rules),
        evidence_grade=(winner.rule if winner else rules[0]).rule.evidence_grade,
        triggered_by=_triggered_by(everyone),
        start=start,
        start_condition=winner.start_condition if winner else None,
        cautions=_cautions(pack, attached),
        superseded=_superseded(speakers, text),
        worded_by=winner.rule.id if winner and winner.text else DEFAULT_WORDING,
        step=_step(code, start),  # type: ignore[arg-type]
    )


def _winning_wording(code: Code, speakers: list[Emission], cautions: list[Emission]) -> Emission | None:
    """The allowed wording of highest rank (None: the code's default wording, starting now)."""
    forbidden = {rid for c in cautions for rid in c.then.forbids}
    default_ok = DEFAULT_WORDING not in forbidden
    allowed = [e for e in speakers if e.rule.id not in forbidden and (e.text or default_ok)]
    if allowed:
        return _top(allowed)
    if default_ok:
        return None
    blockers = sorted({c.rule.id for c in cautions if c.then.forbids})
    raise EngineError(
        f"{code.code}: every wording of this treatment is contradicted by {', '.join(blockers)} "
        "(rule-pack defect: add a wording for this situation)"
    )


def _ordered_rules(winner: Emission | None, everyone: list[Emission]) -> list[PackRule]:
    rules = _unique_rules(everyone)
    if winner is None:
        return rules
    return [winner.rule] + [r for r in rules if r.id != winner.rule.id]


def _cautions(pack: RulePack, cautions: list[Emission]) -> list[Caution]:
    merged: dict[str, list[PackRule]] = {}
    for c in sorted(cautions, key=lambda e: (-e.rank, e.rule.id)):
        if c.text:
            merged.setdefault(c.text, [])
            if c.rule not in merged[c.text]:
                merged[c.text].append(c.rule)
    return [
        Caution(text=text, rule_ids=[r.id for r in rules], citations=citations_of(pack, rules))
        for text, rules in merged.items()
    ]


def _step(code: Code, start: str) -> str:
    if start == "after_withdrawal":
        return "after_withdrawal"
    step = code.step or _PHASE_STEP[code.phase]
    return "maintenance" if start == "conditional" and step == "today" else step


# --- the pathway in time order ------------------------------------------------------------


def build_pathway(phases: list[Phase], pack: RulePack) -> list[PathwayStep]:
    order = {c: n for n, c in enumerate(pack.codes)}
    by_step: dict[str, list[Item]] = {s: [] for s in STEPS}
    for phase in phases:
        for item in phase.items:
            by_step[item.step].append(item)
    steps = []
    for step, title in STEPS.items():
        items = sorted(
            by_step[step],
            key=lambda i: (pack.codes[i.code].phase != "level_of_care", KIND_ORDER[i.kind], order[i.code]),
        )
        if items:
            steps.append(PathwayStep(step=step, title=title, codes=[i.code for i in items]))  # type: ignore[arg-type]
    return steps
