"""Invariants of every plan, over generated intakes that cover the whole contract (Hypothesis).

Profiles (tests/conftest.py): ``default`` runs 200 examples per property, ``ci`` (loaded when
the CI environment variable is set) runs 1000. One durable Engine and one reference Engine are
shared for the session.
"""

from __future__ import annotations

import json
import random
from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from carepath.engine import CarePlan, Engine, Intake, intake_sha256, parse_intake_json, parse_intake_obj
from carepath.engine.derive import derive
from carepath.engine.facts import FACTS
from carepath.engine.ir import Firing
from tests.conftest import FIXED_TIME
from tests.factories import intakes, shuffled

POSITIVE = ("recommend", "consider")
PHASE_ORDER = [
    "withdrawal_management",
    "level_of_care",
    "medication",
    "medical",
    "psychosocial",
    "dual_diagnosis",
    "harm_reduction",
    "aftercare",
]


def _plan_json(plan: CarePlan) -> str:
    return plan.model_dump_json()


def _firings_json(firings: list[Firing]) -> str:
    """Rule ids and matched facts, with JSON types (12 and 12.0 differ here)."""
    return json.dumps([[f.rule_id, f.matched_facts] for f in firings], sort_keys=True)


# --- the invariants every plan must satisfy ---------------------------------------------


def _round_trips(plan: CarePlan) -> list[str]:
    again = CarePlan.model_validate_json(plan.model_dump_json())
    return [] if again == plan else ["plan does not survive a JSON round trip through CarePlan"]


def _no_code_both_offered_and_avoided(plan: CarePlan) -> list[str]:
    avoided = plan.codes("avoid")
    offered = plan.codes(*POSITIVE)
    clash = sorted(avoided & offered)
    return [f"recommended/considered and avoided: {clash}"] if clash else []


def _provenance(plan: CarePlan) -> list[str]:
    problems = []
    entries: list[tuple[str, list[str], list[Any]]] = [
        (f"item {i.code}/{i.kind}", i.rule_ids, i.citations) for i in plan.items()
    ]
    entries += [(f"alert {a.code}", a.rule_ids, a.citations) for a in plan.alerts]
    for what, rule_ids, citations in entries:
        if not rule_ids:
            problems.append(f"{what} has no rule id")
        if not citations:
            problems.append(f"{what} has no citation")
        for c in citations:
            if not c.locator.strip() or not c.key or not c.title.strip():
                problems.append(f"{what} has a citation without key, title or locator: {c}")
    if not plan.level_of_care.rule_ids:
        problems.append("level of care has no rule id")
    return problems


def _naloxone(plan: CarePlan) -> list[str]:
    return [] if "hr.naloxone" in plan.codes("recommend") else ["hr.naloxone is not recommended"]


def _withdrawal_management_needs_moud_and_follow_up(plan: CarePlan) -> list[str]:
    offered = plan.codes(*POSITIVE)
    wm = sorted(c for c in offered if c.startswith("wm.") and c != "wm.not_indicated")
    if not wm:
        return []
    problems = []
    if not any(c.startswith("moud.") for c in offered):
        problems.append(f"{wm} offered without any moud.* recommend/consider")
    if "aft.follow_up" not in offered:
        problems.append(f"{wm} offered without aft.follow_up")
    return problems


def _one_level_of_care(plan: CarePlan) -> list[str]:
    problems = []
    if [p.phase for p in plan.phases] != PHASE_ORDER:
        problems.append(f"phases out of order: {[p.phase for p in plan.phases]}")
    level_items = [i for p in plan.phases if p.phase == "level_of_care" for i in p.items]
    if [i.code for i in level_items] != [plan.level_of_care.code]:
        problems.append(
            f"level_of_care phase holds {[i.code for i in level_items]}, level is {plan.level_of_care.code}"
        )
    elsewhere = [i.code for p in plan.phases if p.phase != "level_of_care" for i in p.items]
    if any(c.startswith("loc.") for c in elsewhere):
        problems.append(f"level-of-care code outside its phase: {elsewhere}")
    if not plan.level_of_care.code.startswith("loc."):
        problems.append(f"level of care is not a loc.* code: {plan.level_of_care.code}")
    return problems


def _rule_ids_in_trace(plan: CarePlan) -> list[str]:
    traced = {t.rule_id for t in plan.trace}
    used = {r for i in plan.items() for r in i.rule_ids}
    used |= {r for a in plan.alerts for r in a.rule_ids}
    used |= set(plan.level_of_care.rule_ids)
    missing = sorted(used - traced)
    problems = [f"rule ids cited but not in the trace: {missing}"] if missing else []
    if len(traced) != len(plan.trace):
        problems.append("a rule appears twice in the trace")
    return problems


