"""durable_rules contained: nothing but our locked calls ever touches the C engine.

The cause of error 307 and of the crashes (engine/_durable.py): ``durable.engine.Host`` starts
two background timer chains per ruleset that take pending actions of ANY live session and run
them on their own thread, outside our lock. These tests show the threads are gone, that a
pending action is never run by another thread, that many rulesets in one process (used from
several threads) give exactly the reference interpreter's firings with zero refusals, and that
a pack without rules never reaches durable (an empty ruleset crashes its C code).

The long proof is ``bench/durable_soak.py`` (1,000,000 evaluations, docs/reliability.md).
"""

from __future__ import annotations

import dataclasses
import random
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest

from carepath.engine import EngineError, RulePack, RulePackError, parse_intake_obj
from carepath.engine._durable import MAX_REBUILDS, DurableRunner, _Evaluation
from carepath.engine.derive import derive
from carepath.engine.ir import ReferenceRunner
from tests.conftest import ROOT
from tests.factories import random_intake

TIMER_PERIOD_S = 0.2  # durable re-arms its dispatcher every 0.2 s


def _durable_threads() -> list[threading.Thread]:
    """Threads started by durable's Host (timer chains whose function is Host._run's)."""
    out = []
    for t in threading.enumerate():
        fn = getattr(t, "function", None)
        if fn is not None and "Host._run" in getattr(fn, "__qualname__", ""):
            out.append(t)
    return out


def _firings(runner: Any, facts: dict[str, Any]) -> list[tuple[str, Any]]:
    return [(f.rule_id, f.matched_facts) for f in runner.run(facts)]


def _varied_facts(n: int, seed: int) -> list[dict[str, Any]]:
    rng = random.Random(seed)
    return [derive(parse_intake_obj(random_intake(rng))) for _ in range(n)]


def test_building_runners_starts_no_durable_thread(pack: RulePack) -> None:
    runners = [DurableRunner(pack) for _ in range(4)]
    time.sleep(3 * TIMER_PERIOD_S)  # long enough for durable's chain to have re-armed itself
    assert _durable_threads() == [], "durable's dispatcher/timer threads are running"
    assert all(r.run({"age": 30}) is not None for r in runners)


def test_a_pending_action_is_never_run_by_another_thread(pack: RulePack) -> None:
    """Leave a session with pending actions (asserted, actions not yet started) for longer
    than durable's dispatch period: no action may run, and none on a thread other than ours.
    Before the fix durable's dispatcher took the action and ran it on its timer thread."""
    runner = DurableRunner(pack)
    ran_on: list[str] = []

    sid = "containment-probe"
    original = runner._on_fire

    def spy(c: Any, rule: Any, evaluation: Any) -> None:
        ran_on.append(threading.current_thread().name)
        original(c, rule, evaluation)

    runner._on_fire = spy  # type: ignore[method-assign]
    runner._evals[sid] = _Evaluation()
    ruleset = runner._host.get_ruleset(runner._name)
    facts = {**_varied_facts(1, seed=1)[0], "t": "intake", "sid": sid}
    state_offset = ruleset.assert_fact(facts)  # the C call alone: actions pending, none started
    time.sleep(3 * TIMER_PERIOD_S)
    assert ran_on == [], f"actions ran on {sorted(set(ran_on))} while nobody evaluated"
    outcome: list[Any] = []
    ruleset.do_actions(state_offset, lambda e, state: outcome.append(e))  # now, on this thread
    assert outcome == [None] and ran_on, "the pending actions should run when we start them"
    assert set(ran_on) == {threading.current_thread().name}
    runner._delete(sid)


class BrokenMidEvaluation(DurableRunner):
    """Fails inside durable after the facts went in and before any action ran (what a 307
    did): the session is left with pending actions."""

    fail_next = True

    def _assert(self, sid: str, facts: dict[str, Any]) -> Any:
        if not self.fail_next:
            return super()._assert(sid, facts)
        self.fail_next = False
        self._host.get_ruleset(self._name).assert_fact({**facts, "t": "intake", "sid": sid})
        raise RuntimeError("Could not complete and start action, error code: 307")


