"""Firings -> alerts, one level of care, ordered phases. Conflicts resolved: avoid wins.

Level of care (F-36, F-40): every rule proposing a level says how it counts:
- ``need``: the level this finding needs; the most intensive need is the starting point;
- ``ceiling``: patient preference or logistics cap the need (never below a floor);
- ``floor``: a safety finding (ASAM dimensions 1-3 >= 3); nothing may lower it.
"""

from __future__ import annotations

from dataclasses import dataclass

from .errors import EngineError
from .ir import Firing
from .plan import Alert, CitationOut, Item, LevelOfCare, NotRecommended, Phase
from .rulepack import Code, PackRule, RulePack
from .rulespec import PHASES

__all__ = ["Emission", "emissions", "build_alerts", "choose_level", "build_phases", "citations_of"]

KIND_ORDER = {"recommend": 0, "consider": 1, "caution": 2, "avoid": 3}
SEVERITY_ORDER = {"urgent": 0, "warning": 1, "info": 2}
_BASIS = {
    "confirmed_secondary": " [Basis: confirmed only through a secondary summary; re-check the primary.]",
    "unconfirmed": " [Basis: unconfirmed (general knowledge); treat as a hypothesis.]",
    "design_inference": " [Basis: carepath design inference combining guideline principles.]",
}


@dataclass(frozen=True)
class Emission:
    code: str
    kind: str | None
    text: str | None
    severity: str | None
    effect: str | None
    rule: PackRule
    firing: Firing


def emissions(pack: RulePack, firings: list[Firing]) -> list[Emission]:
    rules = pack.by_id
    found = []
    for firing in firings:
        rule = rules[firing.rule_id]
        for t in rule.rule.then:
            found.append(Emission(t.code, t.kind, t.text, t.severity, t.effect, rule, firing))
    return found


def citations_of(pack: RulePack, rules: list[PackRule]) -> list[CitationOut]:
    seen: dict[tuple[str, str], CitationOut] = {}
    for r in rules:
        for ref in r.rule.citations:
            title = pack.citations[ref.key].title
            seen.setdefault(
                (ref.key, ref.locator), CitationOut(key=ref.key, title=title, locator=ref.locator)
            )
    return list(seen.values())


def _unique_rules(ems: list[Emission]) -> list[PackRule]:
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


def _text(code: Code, ems: list[Emission]) -> str:
    """Every distinct wording the contributing rules give, in rule-id order (else the default)."""
    texts: dict[str, None] = {}
    for e in sorted(ems, key=lambda e: e.rule.id):
        if e.text:
            texts.setdefault(e.text.strip(), None)
    return " Also: ".join(texts) if texts else code.text


def build_alerts(pack: RulePack, ems: list[Emission]) -> list[Alert]:
    groups = _group(e for e in ems if pack.codes[e.code].phase == "alerts")
    alerts = []
    for code, group in groups.items():
        severity = min((e.severity or "info" for e in group), key=SEVERITY_ORDER.__getitem__)
        rules = _unique_rules(group)
        alerts.append(
            Alert(
                code=code,
                severity=severity,  # type: ignore[arg-type]
                text=_text(pack.codes[code], group),
                rule_ids=[r.id for r in rules],
                citations=citations_of(pack, rules),
            )
        )
    order = list(pack.codes)
    return sorted(alerts, key=lambda a: (SEVERITY_ORDER[a.severity], order.index(a.code)))


def _group(ems: object) -> dict[str, list[Emission]]:
    groups: dict[str, list[Emission]] = {}
    for e in ems:  # type: ignore[attr-defined]
        groups.setdefault(e.code, []).append(e)
    return groups


# --- level of care ----------------------------------------------------------------------


def _intensity(pack: RulePack, code: str) -> float:
    value = pack.codes[code].intensity
    if value is None:
        raise EngineError(f"level-of-care code {code} has no intensity in codes.yaml")
    return value


def choose_level(pack: RulePack, ems: list[Emission]) -> tuple[LevelOfCare, Item, list[NotRecommended]]:
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
    item = Item(
        code=chosen,
        kind="recommend",
        text=_text(code, [e for e in shaping if e.code == chosen]),
        rationale=rationale,
        rule_ids=level.rule_ids,
        citations=citations_of(pack, rules),
        evidence_grade=rules[0].rule.evidence_grade,
        triggered_by=_triggered_by(shaping),
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


# --- phases -----------------------------------------------------------------------------


def build_phases(
    pack: RulePack, ems: list[Emission], level_item: Item
) -> tuple[list[Phase], list[NotRecommended]]:
    items: dict[str, list[Item]] = {p: [] for p in PHASES}
    items["level_of_care"].append(level_item)
    dropped: list[NotRecommended] = []
    body = [e for e in ems if pack.codes[e.code].phase not in ("alerts", "level_of_care")]
    for code, group in _group(body).items():
        made, lost = _resolve(pack, code, group)
        items[pack.codes[code].phase].extend(made)
        dropped.extend(lost)
    order = list(pack.codes)
    phases = [
        Phase(phase=p, items=sorted(items[p], key=lambda i: (KIND_ORDER[i.kind], order.index(i.code))))  # type: ignore[arg-type]
        for p in PHASES
    ]
    return phases, dropped


def _resolve(pack: RulePack, code: str, group: list[Emission]) -> tuple[list[Item], list[NotRecommended]]:
    by_kind: dict[str, list[Emission]] = {k: [] for k in KIND_ORDER}
    for e in group:
        by_kind[e.kind or "recommend"].append(e)
    if by_kind["avoid"]:
        avoid = _item(pack, code, "avoid", by_kind["avoid"])
        overruled = by_kind["recommend"] + by_kind["consider"] + by_kind["caution"]
        lost = []
        if overruled:
            reason = f"Contraindicated now (avoid wins): {avoid.text}"
            lost.append(
                NotRecommended(code=code, reason=reason, rule_ids=[r.id for r in _unique_rules(overruled)])
            )
        return [avoid], lost
    made = []
    positive = by_kind["recommend"] + by_kind["consider"]
    if positive:
        kind = "recommend" if by_kind["recommend"] else "consider"
        made.append(_item(pack, code, kind, positive))
    if by_kind["caution"]:
        made.append(_item(pack, code, "caution", by_kind["caution"]))
    return made, []


def _item(pack: RulePack, code: str, kind: str, ems: list[Emission]) -> Item:
    rules = _unique_rules(ems)
    primary = [e for e in ems if e.kind == kind] or ems
    return Item(
        code=code,
        kind=kind,  # type: ignore[arg-type]
        text=_text(pack.codes[code], primary),
        rationale=_rationale(rules),
        rule_ids=[r.id for r in rules],
        citations=citations_of(pack, rules),
        evidence_grade=_unique_rules(primary)[0].rule.evidence_grade,
        triggered_by=_triggered_by(ems),
    )
