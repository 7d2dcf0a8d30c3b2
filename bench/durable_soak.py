"""durable_rules soak: many rulesets in one process, several threads, every result checked.

    python bench/durable_soak.py                              # 1,000,000 evaluations (docs/reliability.md)
    python bench/durable_soak.py --evaluations 50000 --compare 20000

Each worker PROCESS builds RULESETS durable runners of the real rule pack (each its own
durable Host and C ruleset) and drives them from THREADS threads, round robin, over DISTINCT
varied intakes (tests/factories.py). Every evaluation's firing set (rule ids and matched facts)
is compared with the reference interpreter's for the same facts. Counted: refused (EngineError:
error 307 and friends), wrong (a firing set that differs from the rules), ruleset rebuilds
(engine/_durable.py), and the worker's exit: a crash in native code shows as a signal.

``--compare N`` first runs N evaluations per worker with durable's own background threads
switched back on (what carepath did before the fix), then the soak with carepath's runner as
it ships, so both rows come from the same run on the same host load.
"""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]
sys.path.insert(0, str(ROOT))

import argparse  # noqa: E402
import multiprocessing as mp  # noqa: E402
import os  # noqa: E402
import platform  # noqa: E402
import random  # noqa: E402
import threading  # noqa: E402
import time  # noqa: E402
from concurrent.futures import ThreadPoolExecutor  # noqa: E402
from dataclasses import asdict, dataclass  # noqa: E402
from datetime import UTC, datetime  # noqa: E402
from importlib.metadata import version  # noqa: E402
from typing import Any  # noqa: E402


@dataclass
class WorkerResult:
    worker: int
    evaluations: int = 0
    refused: int = 0
    wrong: int = 0
    rebuilds: int = 0
    first_refusal: str = ""
    rss_start_mb: float = 0.0
    rss_end_mb: float = 0.0
    seconds: float = 0.0


def _rss_mb() -> float:
    with open("/proc/self/statm", encoding="ascii") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def _worker(index: int, args: dict[str, Any], with_durable_threads: bool, out: Any) -> None:
    from carepath.engine import EngineError, _durable, load_rulepack, parse_intake_obj
    from carepath.engine.derive import derive
    from carepath.engine.ir import ReferenceRunner
    from tests.factories import random_intake

    if with_durable_threads:  # the runner as it was before the fix: durable's threads run
        from durable import engine as durable_engine

        _durable._Host._run = durable_engine.Host._run  # type: ignore[method-assign]
    pack = load_rulepack()
    rng = random.Random(args["seed"] + index)
    facts = [derive(parse_intake_obj(random_intake(rng))) for _ in range(args["distinct"])]
    oracle = ReferenceRunner(pack)
    expected = [[(f.rule_id, f.matched_facts) for f in oracle.run(x)] for x in facts]
    runners = [_durable.DurableRunner(pack) for _ in range(args["rulesets"])]
    result = WorkerResult(index, rss_start_mb=_rss_mb())
    lock = threading.Lock()
    n = args["per_worker"]

    def one(i: int) -> None:
        runner = runners[i % len(runners)]
        try:
            got = [(f.rule_id, f.matched_facts) for f in runner.run(facts[i % len(facts)])]
            ok, why = got == expected[i % len(facts)], ""
        except EngineError as exc:
            ok, why = False, f"{exc} ({exc.__cause__!r})"
        if not ok:
            with lock:
                if why:
                    result.refused += 1
                    result.first_refusal = result.first_refusal or why[:160]
                else:
                    result.wrong += 1

    started = time.perf_counter()
    every = max(1, args["progress"])
    block = 10_000  # Executor.map submits everything at once: feed it in bounded blocks
    with ThreadPoolExecutor(max_workers=args["threads"]) as pool:
        for first in range(0, n, block):
            list(pool.map(one, range(first, min(n, first + block)), chunksize=64))
            done = min(n, first + block)
            if done % every == 0 or done == n:
                print(
                    f"    worker {index}: {done:,} evaluations, {result.refused} refused,"
                    f" {result.wrong} wrong, {time.perf_counter() - started:.0f} s, RSS {_rss_mb():.1f} MB",
                    flush=True,
                )
    result.seconds = time.perf_counter() - started
    result.evaluations = n
    result.rebuilds = sum(r.rebuilds for r in runners)
    result.rss_end_mb = _rss_mb()
    out.put(asdict(result))


