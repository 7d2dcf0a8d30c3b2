"""THE ONLY importer of durable_rules.

What we measured (docs/architecture.md) and what this module does about it:
- concurrent use crashed a shared host: one process-wide lock around every evaluation;
- a ruleset holds at most 1024 live sessions: a fresh session id per evaluation, its state
  deleted when it is done;
- after an internal engine error mid-evaluation the ruleset is replaced, never reused, and
  the session is NOT deleted (deleting a session with pending actions crashes durable's C
  code); past ``MAX_REBUILDS`` such errors the runner refuses every evaluation;
- exceptions inside actions are stored, not raised: each action catches its own errors and
  the evaluation raises EngineError afterwards (fail closed, no partial plan);
- OR branches fire once per true branch: firings are de-duplicated by rule id;
- durable's own background threads are never started (below), so nothing but our locked
  calls ever touches the C engine;
- a pack without active rules never reaches durable (an empty ruleset crashes its C code:
  SIGSEGV or ``free(): invalid size`` once a session is asserted and deleted): refused when
  the runner is built.

Why durable's threads must not run (the cause of error 307 and of the crashes)
------------------------------------------------------------------------------
``durable.engine.Host.__init__`` calls ``Host._run``, which starts two self-rearming
``threading.Timer`` chains per host that run forever, every 0.2 s, outside any lock of ours:

- ``dispatch_timers`` calls the C ``assertTimers``, which walks EVERY live session of the
  ruleset and asserts a ``$pulse`` event into it (retracting the previous one first);
- ``dispatch_ruleset`` calls the C ``startAction``, which takes the next pending action of ANY
  session whose lease is free and runs it on the timer thread.

The C calls hold the GIL, so each one is atomic, but an evaluation is a sequence of calls
(``assertFact`` -> ``startActionForState`` -> our action -> ``updateState`` ->
``completeAndStartAction`` ... -> ``deleteState``) and a session has ONE action context. When
the dispatcher's ``startAction`` lands between two of our calls it takes one of our pending
actions (overwriting that context) and runs it on the timer thread. Then either our
``completeAndStartAction`` finishes the dispatcher's action and the dispatcher's own call finds
its frame gone: 307 (``ERR_NODE_DELETED``, "Could not complete and start action") and the
evaluation is refused; or the stolen action's firing is recorded late or never, and the
evaluation returns a firing set that differs from the rules (a silently wrong plan, or a
refusal by ``check_plan``); or the dispatcher completes the action after our ``deleteState``
freed the session: a use after free in a thread other than the main one (the reviewed crash;
more rulesets in a process mean more such threads). Measured before the fix, 20,000
evaluations against the reference interpreter: one ruleset, 3 refused with 307 and 3 wrong
firing sets; eight rulesets in one process, 2 wrong. With the dispatcher alone called every
2 ms, 11 refusals and 27 wrong sets in 3,000; with ``assertTimers`` alone, none (it is stopped
all the same: it writes into live sessions).

We use neither durable timers nor asynchronous actions: every action runs synchronously inside
``Host.assert_fact`` on the calling thread. So ``_Host._run`` starts nothing, and there is no
code path left by which durable touches a session outside ``_LOCK``.

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
MAX_REBUILDS = 16
"""Internal engine errors tolerated per runner (each replaces its ruleset) before it refuses."""


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

    def _run(self) -> None:
        """Durable starts its dispatcher and timer threads here; carepath starts none of them
        (see the module docstring: they are the cause of error 307 and of the crashes)."""


class DurableRunner:
    """Evaluates facts against a compiled RulePack on durable_rules."""

    def __init__(self, pack: RulePack) -> None:
        if not pack.rules:  # durable_rules crashes in native code on an empty ruleset (free(): ...)
            raise RulePackError(f"{pack.id} {pack.version} has no active rules: nothing to run")
        self._pack = pack
        self._name = f"carepath_{pack.sha256[:12]}_{next(_COUNTER)}"
        self._evals: dict[str, _Evaluation] = {}
        # durable refuses a fact that no rule can match (MessageNotHandled): assert only the
        # flags some rule joins on
        self._used_flags = frozenset(flag for r in pack.rules for flag in r.flags)
        self._actions = {r.id: self._action(r) for r in pack.rules}
        self._retired: list[_Host] = []
        with _LOCK:
            self._host = self._new_host()

    @property
    def rebuilds(self) -> int:
        """How many times an internal engine error made this runner replace its ruleset."""
        return len(self._retired)

    def _new_host(self) -> _Host:
        host = _Host(self._actions)
        host.set_rulesets({self._name: compile_pack(self._pack)})  # durable consumes the dict
        return host

    def _retire_host(self) -> None:
        """After an internal error mid-evaluation the session's action context cannot be
        trusted, and deleting a session with actions still pending crashes durable's C code
        (``free(): invalid size``). So the whole ruleset is set aside, never called again, and
        a fresh one takes its place. Past MAX_REBUILDS the runner refuses every evaluation."""
        self._retired.append(self._host)
        if len(self._retired) <= MAX_REBUILDS:
            self._host = self._new_host()

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
            if flag in self._used_flags:
                c.assert_fact({"t": FLAG_TAG, "name": flag, "by": rule.id})

    def run(self, facts: Facts) -> list[Firing]:
        for key in _RESERVED:
            if key in facts:
                raise EngineError(f"fact name '{key}' is reserved by the engine")
        with _LOCK:
            if len(self._retired) > MAX_REBUILDS:
                raise EngineError("the rules engine failed repeatedly in this process; restart it")
            sid = f"e{next(_COUNTER)}"
            evaluation = self._evals[sid] = _Evaluation()
            try:
                state = self._assert(sid, facts)
            except Exception as exc:
                self._retire_host()
                raise EngineError(f"rules engine failed: {type(exc).__name__}") from exc
            finally:
                self._evals.pop(sid, None)
            try:
                self._delete(sid)
            except EngineError:
                self._retire_host()
                raise
        if evaluation.errors:
            first = evaluation.errors[0]
            raise EngineError(f"a rule action failed: {type(first).__name__}") from first
        if isinstance(state, dict) and "exception" in state:
            # durable caught an action error itself; its text may hold facts, so it is not shown
            raise EngineError("a rule action failed inside the rules engine")
        return sorted(evaluation.firings.values(), key=lambda f: f.rule_id)

    def _assert(self, sid: str, facts: Facts) -> Any:
        """One evaluation inside durable: assert the facts, run every action it triggers."""
        return self._host.assert_fact(self._name, {**facts, "t": INTAKE_TAG, "sid": sid})

    def _delete(self, sid: str, quiet: bool = False) -> None:
        try:
            self._host.delete_state(self._name, sid)
        except Exception as exc:  # noqa: BLE001
            if not quiet:
                raise EngineError("rules engine could not release an evaluation's state") from exc
