"""RulePack -> durable_rules ruleset definition, as plain JSON data (no durable import).

Each rule becomes ``{"all": [{"m": <intake test>}, {"f0": <flag fact>}...], "run": RULE_ID}``.
``not`` is pushed down to the leaves (durable has no general negation), with the same
closed-world meaning as ``engine.ir``: a test on an unknown fact is false, so its negation is
"unknown, or the opposite". The output is deterministic and kept as a golden file.
"""

from __future__ import annotations

from typing import Any

from .rulepack import RulePack
from .rulespec import All, AnyOf, Cond, FlagRef, Not, Test

__all__ = ["compile_pack", "compile_condition", "INTAKE_TAG", "FLAG_TAG"]

INTAKE_TAG = "intake"
FLAG_TAG = "flag"

Expr = dict[str, Any]

_CMP = {"below": "$lt", "at_most": "$lte", "above": "$gt", "at_least": "$gte"}
_OPPOSITE = {"below": "at_least", "at_most": "above", "above": "at_most", "at_least": "below"}


def compile_pack(pack: RulePack) -> dict[str, Any]:
    return {r.id: _rule(r.cond, r.id) for r in pack.rules}


def _rule(cond: Cond, rule_id: str) -> dict[str, Any]:
    tests, flags = _split(cond)
    intake: list[Expr] = [{"t": INTAKE_TAG}] + [compile_condition(c) for c in tests]
    parts: list[dict[str, Any]] = [{"m": {"$and": intake}}]
    for i, flag in enumerate(flags):
        parts.append({f"f{i}": {"$and": [{"t": FLAG_TAG}, {"name": flag}]}})
    return {"all": parts, "run": rule_id}


def _split(cond: Cond) -> tuple[list[Cond], list[str]]:
    items = list(cond.items) if isinstance(cond, All) else [cond]
    flags = [c.flag for c in items if isinstance(c, FlagRef)]
    return [c for c in items if not isinstance(c, FlagRef)], flags


def compile_condition(cond: Cond) -> Expr:
    if isinstance(cond, Test):
        return _test(cond)
    if isinstance(cond, All):
        return {"$and": [compile_condition(c) for c in cond.items]}
    if isinstance(cond, AnyOf):
        return {"$or": [compile_condition(c) for c in cond.items]}
    if isinstance(cond, Not):
        return _negate(cond.item)
    raise ValueError("flags are compiled as joins, not inside expressions")


def _exists(fact: str, present: bool = True) -> Expr:
    return {"$ex" if present else "$nex": {fact: 1}}


def _test(t: Test) -> Expr:
    f, v = t.fact, t.value
    if t.op == "known":
        return _exists(f, bool(v))
    if t.op == "is":
        return {f: v}
    if t.op == "is_not":
        return {"$and": [_exists(f), {"$neq": {f: v}}]}
    if t.op == "in":
        assert isinstance(v, tuple)
        return {"$or": [{f: x} for x in v]}
    if t.op == "not_in":
        assert isinstance(v, tuple)
        return {"$and": [_exists(f)] + [{"$neq": {f: x}} for x in v]}
    return {_CMP[t.op]: {f: v}}


def _negate(cond: Cond) -> Expr:
    if isinstance(cond, Not):
        return compile_condition(cond.item)
    if isinstance(cond, All):
        return {"$or": [_negate(c) for c in cond.items]}
    if isinstance(cond, AnyOf):
        return {"$and": [_negate(c) for c in cond.items]}
    if isinstance(cond, FlagRef):
        raise ValueError("a flag cannot be negated")
    return _negate_test(cond)


def _negate_test(t: Test) -> Expr:
    f, v = t.fact, t.value
    if t.op == "known":
        return _exists(f, not v)
    if t.op == "is":
        opposite: Expr = {"$neq": {f: v}}
    elif t.op == "is_not":
        opposite = {f: v}
    elif t.op == "in":
        assert isinstance(v, tuple)
        opposite = {"$and": [{"$neq": {f: x}} for x in v]}
    elif t.op == "not_in":
        assert isinstance(v, tuple)
        opposite = {"$or": [{f: x} for x in v]}
    else:
        opposite = {_CMP[_OPPOSITE[t.op]]: {f: v}}
    return {"$or": [_exists(f, False), opposite]}
