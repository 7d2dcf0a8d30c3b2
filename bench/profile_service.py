"""Where the server's CPU goes per stored plan: py-spy samples `carepath serve` under a steady
open-loop load (bench/load.py), and the samples are split into the steps of a request.

    nice python bench/profile_service.py                       # SQLite, 1 worker, 40 plans/s, 15 s
    nice python bench/profile_service.py --rate 80 --workers 2 --db postgresql
    nice python bench/profile_service.py --endpoint read       # GET /v1/plans/{id} instead

Each py-spy sample (by default the thread holding the GIL in each server process: the
Python CPU a worker spends; --all-threads for every busy thread) goes to the FIRST step,
from the root of the stack, whose frame it contains (so "engine" includes everything
Engine.evaluate calls, and "store" excludes the audit append it contains because audit is
listed first). The table shows each step's share of the samples and, scaled by the server's
CPU per stored plan measured from /proc over the same window, its milliseconds per plan.
The engine's own steps are listed below it (the lead's part: engine/).

Needs py-spy (``pip install py-spy``; ptrace must be allowed, as it is for root here).
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import shutil
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Sequence
from pathlib import Path

HERE = Path(__file__).resolve().parent

# (step, frame names that mark it); a stack goes to the FIRST step in this order whose mark
# is in any of its frames (py-spy names frames "Class.method (api/service.py)").
STEPS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("authenticate (token lookup)", ("principal_for_bearer", "principal_for_session")),
    ("read body", ("read_raw_body",)),
    ("audit append", ("ChainedAuditSink.append", "AuditSink.append")),
    ("parse + validate intake", ("parse_intake_json", "parse_intake_obj")),
    ("engine: Engine.evaluate", ("Engine.evaluate (engine/evaluate.py)",)),
    ("plan -> row (model_dump_json)", ("PlanService._new_plan",)),
    ("store: insert plan + codes", ("Tx.insert_plan",)),
    ("re-read stored plan", ("Tx.get_plan", "Tx.plan_by_idempotency_key")),
    ("write lock wait + BEGIN", ("_on_begin", "_writer_lock", "Database.write_lock")),
    ("commit (fsync)", ("Transaction.commit", "do_commit")),
    ("transaction other", ("Database.transaction",)),
    ("response: build model", ("StoredPlan.of", "stored_plan_response")),
    ("response: serialize", ("serialize_response", "jsonable_encoder", "JSONResponse.render")),
    ("access log + logging", ("(logging/__init__.py)",)),
    ("HTTP: uvicorn/starlette/fastapi", ("(uvicorn/", "(starlette/", "(fastapi/", "(httptools", "(anyio/")),
)
ENGINE_STEPS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("derive facts", ("derive (engine/derive.py)",)),
    ("durable_rules run", ("(engine/_durable.py)",)),
    ("missing information", ("missing_information",)),
    ("why not", ("why_not_recommended",)),
    ("level + phases + alerts", ("choose_level", "build_phases", "build_alerts", "emissions")),
    ("trace", ("trace_of",)),
    ("check_plan", ("check_plan",)),
    ("CarePlan model (pydantic)", ("(pydantic/",)),
)
# Leaf frames of a thread that waits (py-spy --nonblocking cannot always tell idle threads).
IDLE_LEAVES = (
    "Condition.wait",
    "Event.wait",
    "Queue.get",
    "select (selectors.py)",
    "_run_once (asyncio",
    "Runner.run (asyncio/runners.py)",  # uvloop waiting in epoll
)


def _load_module() -> object:
    spec = importlib.util.spec_from_file_location("carepath_bench_load", HERE / "load.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def classify(stacks: Counter[str], steps: Sequence[tuple[str, tuple[str, ...]]]) -> Counter[str]:
    """Samples per step; a stack is 'frame;frame;...' from the root, as py-spy's raw format."""
    out: Counter[str] = Counter()
    for stack, n in stacks.items():
        out[_first_step(stack, steps)] += n
    return out


def _first_step(stack: str, steps: Sequence[tuple[str, tuple[str, ...]]]) -> str:
    for name, marks in steps:
        if any(m in stack for m in marks):
            return name
    return "other"


def busy(stacks: Counter[str]) -> Counter[str]:
    return Counter({s: n for s, n in stacks.items() if not s.rsplit(";", 1)[-1].startswith(IDLE_LEAVES)})


