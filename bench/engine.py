"""Engine benchmark: durable_rules against the reference interpreter, measured in one run.

    python bench/engine.py                    # 10,000 intakes, 100,000-evaluation memory soak
    python bench/engine.py --n 2000 --soak 20000

1. Generates N intakes, seeded: a synthetic caseload (``--intakes synth``, the default;
   engine/synth.py, as ``carepath synth``) or values spread over the whole contract, thresholds
   and odd corners included (``--intakes contract``; tests/factories.py).
2. Times ``Engine.evaluate`` on each, for the durable engine and the reference interpreter,
   side by side (alternating in blocks of 100 intakes, so both see the same host load):
   evaluations per second, p50 and p99 latency; then the rule matching alone (``runner.run``
   on derived facts), the same way. Prints a table and the ratios.
3. Memory: RSS sampled every 10,000 of SOAK durable ``Engine.evaluate`` calls; prints the
   first, last and highest sample and the growth from first to last.

An evaluation the engine refuses (EngineError: a safety invariant of the rule pack) is timed
like any other and counted in the "refused" column.
"""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
# Run as a script, this file's folder comes first on sys.path and its name would shadow the
# `engine` package: put the repository root there instead.
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]
sys.path.insert(0, str(ROOT))

import argparse  # noqa: E402
import gc  # noqa: E402
import os  # noqa: E402
import platform  # noqa: E402
import random  # noqa: E402
import resource  # noqa: E402
import statistics  # noqa: E402
import time  # noqa: E402
from collections.abc import Callable, Sequence  # noqa: E402
from dataclasses import dataclass  # noqa: E402
from datetime import UTC, datetime  # noqa: E402
from importlib.metadata import version  # noqa: E402
from typing import Any  # noqa: E402

from carepath.engine import Engine, EngineError, Intake, load_rulepack, parse_intake_obj  # noqa: E402
from carepath.engine._durable import DurableRunner  # noqa: E402
from carepath.engine.derive import derive  # noqa: E402
from carepath.engine.ir import ReferenceRunner  # noqa: E402
from tests.factories import random_intake  # noqa: E402

STAMP = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)
SAMPLE_EVERY = 10_000
WARM_UP = 200
BLOCK = 100  # items per turn when contenders alternate


@dataclass(frozen=True)
class Timing:
    label: str
    latencies_ns: list[int]
    refused: int
    cpu_share: float  # process CPU time / wall time: well below 1 means the host was busy

    @property
    def per_second(self) -> float:
        return len(self.latencies_ns) / (sum(self.latencies_ns) / 1e9)

    def percentile_ms(self, q: float) -> float:
        ordered = sorted(self.latencies_ns)
        return ordered[min(len(ordered) - 1, int(q * len(ordered)))] / 1e6


def rss_mb() -> float:
    try:
        with open("/proc/self/statm", encoding="ascii") as statm:
            return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20
    except OSError:  # not Linux: peak RSS is the best available
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def make_intakes(n: int, seed: int, kind: str = "synth") -> list[Intake]:
    if kind == "synth":
        from carepath.engine.synth import synth_intakes

        return list(synth_intakes(n, seed))
    rng = random.Random(seed)
    return [parse_intake_obj(random_intake(rng)) for _ in range(n)]


def _timed_side_by_side(
    contenders: Sequence[tuple[str, Callable[[Any], object]]], items: Sequence[Any]
) -> list[Timing]:
    """Time each contender on the same items, alternating in blocks of BLOCK items, so a
    change in the host's load during the run falls on all of them alike."""
    for _, call in contenders:
        for item in items[:WARM_UP]:
            _attempt(call, item)
    latencies: list[list[int]] = [[] for _ in contenders]
    refused = [0] * len(contenders)
    cpu = [0] * len(contenders)
    wall = [0] * len(contenders)
    clock = time.perf_counter_ns
    for start in range(0, len(items), BLOCK):
        block = items[start : start + BLOCK]
        for n, (_, call) in enumerate(contenders):
            cpu_start, wall_start = time.process_time_ns(), clock()
            for item in block:
                t0 = clock()
                refused[n] += _attempt(call, item)
                latencies[n].append(clock() - t0)
            cpu[n] += time.process_time_ns() - cpu_start
            wall[n] += clock() - wall_start
    return [
        Timing(label, latencies[n], refused[n], cpu[n] / max(1, wall[n]))
        for n, (label, _) in enumerate(contenders)
    ]


def _attempt(call: Callable[[Any], object], item: Any) -> int:
    try:
        call(item)
    except EngineError:
        return 1
    return 0