def _run(label: str, args: dict[str, Any], with_durable_threads: bool) -> bool:
    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    procs = [
        ctx.Process(target=_worker, args=(i, args, with_durable_threads, queue), daemon=True)
        for i in range(args["processes"])
    ]
    started = time.perf_counter()
    for p in procs:
        p.start()
    results: list[dict[str, Any]] = []
    while len(results) < len(procs) and (any(p.is_alive() for p in procs) or not queue.empty()):
        try:
            results.append(queue.get(timeout=1))
        except Exception:  # noqa: BLE001 - queue.Empty: keep watching the workers
            continue
    for p in procs:
        p.join()
    wall = time.perf_counter() - started
    crashes = [p.exitcode for p in procs if p.exitcode != 0]
    total = sum(r["evaluations"] for r in results)
    refused = sum(r["refused"] for r in results)
    wrong = sum(r["wrong"] for r in results)
    rebuilds = sum(r["rebuilds"] for r in results)
    rate = total / wall if wall else 0.0
    print(
        f"{label:<34} {total:>10,} {refused:>8} {wrong:>7} {rebuilds:>9} {len(crashes):>8}"
        f" {wall:>9.0f} {rate:>8,.0f}",
        flush=True,
    )
    for r in results:
        print(
            f"    worker {r['worker']}: {r['evaluations']:,} evaluations in {r['seconds']:.0f} s,"
            f" RSS {r['rss_start_mb']:.1f} -> {r['rss_end_mb']:.1f} MB"
            + (f"; first refusal: {r['first_refusal']}" if r["first_refusal"] else ""),
            flush=True,
        )
    for code in crashes:
        print(f"    a worker died: exit code {code} (negative = killed by that signal)", flush=True)
    return not (crashes or refused or wrong or len(results) < len(procs))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--evaluations", type=int, default=1_000_000, help="in total, over all workers")
    ap.add_argument("--processes", type=int, default=2, help="worker processes (one per core)")
    ap.add_argument("--rulesets", type=int, default=8, help="durable rulesets per process")
    ap.add_argument("--threads", type=int, default=4, help="threads per process")
    ap.add_argument("--distinct", type=int, default=1000, help="distinct intakes per process")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--compare", type=int, default=0, help="evaluations per worker with durable's threads on")
    ap.add_argument("--progress", type=int, default=50_000, help="a progress line per worker every N")
    ns = ap.parse_args(argv)
    args = vars(ns) | {"per_worker": ns.evaluations // ns.processes}
    print(
        f"carepath durable_rules soak, {datetime.now(UTC):%Y-%m-%d %H:%M} UTC: {ns.processes} processes x "
        f"{ns.rulesets} rulesets x {ns.threads} threads, {ns.distinct} distinct intakes per process "
        f"(seed {ns.seed}); every firing set checked against the reference interpreter",
        flush=True,
    )
    print(
        f"Python {platform.python_version()}, durable_rules {version('durable_rules')}, "
        f"{platform.system()} {platform.machine()}, {os.cpu_count()} CPUs",
        flush=True,
    )
    print(
        f"{'':<34} {'evals':>10} {'refused':>8} {'wrong':>7} {'rebuilds':>9} {'crashed':>8}"
        f" {'wall s':>9} {'evals/s':>8}",
        flush=True,
    )
    if ns.compare:
        _run("before: durable's threads running", args | {"per_worker": ns.compare}, True)
    ok = _run("carepath runner (threads contained)", args, False)
    print("result:", "zero refusals, zero wrong firing sets, zero crashes" if ok else "FAILED", flush=True)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
