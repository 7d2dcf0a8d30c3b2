"""Population runs: ``carepath batch`` throughput on 1 and 2 worker processes (side by side,
in one run), and on a Dask distributed LocalCluster.

    nice python bench/batch.py                        # 4,000 intakes: 1 vs 2 processes, twice each
    nice python bench/batch.py --n 10000 --rounds 1
    nice python bench/batch.py --dask-only --n 100000 --workers 2   # the README's Dask figure

Each contender runs the same generated NDJSON file (seeded, varied over the whole contract:
tests/factories.py) through ``api.batch.run_batch`` with the durable engine, the way the
command does; rounds alternate the contenders (1, 2, 1, 2, ...) so host load falls on both.
Prints intakes/s per contender, the speed-up of 2 processes over 1, and the machine's load
(other processes share it). Output files are written to a temporary folder and deleted.
"""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]
sys.path.insert(0, str(ROOT))

import argparse  # noqa: E402
import json  # noqa: E402
import os  # noqa: E402
import random  # noqa: E402
import shutil  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from datetime import UTC, datetime  # noqa: E402

from carepath.api.batch import run_batch  # noqa: E402
from tests.factories import random_intake  # noqa: E402

STAMP = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)


def make_input(path: Path, n: int, seed: int) -> None:
    rng = random.Random(seed)
    with path.open("w", encoding="utf-8") as f:
        for _ in range(n):
            f.write(json.dumps(random_intake(rng)) + "\n")


def timed(source: Path, out: Path, workers: int, cluster: str | None, runner: str) -> tuple[float, float]:
    """(wall seconds, CPU seconds of this process and its finished children)."""
    cpu0 = _cpu()
    t0 = time.perf_counter()
    counts = run_batch(source, out, workers, STAMP, cluster=cluster, progress=False, runner=runner)
    wall = time.perf_counter() - t0
    out.unlink(missing_ok=True)
    assert sum(counts.values()) > 0
    return wall, _cpu() - cpu0


def _cpu() -> float:
    t = os.times()
    return t.user + t.system + t.children_user + t.children_system


def loadavg() -> str:
    try:
        return " ".join(Path("/proc/loadavg").read_text().split()[:3])
    except OSError:
        return "?"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--n", type=int, default=4000, help="intakes")
    p.add_argument("--rounds", type=int, default=2, help="alternating rounds of 1 and 2 processes")
    p.add_argument("--workers", type=int, default=2, help="Dask LocalCluster worker processes")
    p.add_argument("--dask", action="store_true", help="also run on a Dask LocalCluster")
    p.add_argument("--dask-only", action="store_true", help="only the Dask LocalCluster run")
    p.add_argument("--engine", choices=("durable", "reference"), default="durable")
    p.add_argument("--seed", type=int, default=12)
    args = p.parse_args()

    tmp = Path(tempfile.mkdtemp(prefix="carepath-bench-batch-"))
    try:
        source = tmp / "in.ndjson"
        make_input(source, args.n, args.seed)
        print(f"# {args.n} intakes ({source.stat().st_size / 2**20:.1f} MiB), {os.cpu_count()} cores, "
              f"engine {args.engine}, loadavg {loadavg()}", flush=True)  # fmt: skip
        results: dict[str, list[float]] = {}
        if not args.dask_only:
            for r in range(args.rounds):
                for workers in (1, 2):
                    wall, cpu = timed(source, tmp / "out.ndjson", workers, None, args.engine)
                    results.setdefault(f"{workers} process{'es' if workers > 1 else ''}", []).append(wall)
                    print(f"round {r + 1}: {workers} process(es): {args.n / wall:8.1f} intakes/s "
                          f"({wall:.1f} s wall, {cpu:.1f} s CPU)", flush=True)  # fmt: skip
        if args.dask or args.dask_only:
            label = f"Dask LocalCluster {args.workers}x1"
            wall, _ = timed(source, tmp / "out.ndjson", args.workers, "local", args.engine)
            results[label] = [wall]
            print(f"{label}: {args.n / wall:8.1f} intakes/s ({wall:.1f} s wall, cluster start-up included)")
        print(f"\n{'contender':<28} {'intakes/s (best)':>17}")
        for label, walls in results.items():
            print(f"{label:<28} {args.n / min(walls):>17.1f}")
        if "1 process" in results and "2 processes" in results:
            print(
                f"speed-up 1 -> 2 processes: {min(results['1 process']) / min(results['2 processes']):.2f}x"
            )
        print(f"# loadavg at the end {loadavg()} (other processes share this machine)")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
