"""Fail closed: a failing rule action, a broken rule pack, exhausted sessions, threads.

Fakes, not mocks: ``ExplodingRunner`` is a real DurableRunner whose firing step raises for
chosen rules (the ``_on_fire`` seam), ``LeakyRunner`` never releases a session, and broken
packs are real folders in tmp_path built from a small valid pack plus one defective file.
"""

from __future__ import annotations

import random
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
import yaml

from carepath.engine import (
    Engine,
    EngineError,
    Intake,
    RulePack,
    RulePackError,
    load_rulepack,
    parse_intake_obj,
)
from carepath.engine._durable import DurableRunner
from carepath.engine.derive import derive
from carepath.engine.ir import ReferenceRunner
from carepath.engine.rulepack import PackRule
from tests.conftest import FIXED_TIME
from tests.factories import random_intake
from tests.rulepacks import BASE_RULES, make_pack, rule

CANARY = "Quentin Canarywood"
RICH = {
    "assessment_date": "2026-01-15",
    "patient": {"age": 29, "sex_at_birth": "female", "pregnant": False, "name": CANARY},
    "stage": "post_withdrawal",
    "substance_use": {"opioids": ["fentanyl"], "route": "injection", "cows_score": 14, "last_use_hours": 30},
    "medical": {"qtc_ms": 520},
    "social": {"days_since_release": 9},
}


# --- fakes ------------------------------------------------------------------------------------


class ExplodingRunner(DurableRunner):
    """Raises inside the durable action of the rules named in ``explode_on``."""

    def __init__(self, pack: RulePack, explode_on: set[str]) -> None:
        self.explode_on = explode_on
        self.explosions: list[str] = []
        super().__init__(pack)

    def _on_fire(self, c: Any, rule: PackRule, evaluation: Any) -> None:
        if rule.id in self.explode_on:
            self.explosions.append(rule.id)
            raise RuntimeError(f"boom while treating {CANARY}")
        super()._on_fire(c, rule, evaluation)


class UnguardedRunner(DurableRunner):
    """Its actions raise before the runner's own guard: durable stores the error itself."""

    def _action(self, rule: PackRule) -> Any:
        def act(c: Any) -> None:
            raise ValueError(f"unguarded failure for {CANARY}")

        return act


class LeakyRunner(DurableRunner):
    """Never deletes a session's state (what the real runner must not do)."""

    def _delete(self, sid: str, quiet: bool = False) -> None:
        return None


# --- a failing action -------------------------------------------------------------------------


def test_every_rule_whose_action_fails_refuses_the_plan(pack: RulePack, reference: Engine) -> None:
    intake = parse_intake_obj(RICH)
    fired = [f.rule_id for f in reference.fire(intake)[1]]
    assert len(fired) >= 3, "the rich intake should fire rules in several strata"
    runner = ExplodingRunner(pack, set())
    engine = Engine(pack, runner)
    for rule_id in fired:
        runner.explode_on = {rule_id}
        with pytest.raises(EngineError, match="a rule action failed: RuntimeError") as caught:
            engine.evaluate(intake, FIXED_TIME)
        assert CANARY not in str(caught.value)
    assert list(dict.fromkeys(runner.explosions)) == fired  # an OR rule fires once per true branch
    # the failed evaluations left nothing behind: the same runner now gives the reference plan
    runner.explode_on = set()
    assert engine.evaluate(intake, FIXED_TIME) == reference.evaluate(intake, FIXED_TIME)


def test_an_error_durable_caught_itself_still_refuses_the_plan(pack: RulePack) -> None:
    engine = Engine(pack, UnguardedRunner(pack))
    with pytest.raises(EngineError, match="inside the rules engine") as caught:
        engine.evaluate(parse_intake_obj(RICH), FIXED_TIME)
    assert CANARY not in str(caught.value)


def test_reserved_fact_names_are_refused(engine: Engine) -> None:
    runner = DurableRunner(engine.pack)
    with pytest.raises(EngineError, match="reserved"):
        runner.run({"sid": "x", "age": 30})