INVARIANTS = (
    _round_trips,
    _no_code_both_offered_and_avoided,
    _provenance,
    _naloxone,
    _withdrawal_management_needs_moud_and_follow_up,
    _one_level_of_care,
    _rule_ids_in_trace,
)


@given(intakes())
def test_every_plan_satisfies_the_invariants(engine: Engine, data: dict[str, Any]) -> None:
    plan = engine.evaluate(parse_intake_obj(data), FIXED_TIME)
    problems = [f"{check.__name__}: {p}" for check in INVARIANTS for p in check(plan)]
    assert not problems, "\n".join(problems)


@given(intakes())
def test_durable_and_reference_fire_the_same_rules(
    engine: Engine, reference: Engine, data: dict[str, Any]
) -> None:
    intake = parse_intake_obj(data)
    _, durable_firings = engine.fire(intake)
    _, reference_firings = reference.fire(intake)
    assert _firings_json(durable_firings) == _firings_json(reference_firings)
    assert _plan_json(engine.evaluate(intake, FIXED_TIME)) == _plan_json(
        reference.evaluate(intake, FIXED_TIME)
    )


@given(intakes())
def test_the_same_intake_gives_the_same_plan(engine: Engine, data: dict[str, Any]) -> None:
    first = _plan_json(engine.evaluate(parse_intake_obj(data), FIXED_TIME))
    second = _plan_json(engine.evaluate(parse_intake_obj(data), FIXED_TIME))
    assert first == second


@given(intakes(), st.randoms(use_true_random=False))
def test_json_field_order_does_not_matter(engine: Engine, data: dict[str, Any], rng: random.Random) -> None:
    original = parse_intake_obj(data)
    reordered = parse_intake_json(json.dumps(shuffled(data, rng)))
    assert intake_sha256(reordered) == intake_sha256(original)
    assert _plan_json(engine.evaluate(reordered, FIXED_TIME)) == _plan_json(
        engine.evaluate(original, FIXED_TIME)
    )


def _without_nulls(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _without_nulls(v) for k, v in value.items() if v is not None}
    return value


def _says_no_moud(data: dict[str, Any]) -> bool:
    ct = data.get("current_treatment") or {}
    return "moud" in ct and ct["moud"] is None


@given(intakes())
def test_the_intake_hash_identifies_the_plan(engine: Engine, data: dict[str, Any]) -> None:
    """A null field means "unknown", like a missing one, except ``current_treatment.moud:
    null`` ("no MOUD"). Dropping the nulls keeps the hash exactly when it keeps the meaning,
    and one hash never names two different plans (the plan id is made from it)."""
    original = parse_intake_obj(data)
    stripped = parse_intake_obj(_without_nulls(data))
    same_hash = intake_sha256(stripped) == intake_sha256(original)
    assert same_hash is not _says_no_moud(data)
    if same_hash:
        assert _plan_json(engine.evaluate(stripped, FIXED_TIME)) == _plan_json(
            engine.evaluate(original, FIXED_TIME)
        )


_PYTHON_TYPE = {"bool": (bool,), "int": (int,), "number": (int, float), "enum": (str,), "text": (str,)}


def _fact_problems(intake: Intake) -> list[str]:
    problems = []
    for name, value in derive(intake).items():
        fact = FACTS.get(name)
        if fact is None:
            problems.append(f"{name} is not in the fact vocabulary")
            continue
        ok_type = isinstance(value, _PYTHON_TYPE[fact.type]) and (
            fact.type == "bool" or not isinstance(value, bool)
        )
        if not ok_type:
            problems.append(f"{name}={value!r} is not a {fact.type}")
        elif fact.type == "enum" and value not in fact.values:
            problems.append(f"{name}={value!r} is not one of {fact.values}")
        elif fact.range is not None and not fact.range[0] <= value <= fact.range[1]:  # type: ignore[operator]
            problems.append(f"{name}={value!r} is outside {fact.range}")
        elif isinstance(value, float) and "e" in repr(value):
            problems.append(f"{name}={value!r} is written with an exponent (durable cannot read it)")
    return problems


@given(intakes())
def test_derived_facts_match_the_vocabulary(data: dict[str, Any]) -> None:
    problems = _fact_problems(parse_intake_obj(data))
    assert not problems, "\n".join(problems)
