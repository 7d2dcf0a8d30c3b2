"""Clinical vignettes: clinician-written cases with the guideline line behind each expectation.

Files live in tests/vignettes/*.yaml and are never auto-regenerated.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from carepath.engine import CarePlan, parse_intake_obj
from tests.conftest import FIXED_TIME

HERE = Path(__file__).parent
VIGNETTES = sorted((HERE / "vignettes").glob("*.yaml"))
# tests/heldout/: written blind (from the contract and knowledge base only, without reading
# the rules) to check that the rules generalise beyond the vignettes they were written against.
HELD_OUT = sorted((HERE / "heldout").glob("*.yaml"))
CASES = VIGNETTES + HELD_OUT


def _load(path: Path) -> dict:
    return yaml.safe_load(path.read_text(encoding="utf-8"))


def test_there_are_at_least_40_vignettes():
    assert len(VIGNETTES) >= 40


@pytest.mark.parametrize("path", CASES, ids=[p.stem for p in CASES])
def test_vignette(path: Path, engine) -> None:
    case = _load(path)
    plan = engine.evaluate(parse_intake_obj(case["intake"]), FIXED_TIME)
    problems = expectation_problems(plan, case["expect"])
    assert not problems, f"{case['id']} {case['title']}:\n  " + "\n  ".join(problems)


def expectation_problems(plan: CarePlan, expect: dict[str, Any]) -> list[str]:
    """What a vignette expects, against the Plan v2 plan.

    ``must_include``: offered at any time (or an alert); ``must_include_recommend``: recommended;
    ``must_not_recommend``: not offered as a step that starts now (a later, conditional step with
    its start condition is allowed); ``must_avoid``: avoided; ``must_plan``: offered with the given
    ``start``; ``medication``: the status of a medication in the medication decision;
    ``text_must_include`` / ``text_must_not_include``: words in an item's text (and cautions);
    ``nowhere``: words no line of the plan may contain; ``no_alerts``: alerts that must not be raised.
    """
    items = {i.code: i for i in plan.items()}
    positive = {c for c, i in items.items() if i.kind in ("recommend", "consider")}
    positive_now = {c for c in positive if items[c].start == "now"}
    alerts = {a.code for a in plan.alerts}
    problems = []
    loc = expect.get("level_of_care")
    if loc and plan.level_of_care.code not in loc["any_of"]:
        problems.append(
            f"level of care {plan.level_of_care.code}, expected one of {loc['any_of']} ({loc['because']})"
        )
    for e in expect.get("must_include", []):
        if e["code"] not in positive and e["code"] not in alerts:
            problems.append(f"missing {e['code']} ({e['because']})")
    for e in expect.get("must_include_recommend", []):
        if items.get(e["code"]) is None or items[e["code"]].kind != "recommend":
            problems.append(f"{e['code']} should be recommended ({e['because']})")
    for e in expect.get("must_avoid", []):
        if items.get(e["code"]) is None or items[e["code"]].kind != "avoid":
            problems.append(f"{e['code']} should be avoided ({e['because']})")
    for e in expect.get("must_not_recommend", []):
        if e["code"] in positive_now:
            problems.append(f"{e['code']} must not be offered now ({e['because']})")
    for e in expect.get("must_plan", []):
        item = items.get(e["code"])
        if item is None or item.kind not in ("recommend", "consider") or item.start != e["start"]:
            got = "absent" if item is None else f"{item.kind}/{item.start}"
            want = f"{e['code']} should be planned to start {e['start']}"
            problems.append(f"{want}, got {got} ({e['because']})")
    for e in expect.get("alerts", []):
        if e["code"] not in alerts:
            problems.append(f"missing alert {e['code']} ({e['because']})")
    for e in expect.get("no_alerts", []):
        if e["code"] in alerts:
            problems.append(f"alert {e['code']} must not be raised ({e['because']})")
    problems += _medication_problems(plan, expect.get("medication", {}))
    problems += _text_problems(items, expect)
    problems += _nowhere_problems(plan, expect.get("nowhere", []))
    return problems


def _medication_problems(plan: CarePlan, expected: dict[str, Any]) -> list[str]:
    decision = plan.medication_decision
    status = {o.medication: o.status for o in decision.options} if decision else {}
    out = []
    for med, want in expected.items():
        wanted = want["status"] if isinstance(want["status"], list) else [want["status"]]
        if status.get(med) not in wanted:
            out.append(f"medication {med}: status {status.get(med)}, expected {wanted} ({want['because']})")
    return out


def _words(item: Any) -> str:
    return " ".join([item.text, item.start_condition or "", *(c.text for c in item.cautions)]).lower()


def _text_problems(items: dict[str, Any], expect: dict[str, Any]) -> list[str]:
    out = []
    for e in expect.get("text_must_include", []):
        item = items.get(e["code"])
        if item is None or e["text"].lower() not in _words(item):
            out.append(f"{e['code']} should say '{e['text']}' ({e['because']})")
    for e in expect.get("text_must_not_include", []):
        item = items.get(e["code"])
        if item is not None and e["text"].lower() in item.text.lower():
            out.append(f"{e['code']} must not say '{e['text']}' ({e['because']})")
    return out


def _nowhere_problems(plan: CarePlan, expected: list[dict[str, Any]]) -> list[str]:
    lines = [a.text for a in plan.alerts] + [c.text for a in plan.alerts for c in a.cautions]
    lines += [_words(i) for i in plan.items()]
    text = " ".join(lines).lower()
    found = [e for e in expected if e["text"].lower() in text]
    return [f"the plan must not say '{e['text']}' ({e['because']})" for e in found]