def test_durable_cannot_read_1e_05_and_derive_never_writes_it(engine: Engine) -> None:
    """Regression: ``last_use_hours: 0.00001`` made every evaluation fail ("1e-05")."""
    runner = DurableRunner(engine.pack)
    with pytest.raises(EngineError, match="rules engine failed"):
        runner.run({"age": 30, "last_use_hours": 1e-05})
    for hours in (0.00001, 0.00002, 0.00005):
        data = {**RICH, "substance_use": {"last_use_hours": hours}}
        engine.evaluate(parse_intake_obj(data), FIXED_TIME)


# --- sessions: state is deleted, so the 1024-session limit never bites ------------------------


def _varied_facts(n: int, seed: int = 7) -> list[dict[str, Any]]:
    rng = random.Random(seed)
    return [derive(parse_intake_obj(random_intake(rng))) for _ in range(n)]


def test_1100_sequential_evaluations_on_one_runner(pack: RulePack) -> None:
    runner = DurableRunner(pack)
    facts = _varied_facts(100)
    oracle = ReferenceRunner(pack)
    expected = [[(f.rule_id, f.matched_facts) for f in oracle.run(x)] for x in facts]
    for i in range(1100):
        got = [(f.rule_id, f.matched_facts) for f in runner.run(facts[i % 100])]
        assert got == expected[i % 100], f"evaluation {i}"


def test_without_deleting_state_durable_runs_out_of_sessions(pack: RulePack) -> None:
    """The control for the test above: a runner that leaks sessions fails before 1,100."""
    runner = LeakyRunner(pack)
    with pytest.raises(EngineError):
        for _ in range(1100):
            runner.run({"age": 30})


# --- threads ------------------------------------------------------------------------------------


def _outcome(engine: Engine, intake: Intake) -> str:
    """The plan, or the refusal: both must be the same whichever thread evaluates."""
    try:
        return engine.evaluate(intake, FIXED_TIME).model_dump_json()
    except EngineError as exc:
        return f"refused: {exc}"


def test_8_threads_give_the_same_plans_as_sequential(engine: Engine) -> None:
    rng = random.Random(11)
    intakes = [parse_intake_obj(random_intake(rng)) for _ in range(400)]
    sequential = [_outcome(engine, i) for i in intakes]
    with ThreadPoolExecutor(max_workers=8) as pool:
        threaded = list(pool.map(lambda i: _outcome(engine, i), intakes))
    assert threaded == sequential


# --- broken rule packs ---------------------------------------------------------------------------


def test_the_small_test_pack_is_valid_and_runs(tmp_path: Path) -> None:
    pack = load_rulepack(make_pack(tmp_path, {}))
    plan = Engine(pack).evaluate(parse_intake_obj(RICH), FIXED_TIME)
    assert plan.level_of_care.code == "loc.outpatient"
    assert "hr.naloxone" in plan.codes("recommend")


def _flagged(rule_id: str, needs: str, sets: str) -> dict[str, Any]:
    return rule(rule_id, when={"all": [{"flag": needs}]}, sets=[sets])