def read_raw(path: Path) -> Counter[str]:
    stacks: Counter[str] = Counter()
    for line in path.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if stack and count.isdigit():
            stacks[stack] += int(count)
    return stacks


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--rate", type=float, default=40.0, help="offered requests/s (below the knee)")
    p.add_argument("--duration", type=float, default=15.0, help="seconds sampled")
    p.add_argument("--workers", type=int, default=1)
    p.add_argument("--db", choices=("sqlite", "postgresql"), default="sqlite")
    p.add_argument(
        "--pg-url", default=os.environ.get("CAREPATH_BENCH_PG_URL") or os.environ.get("CAREPATH_TEST_PG_URL")
    )
    p.add_argument("--endpoint", choices=("create", "read"), default="create")
    p.add_argument("--sample-rate", type=int, default=200, help="py-spy samples/s")
    p.add_argument("--all-threads", action="store_true",
                   help="sample every busy thread, not only the one holding the GIL (default)")  # fmt: skip
    p.add_argument("--keep", help="keep py-spy's raw (collapsed) stacks in this file")
    p.add_argument("--server-env", action="append", default=[], help="KEY=VALUE for the server")
    return p.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> None:
    args = parse_args(argv)
    pyspy = shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))
    if not Path(pyspy).exists():
        sys.exit("py-spy not found: pip install py-spy")
    load = _load_module()
    load_args = load.parse_args(  # type: ignore[attr-defined]
        ["--rates", str(args.rate), "--duration", str(args.duration), "--endpoint", args.endpoint,
         "--warmup", "3", "--db", args.db] + (["--pg-url", args.pg_url] if args.pg_url else [])
    )  # fmt: skip
    env = dict(kv.split("=", 1) for kv in args.server_env)
    import contextlib

    raw = Path(args.keep or f"/tmp/carepath-profile-{os.getpid()}.txt")
    with contextlib.ExitStack() as stack:
        url = stack.enter_context(load.pg_database(args.pg_url)) if args.db == "postgresql" else None  # type: ignore[attr-defined]
        server = stack.enter_context(load.Server(args.workers, url, env, 2))  # type: ignore[attr-defined]
        target = load.read_target(server.url, server.tokens, load_args)  # type: ignore[attr-defined]
        load.warm_up(target, load_args)  # type: ignore[attr-defined]
        spy = subprocess.Popen(
            [pyspy, "record", "--pid", str(server.proc.pid), "--subprocesses", "--nonblocking",
             "--rate", str(args.sample_rate), "--format", "raw", "--nolineno", "--output", str(raw),
             "--duration", str(int(args.duration + 1))] + ([] if args.all_threads else ["--gil"]),
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
        )  # fmt: skip
        time.sleep(1.0)  # py-spy attaches
        step = load.measure(target, "profile", args.rate, load_args, server)  # type: ignore[attr-defined]
        spy.wait(60)
    print(load.HEADER)  # type: ignore[attr-defined]
    print(load.row(step))  # type: ignore[attr-defined]
    stacks = busy(read_raw(raw))
    if not stacks:
        sys.exit(f"py-spy recorded nothing: {spy.stderr.read().decode()[-400:] if spy.stderr else ''}")
    report(stacks, step.cpu_ms_per_plan or 0.0)  # type: ignore[attr-defined]
    if not args.keep:
        raw.unlink(missing_ok=True)


def report(stacks: Counter[str], cpu_ms_per_plan: float) -> None:
    total = sum(stacks.values())
    by_step = classify(stacks, STEPS)
    print(f"\n{total} busy samples; server CPU {cpu_ms_per_plan:.1f} ms per stored plan (from /proc)")
    print(f"{'step':<36} {'share':>6} {'ms/plan':>8}")
    for name, _ in (*STEPS, ("other", ())):
        n = by_step.get(name, 0)
        print(f"{name:<36} {n / total:>6.1%} {cpu_ms_per_plan * n / total:>8.2f}")
    engine = Counter({s: n for s, n in stacks.items() if "Engine.evaluate (engine/evaluate.py)" in s})
    engine_total = sum(engine.values())
    if engine_total:
        print(f"\ninside Engine.evaluate ({engine_total / total:.1%} of all samples)")
        for name, n in sorted(classify(engine, ENGINE_STEPS).items(), key=lambda kv: -kv[1]):
            print(f"  {name:<34} {n / engine_total:>6.1%} {cpu_ms_per_plan * n / total:>8.2f}")


if __name__ == "__main__":
    main()