def measure(intakes: list[Intake]) -> list[Timing]:
    pack = load_rulepack()
    durable, reference = Engine(pack, "durable"), Engine(pack, "reference")
    facts = [derive(i) for i in intakes]
    durable_runner, reference_runner = DurableRunner(pack), ReferenceRunner(pack)  # matching alone
    return [
        *_timed_side_by_side(
            [
                ("Engine.evaluate   durable", lambda i: durable.evaluate(i, STAMP)),
                ("Engine.evaluate   reference", lambda i: reference.evaluate(i, STAMP)),
            ],
            intakes,
        ),
        *_timed_side_by_side(
            [
                ("rule matching     durable", durable_runner.run),
                ("rule matching     reference", reference_runner.run),
            ],
            facts,
        ),
    ]


def soak(intakes: list[Intake], total: int) -> tuple[float, list[float]]:
    """RSS before the soak, and after every SAMPLE_EVERY evaluations."""
    engine = Engine(load_rulepack(), "durable")
    before, samples = rss_mb(), []
    for n in range(1, total + 1):
        _attempt(lambda i: engine.evaluate(i, STAMP), intakes[n % len(intakes)])
        if n % SAMPLE_EVERY == 0:
            samples.append(rss_mb())
    return before, samples


def report_header(n: int, seed: int, kind: str = "synth") -> str:
    pack = load_rulepack()
    return (
        f"carepath engine benchmark: {n:,} {kind} intakes (seed {seed}); rule pack {pack.id} {pack.version}, "
        f"{len(pack.rules)} active rules, sha256 {pack.sha256[:12]}\n"
        f"Python {platform.python_version()}, durable_rules {version('durable-rules')}, "
        f"{platform.system()} {platform.machine()}, {os.cpu_count()} CPUs, one process, one thread"
    )


def report_table(timings: list[Timing]) -> str:
    lines = [f"{'':30}{'evals/s':>10}{'p50 ms':>10}{'p99 ms':>10}{'refused':>9}{'cpu/wall':>10}"]
    for t in timings:
        lines.append(
            f"{t.label:30}{t.per_second:>10,.0f}{t.percentile_ms(0.50):>10.3f}"
            f"{t.percentile_ms(0.99):>10.3f}{t.refused:>9,}{t.cpu_share:>10.0%}"
        )
    full, rules = timings[0:2], timings[2:4]
    lines.append("")
    lines.append(
        f"reference / durable throughput: {full[1].per_second / full[0].per_second:.2f}x for "
        f"Engine.evaluate, {rules[1].per_second / rules[0].per_second:.2f}x for rule matching alone"
    )
    share = statistics.fmean(rules[0].latencies_ns) / statistics.fmean(full[0].latencies_ns)
    lines.append(f"durable rule matching is {share:.0%} of a durable Engine.evaluate")
    if min(t.cpu_share for t in timings) < 0.9:
        lines.append(
            "WARNING: cpu/wall below 90%: other processes competed for the CPU; rerun on a quiet host"
        )
    return "\n".join(lines)


def report_soak(before: float, samples: list[float], total: int) -> str:
    if not samples:
        return f"memory: {total:,} evaluations is fewer than one sample ({SAMPLE_EVERY:,})"
    first, last, peak = samples[0], samples[-1], max(samples)
    growth = (last - first) / first
    return (
        f"memory: {total:,} durable Engine.evaluate calls, RSS after every {SAMPLE_EVERY:,} "
        f"({len(samples)} samples; {before:.1f} MB before the first):\n"
        f"  first {first:.1f} MB, last {last:.1f} MB, max {peak:.1f} MB, "
        f"growth first->last {last - first:+.1f} MB ({growth:+.1%})\n"
        f"  samples MB: {' '.join(f'{s:.1f}' for s in samples)}"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--n", type=int, default=10_000, help="intakes to time (default 10,000)")
    parser.add_argument("--soak", type=int, default=100_000, help="evaluations in the memory soak; 0 skips")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument(
        "--intakes",
        choices=("synth", "contract"),
        default="synth",
        help="synth: a realistic caseload (carepath synth); contract: every field and threshold",
    )
    args = parser.parse_args(argv)
    intakes = make_intakes(args.n, args.seed, args.intakes)
    print(report_header(args.n, args.seed, args.intakes), flush=True)
    gc.collect()
    print(report_table(measure(intakes)), flush=True)
    if args.soak:
        print(report_soak(*soak(intakes, args.soak), args.soak), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