DEFECTS: list[tuple[str, Any, list[str]]] = [
    ("broken-yaml", "rules:\n  - id: OUD-TST-010\n    title: [unclosed\n", ["not valid YAML"]),
    ("no-rules-key", "checks: []\n", ["needs 'rules'"]),
    (
        "unknown-fact",
        [rule("OUD-TST-010", when={"fact": "cows_scroe", "at_least": 8})],
        ["OUD-TST-010", "unknown fact 'cows_scroe'"],
    ),
    (
        "unknown-code",
        [rule("OUD-TST-010", then=[{"code": "moud.unicorn", "kind": "recommend"}])],
        ["OUD-TST-010", "unknown code 'moud.unicorn'"],
    ),
    (
        "citation-not-in-registry",
        [rule("OUD-TST-010", citations=[{"key": "S999", "locator": "p.1"}])],
        ["OUD-TST-010", "citation S999 is not in citations.yaml"],
    ),
    ("no-citation", [rule("OUD-TST-010", citations=[])], ["rule OUD-TST-010", "citations"]),
    (
        "empty-locator",
        [rule("OUD-TST-010", citations=[{"key": "S01", "locator": ""}])],
        ["rule OUD-TST-010", "locator"],
    ),
    (
        "flag-cycle",
        [_flagged("OUD-TST-010", "a", "b"), _flagged("OUD-TST-011", "b", "a")],
        ["flag cycle", "OUD-TST-010 (50-defect.yaml)", "OUD-TST-011 (50-defect.yaml)"],
    ),
    ("flag-never-set", [_flagged("OUD-TST-010", "nobody_sets_me", "x")], ["OUD-TST-010", "nobody_sets_me"]),
    ("duplicate-id", [rule("OUD-TST-001")], ["OUD-TST-001 is already defined in 00-base.yaml"]),
    (
        "bool-fact-with-text",
        [rule("OUD-TST-010", when={"fact": "pregnant", "is": "yes"})],
        ["OUD-TST-010", "pregnant is true/false"],
    ),
    (
        "enum-value-unknown",
        [rule("OUD-TST-010", when={"fact": "cows_band", "is": "terrible"})],
        ["OUD-TST-010", "cows_band has no value 'terrible'"],
    ),
    (
        "numeric-test-on-enum",
        [rule("OUD-TST-010", when={"fact": "stage", "above": 3})],
        ["OUD-TST-010", "needs a numeric fact"],
    ),
    (
        "two-operators",
        [rule("OUD-TST-010", when={"fact": "cows_score", "above": 3, "below": 9})],
        ["rule OUD-TST-010", "needs exactly one of"],
    ),
    (
        "flag-inside-any",
        [rule("OUD-TST-010", when={"any": [{"flag": "x"}, {"fact": "hiv", "is": True}]})],
        ["rule OUD-TST-010", "directly under the top-level 'all'"],
    ),
    (
        "no-counter-example",
        [{**rule("OUD-TST-010", when={"fact": "hiv", "is": True}), "examples": {"fires": [{"intake": {}}]}}],
        ["rule OUD-TST-010", "does_not_fire"],
    ),
    (
        "alert-without-severity",
        [rule("OUD-TST-010", then=[{"code": "alert.pregnancy"}])],
        ["OUD-TST-010", "needs a severity"],
    ),
    ("bad-rule-id", [rule("TST-1")], ["rule TST-1", "id"]),
]


@pytest.mark.parametrize(("files", "expected"), [d[1:] for d in DEFECTS], ids=[d[0] for d in DEFECTS])
def test_a_broken_pack_is_refused_naming_file_and_rule(
    tmp_path: Path, files: Any, expected: list[str]
) -> None:
    root = make_pack(tmp_path, {"50-defect.yaml": files})
    with pytest.raises(RulePackError) as caught:
        load_rulepack(root)
    message = str(caught.value)
    assert "50-defect.yaml" in message or "00-base.yaml" in message, message
    for part in expected:
        assert part in message, message


def test_a_pack_without_manifest_is_refused(tmp_path: Path) -> None:
    root = make_pack(tmp_path, {})
    (root / "pack.yaml").unlink()
    with pytest.raises(RulePackError, match="pack.yaml is missing"):
        load_rulepack(root)


def test_a_pack_without_naloxone_refuses_every_plan(tmp_path: Path) -> None:
    """A pack that loads but breaks a safety invariant still produces no plan."""
    root = make_pack(tmp_path, {})
    (root / "pack" / "00-base.yaml").write_text(yaml.safe_dump({"rules": BASE_RULES[1:]}), encoding="utf-8")
    engine = Engine(load_rulepack(root))
    with pytest.raises(EngineError, match="naloxone"):
        engine.evaluate(parse_intake_obj(RICH), FIXED_TIME)
