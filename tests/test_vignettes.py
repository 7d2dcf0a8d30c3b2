"""Clinical vignettes: clinician-written cases with the guideline line behind each expectation.

Files live in tests/vignettes/*.yaml and are never auto-regenerated.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from carepath.engine import parse_intake_obj
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
    expect = case["expect"]
    by_kind: dict[str, set[str]] = {}
    for item in plan.items():
        by_kind.setdefault(item.kind, set()).add(item.code)
    positive = by_kind.get("recommend", set()) | by_kind.get("consider", set())
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
        if e["code"] not in by_kind.get("recommend", set()):
            problems.append(f"{e['code']} should be recommended ({e['because']})")
    for e in expect.get("must_avoid", []):
        if e["code"] not in by_kind.get("avoid", set()):
            problems.append(f"{e['code']} should be avoided ({e['because']})")
    for e in expect.get("must_not_recommend", []):
        if e["code"] in positive:
            problems.append(f"{e['code']} must not be recommended ({e['because']})")
    for e in expect.get("alerts", []):
        if e["code"] not in alerts:
            problems.append(f"missing alert {e['code']} ({e['because']})")
    assert not problems, f"{case['id']} {case['title']}:\n  " + "\n  ".join(problems)