def test_an_internal_error_mid_evaluation_replaces_the_ruleset_without_crashing(pack: RulePack) -> None:
    """Deleting a session with pending actions aborts the process in durable's C code (before
    the fix, every 307 was followed by exactly that delete). Now the ruleset is set aside."""
    runner = BrokenMidEvaluation(pack)
    facts = _varied_facts(3, seed=2)
    with pytest.raises(EngineError, match="rules engine failed: RuntimeError"):
        runner.run(facts[0])
    assert runner.rebuilds == 1
    oracle = ReferenceRunner(pack)
    assert [_firings(runner, f) for f in facts] == [_firings(oracle, f) for f in facts]


def test_a_runner_that_keeps_failing_refuses_instead_of_rebuilding_forever(pack: RulePack) -> None:
    runner = BrokenMidEvaluation(pack)
    for _ in range(MAX_REBUILDS + 1):
        runner.fail_next = True
        with pytest.raises(EngineError, match="rules engine failed"):
            runner.run({"age": 30})
    with pytest.raises(EngineError, match="restart"):
        runner.run({"age": 30})


def test_many_rulesets_in_one_process_from_many_threads_match_the_reference(pack: RulePack) -> None:
    """16 rulesets, 8 threads, 4,000 evaluations: every firing set equals the reference
    interpreter's, no refusal (bench/durable_soak.py runs the same for 1,000,000)."""
    facts = _varied_facts(250, seed=21)
    oracle = ReferenceRunner(pack)
    expected = [_firings(oracle, f) for f in facts]
    runners = [DurableRunner(pack) for _ in range(16)]

    def one(i: int) -> str:
        try:
            got = _firings(runners[i % len(runners)], facts[i % len(facts)])
        except EngineError as exc:
            return f"refused: {exc}"
        return "ok" if got == expected[i % len(facts)] else "wrong firings"

    with ThreadPoolExecutor(max_workers=8) as pool:
        outcomes = list(pool.map(one, range(4000)))
    problems = {o: outcomes.count(o) for o in set(outcomes) if o != "ok"}
    assert problems == {}


_CHILD = """
import random, sys, threading
sys.path.insert(0, {root!r})
from concurrent.futures import ThreadPoolExecutor
from carepath.engine import load_rulepack, parse_intake_obj
from carepath.engine._durable import MAX_REBUILDS, DurableRunner, _Evaluation
from carepath.engine.derive import derive
from tests.factories import random_intake
pack = load_rulepack()
rng = random.Random(5)
facts = [derive(parse_intake_obj(random_intake(rng))) for _ in range(100)]
runners = [DurableRunner(pack) for _ in range(24)]
def one(i):
    runners[i % 24].run(facts[i % 100])
with ThreadPoolExecutor(max_workers=6) as pool:
    list(pool.map(one, range(3000)))
print("done", threading.active_count())
"""


def test_a_process_with_24_rulesets_and_6_threads_exits_cleanly(tmp_path: Any) -> None:
    """The crash of the review happened in native code in a process holding several rulesets:
    run that shape in a child process and require a clean exit (no signal, no traceback)."""
    proc = subprocess.run(
        [sys.executable, "-c", _CHILD.format(root=str(ROOT))],
        capture_output=True,
        text=True,
        timeout=600,
        cwd=tmp_path,
    )
    assert proc.returncode == 0, f"exit {proc.returncode}: {proc.stderr[-2000:]}"
    assert proc.stdout.strip() == "done 1", proc.stdout
    assert "Traceback" not in proc.stderr and "error code" not in proc.stderr, proc.stderr[-2000:]


def test_a_pack_without_rules_never_reaches_durable(pack: RulePack) -> None:
    """An empty durable ruleset crashes its C code (SIGSEGV once a session is asserted and
    deleted); the runner refuses to be built on such a pack instead."""
    empty = dataclasses.replace(pack, rules=())
    with pytest.raises(RulePackError, match="no active rules"):  # a pack problem, refused at load
        DurableRunner(empty)
