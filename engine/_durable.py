"""THE ONLY importer of durable_rules.

What we measured (docs/architecture.md) and what this module does about it:
- concurrent use crashed a shared host: one process-wide lock around every evaluation;
- a ruleset holds at most 1024 live sessions: a fresh session id per evaluation, its state
  deleted in ``finally``;
- exceptions inside actions are stored, not raised: each action catches its own errors and
  the evaluation raises EngineError afterwards (fail closed, no partial plan);
- OR branches fire once per true branch: firings are de-duplicated by rule id.

The only thing an action does is record ``(rule_id, matched facts)`` and assert the flags its
rule sets, so explanations are recorded while rules fire.
"""

from __future__ import annotations

import itertools
import threading
from collections.abc import Callable
from typing import Any

from durable import engine as durable_engine

from .compile import FLAG_TAG, INTAKE_TAG, compile_pack
from .derive import Facts
from .errors import EngineError, RulePackError
from .ir import Firing, matched_facts
from .rulepack import PackRule, RulePack

__all__ = ["DurableRunner"]

_LOCK = threading.Lock()
_COUNTER = itertools.count()
_RESERVED = ("sid", "id", "t")


class _Evaluation:
    def __init__(self) -> None:
        self.firings: dict[str, Firing] = {}
        self.errors: list[BaseException] = []


class _Host(durable_engine.Host):  # type: ignore[misc]
    def __init__(self, actions: dict[str, Callable[[Any], None]]) -> None:
        self._carepath_actions = actions
        super().__init__()

    def get_action(self, action_name: str) -> Callable[[Any], None]:
        return self._carepath_actions[action_name]


class DurableRunner:
    """Evaluates facts against a compiled RulePack on durable_rules."""

    def __init__(self, pack: RulePack) -> None:
        if not pack.rules:  # durable_rules crashes in native code on an empty ruleset (free(): ...)
            raise RulePackError(f"{pack.id} {pack.version} has no active rules: nothing to run")
        self._name = f"carepath_{pack.sha256[:12]}_{next(_COUNTER)}"
        self._evals: dict[str, _Evaluation] = {}
        actions = {r.id: self._action(r) for r in pack.rules}
        with _LOCK:
            self._host = _Host(actions)
            self._host.set_rulesets({self._name: compile_pack(pack)})

    def _action(self, rule: PackRule) -> Callable[[Any], None]:
        def act(c: Any) -> None:
            evaluation = None
            try:
                evaluation = self._evals[c.m.sid]
                self._on_fire(c, rule, evaluation)
            except BaseException as exc:  # noqa: BLE001 - surfaced after the run
                if evaluation is not None:
                    evaluation.errors.append(exc)
                else:
                    raise  # durable stores it in the session state; run() checks for it

        return act

    def _on_fire(self, c: Any, rule: PackRule, evaluation: _Evaluation) -> None:
        """What a firing does: record (rule id, matched facts), assert the rule's flags.

        Any exception raised here fails the evaluation (tests subclass this to prove it).
        """
        if rule.id in evaluation.firings:
            return  # an OR rule fires once per true branch
        facts = {k: c.m[k] for k in rule.facts if k in c.m}
        evaluation.firings[rule.id] = Firing(rule.id, matched_facts(rule.facts, rule.flags, facts))
        for flag in rule.rule.sets:
            c.assert_fact({"t": FLAG_TAG, "name": flag, "by": rule.id})

    def run(self, facts: Facts) -> list[Firing]:
        for key in _RESERVED:
            if key in facts:
                raise EngineError(f"fact name '{key}' is reserved by the engine")
        with _LOCK:
            sid = f"e{next(_COUNTER)}"
            evaluation = self._evals[sid] = _Evaluation()
            asserted = False
            try:
                state = self._host.assert_fact(self._name, {**facts, "t": INTAKE_TAG, "sid": sid})
                asserted = True
            except Exception as exc:
                raise EngineError(f"rules engine failed: {type(exc).__name__}") from exc
            finally:
                self._evals.pop(sid, None)
                # after a failed assert the state may not exist: do not mask the first error
                self._delete(sid, quiet=not asserted)
        if evaluation.errors:
            first = evaluation.errors[0]
            raise EngineError(f"a rule action failed: {type(first).__name__}") from first
        if isinstance(state, dict) and "exception" in state:
            # durable caught an action error itself; its text may hold facts, so it is not shown
            raise EngineError("a rule action failed inside the rules engine")
        return sorted(evaluation.firings.values(), key=lambda f: f.rule_id)

    def _delete(self, sid: str, quiet: bool = False) -> None:
        try:
            self._host.delete_state(self._name, sid)
        except Exception as exc:  # noqa: BLE001
            if not quiet:
                raise EngineError("rules engine could not release an evaluation's state") from exc
