"""Plan v2 invariants (one coherent pathway in time order), over at least 2,000 generated
intakes with unknowns, and the clinical review's 76 probe intakes.

- no code stands in two items (one decision per treatment);
- every item that does not start now says when it starts;
- no offered item carries a caution that forbids its own wording;
- withdrawal management and maintenance are not both today's default unless the patient chose;
- the medication decision lists every medication of the jurisdiction once;
- the pathway lists every item once, in time order.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given, settings

from carepath.engine import CarePlan, Engine, parse_intake_obj
from carepath.engine.derive import derive
from carepath.engine.evaluate import plan_problems
from carepath.engine.plan import STEPS
from carepath.engine.summary import AVAILABLE
from tests.conftest import FIXED_TIME
from tests.factories import intakes
from tests.probes import S1_DETECTORS, duplicated_codes, probe_intakes, s1_findings

DETOX = {"wm.agonist_assisted", "wm.symptomatic"}
MAINTENANCE = {"moud.methadone", "moud.buprenorphine", "moud.buprenorphine_low_dose_induction"}


def v2_problems(plan: CarePlan, data: dict[str, Any], pack: Any) -> list[str]:
    items = plan.items()
    found = []
    codes = [i.code for i in items]
    if len(codes) != len(set(codes)):
        found.append(f"a code stands in two items: {sorted(c for c in set(codes) if codes.count(c) > 1)}")
    for i in items:
        if i.start != "now" and not i.start_condition:
            found.append(f"{i.code} starts {i.start} without a start condition")
        for caution in i.cautions:
            for rid in caution.rule_ids:
                forbids = {f for t in pack.by_id[rid].rule.then if t.code == i.code for f in t.forbids}
                if i.worded_by in forbids:
                    found.append(f"{i.code}: a caution from {rid} forbids its wording {i.worded_by}")
    today = {i.code for i in items if i.kind == "recommend" and i.start == "now"}
    prefs = data.get("preferences") or {}
    chose = prefs.get("goal") in ("abstinence", "reduction") or prefs.get("medication") not in (
        None,
        "no_preference",
    )
    if today & DETOX and today & MAINTENANCE and not chose:
        found.append(
            f"detox {sorted(today & DETOX)} and maintenance {sorted(today & MAINTENANCE)} both today"
        )
    found += _decision_problems(plan)
    found += _pathway_problems(plan, codes)
    return found


def _decision_problems(plan: CarePlan) -> list[str]:
    decision = plan.medication_decision
    if decision is None:
        return ["no medication decision"]
    meds = [o.medication for o in decision.options]
    expected = set(AVAILABLE[plan.jurisdiction])
    found = [] if sorted(meds) == sorted(expected) else [f"medication decision lists {meds}, not {expected}"]
    for o in decision.options:
        if o.status == "later" and not o.start_condition:
            found.append(f"{o.medication} is 'later' without its start condition")
    return found


def _pathway_problems(plan: CarePlan, codes: list[str]) -> list[str]:
    listed = [c for step in plan.pathway for c in step.codes]
    order = [s.step for s in plan.pathway]
    found = [] if sorted(listed) == sorted(codes) else ["the pathway does not list every item once"]
    if order != [s for s in STEPS if s in order]:
        found.append(f"pathway steps out of time order: {order}")
    return found


@settings(max_examples=2000, deadline=None)
@given(intakes())
def test_every_plan_is_one_coherent_pathway(engine: Engine, data: dict[str, Any]) -> None:
    intake = parse_intake_obj(data)
    plan = engine.evaluate(intake, FIXED_TIME)
    problems = v2_problems(plan, data, engine.pack) + plan_problems(plan, derive(intake), engine.pack)
    assert not problems, json.dumps(problems, indent=1)


PROBES = probe_intakes()


@pytest.mark.parametrize("name", sorted(PROBES))
def test_review_probe_is_coherent_and_reproduces_no_dangerous_finding(engine: Engine, name: str) -> None:
    data = PROBES[name]
    plan = engine.evaluate(parse_intake_obj(data), FIXED_TIME)
    doc = json.loads(plan.model_dump_json())
    assert duplicated_codes(doc) == []
    assert s1_findings(doc, data) == [], f"{name} reproduces {s1_findings(doc, data)}"
    assert v2_problems(plan, data, engine.pack) == []


def test_the_s1_detectors_find_the_findings_in_the_reviewed_pack_output() -> None:
    """The detectors are not vacuous: the review's recorded 2026.12.0 output reproduced all five."""
    before = json.loads(
        (__import__("pathlib").Path(__file__).parents[1] / "probes" / "before-2026.12.0.json").read_text()
    )
    found = {finding for result in before.values() for finding in result["s1"]}
    assert found == set(S1_DETECTORS)
    assert sum(1 for r in before.values() if r["duplicated"]) == 53
