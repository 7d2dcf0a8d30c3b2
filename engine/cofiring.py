"""Which rules fire together, and whether the plan can word their shared codes unambiguously.

Two rules that can fire for the same patient and word the same code differently need a declared
precedence (``rank``), or the plan would have to pick between them arbitrarily. The search
evaluates many synthetic intakes with the reference interpreter: every valid combination the
intake contract allows, with unknowns, sampled at random from a fixed seed (deterministic).
"""

from __future__ import annotations

import random
import types
import typing
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date
from typing import Any, Literal, get_args, get_origin

from annotated_types import Ge, Le, MaxLen
from pydantic import BaseModel

from .derive import derive
from .errors import IntakeError
from .intake import Intake, parse_intake_obj
from .ir import ReferenceRunner
from .rulepack import PackRule, RulePack

__all__ = ["sample_intakes", "CoFiring", "wording_conflicts", "DEFAULT_SAMPLES"]

DEFAULT_SAMPLES = 4000
UNKNOWN = 0.3
"""Share of fields left unknown in a sample (missing is not "no": the rules must cope)."""


def sample_intakes(n: int, seed: int = 2026) -> Iterator[Intake]:
    """``n`` valid intakes drawn at random over the whole contract (clinically impossible
    combinations, which the intake refuses, are redrawn)."""
    rng = random.Random(seed)
    made = 0
    while made < n:
        raw = _model(Intake, rng)
        raw["assessment_date"] = date(2026, 3, 2).isoformat()
        try:
            yield parse_intake_obj(raw)
        except IntakeError:
            continue
        made += 1


def _model(model: type[BaseModel], rng: random.Random) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name, info in model.model_fields.items():
        required = info.is_required()
        if not required and rng.random() < UNKNOWN:
            continue
        value = _value(info.annotation, info.metadata, rng)
        if value is not _SKIP:
            out[name] = value
    return out


_SKIP = object()


def _value(annotation: Any, metadata: list[Any], rng: random.Random) -> Any:
    origin = get_origin(annotation)
    if origin in (typing.Union, types.UnionType):
        options = [a for a in get_args(annotation) if a is not type(None)]
        return _value(options[0], metadata, rng) if options else _SKIP
    if origin is typing.Annotated:
        inner, *extra = get_args(annotation)
        return _value(inner, [*metadata, *extra], rng)
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return _model(annotation, rng)
    if origin is Literal:
        return rng.choice(get_args(annotation))
    if origin is list:
        (item,) = get_args(annotation)
        return _list(item, metadata, rng)
    if annotation is bool:
        return rng.random() < 0.5
    if annotation in (int, float):
        return _number(annotation, metadata, rng)
    if annotation is str:
        return rng.choice(_DRUG_NAMES)
    return _SKIP


def _list(item: Any, metadata: list[Any], rng: random.Random) -> list[Any]:
    longest = next((m.max_length for m in metadata if isinstance(m, MaxLen)), 3)
    size = rng.choice([0, 1, 1, 2, min(3, longest)])
    values = [_value(item, [], rng) for _ in range(size)]
    return list(dict.fromkeys(v for v in values if v is not _SKIP))


def _number(kind: type, metadata: list[Any], rng: random.Random) -> int | float:
    lo = float(next((m.ge for m in metadata if isinstance(m, Ge)), 0))  # type: ignore[arg-type]
    hi = float(next((m.le for m in metadata if isinstance(m, Le)), 100))  # type: ignore[arg-type]
    hi = min(hi, lo + _SPAN.get(int(hi), hi - lo))
    value = rng.uniform(lo, hi) if rng.random() < 0.5 else float(rng.choice([lo, hi, *_EDGES]))
    value = min(max(value, lo), hi)
    return int(value) if kind is int else round(value, 1)


_SPAN = {24 * 365 * 100: 24 * 30 * 6, 36500: 120, 1200: 48, 2000: 200, 500: 6, 900: 600}
"""Realistic upper ranges: last use within 6 months, release within 4 months, dose to 200 mg."""
_EDGES = (0, 1, 2, 3, 4, 5, 6, 7, 8, 12, 13, 16, 18, 24, 36, 37, 48, 72, 80, 168, 336, 440, 460, 520)
_DRUG_NAMES = ("citalopram", "efavirenz", "ondansetron", "gabapentin", "fluconazole", "sertraline")


@dataclass(frozen=True)
class CoFiring:
    """Two rules that fired together and word one treatment differently at the same rank.

    Alerts and the level of care are not compared: their other wordings are kept as further
    findings (cautions) beside the chosen one, so nothing is lost or arbitrary there."""

    code: str
    rule_a: str
    rule_b: str
    rank: int
    example: int
    """Index of the first sample intake where both fired (``sample_intakes`` is reproducible)."""


def wording_conflicts(pack: RulePack, samples: int = DEFAULT_SAMPLES, seed: int = 2026) -> list[CoFiring]:
    runner = ReferenceRunner(pack)
    by_id = pack.by_id
    found: dict[tuple[str, str, str], CoFiring] = {}
    for n, intake in enumerate(sample_intakes(samples, seed)):
        fired = [by_id[f.rule_id] for f in runner.run(derive(intake))]
        for code, a, b, rank in _clashes(fired):
            found.setdefault((code, a, b), CoFiring(code, a, b, rank, n))
    return sorted(found.values(), key=lambda c: (c.code, c.rule_a, c.rule_b))


def _clashes(fired: list[PackRule]) -> Iterator[tuple[str, str, str, int]]:
    speakers: dict[str, list[tuple[PackRule, str, int, str]]] = {}
    for rule in fired:
        for t in rule.rule.then:
            if t.kind in ("recommend", "consider", "avoid"):
                cls = "avoid" if t.kind == "avoid" else "positive"
                wording = repr((t.text, sorted(t.text_for.items())))
                speakers.setdefault(t.code, []).append((rule, wording, t.precedence, cls))
    for code, said in speakers.items():
        for i, (ra, wa, rank_a, ca) in enumerate(said):
            for rb, wb, rank_b, cb in said[i + 1 :]:
                worded = wa != repr((None, [])) or wb != repr((None, []))
                if ra.id != rb.id and ca == cb and rank_a == rank_b and wa != wb and worded:
                    a, b = sorted((ra.id, rb.id))
                    yield code, a, b, rank_a
