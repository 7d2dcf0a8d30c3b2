"""Open-loop load generator for the carepath service: fixed arrival rate, latency from the
scheduled send time (no coordinated omission), every timeout and error counted.

    # start `carepath serve` itself: 1 and 2 workers, SQLite and PostgreSQL, side by side
    nice python bench/load.py --workers 1,2 --db sqlite,postgresql --rates 50,100,200,300

    # the knee, then 10x that rate against the same server (graceful overload)
    nice python bench/load.py --workers 2 --db sqlite --rates 100,200,300,400 --overload 10

    # an already running server (any host you own); the token from `carepath users token`
    python bench/load.py --url http://127.0.0.1:8000 --token "$TOKEN" --rates 50

How it measures
  * Request i of a step is due at ``t0 + i / rate``. A scheduler starts it at that instant
    whatever happened to earlier requests (open loop); its latency is ``completion - due``,
    so time spent waiting for a free connection or a slow generator counts against the
    server, as it would for a real client.
  * A request not answered within ``--timeout`` seconds of its due time is abandoned (the
    connection is closed, like a client giving up) and counted as a timeout.
  * Per step: completed/s (2xx per second of the step), p50/p90/p99/max latency of the 2xx
    answers, the status-code histogram (with timeouts and connection errors), the 503 count
    and their p99 (a *fast* 503 is the point of load shedding), the server's CPU per stored
    plan (servers it started: utime+stime of the server's process tree from /proc), plans
    stored in the database against 201s delivered (work done for clients that gave up), and
    the generator's own CPU share (it shares the machine with the server).
  * ``--overload F`` finds the knee (the highest step with p99 <= --slo-ms, >= 95% of the
    offered rate completed and no errors) and then offers F x that rate; the ratio of
    completed/s to the knee's is printed (1.00 = no loss of goodput under overload).

Servers this script starts get a fresh data dir (SQLite) or a throwaway PostgreSQL database
(``--pg-url``, default $CAREPATH_BENCH_PG_URL or $CAREPATH_TEST_PG_URL: an admin URL whose
server may create databases), users made with ``carepath users add`` / ``users token``.
Everything goes to loopback only; every step is bounded in count and time.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import platform
import resource
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # tests/ helpers (free ports, throwaway PostgreSQL databases)
    sys.path.insert(0, str(ROOT))

from tests.service.helpers import free_port, pg_database  # noqa: E402

EXAMPLE = ROOT / "examples" / "intake-fentanyl.json"
PASSWORD = "bench password, not a secret"
STARTUP_LIMIT_S = 120.0
CLK_TCK = os.sysconf("SC_CLK_TCK")


# --- results ----------------------------------------------------------------------------------


@dataclass
class Step:
    label: str  # e.g. "sqlite w2"
    offered_rate: float
    duration_s: float
    sent: int = 0
    ok: int = 0
    statuses: Counter[str] = field(default_factory=Counter)
    ok_latencies_ms: list[float] = field(default_factory=list)
    shed_latencies_ms: list[float] = field(default_factory=list)  # 503s
    elapsed_s: float = 0.0
    server_cpu_s: float | None = None
    stored: int | None = None  # plans the database gained during the step
    generator_cpu: float = 0.0  # generator CPU seconds / wall seconds
    note: str = ""

    @property
    def completed_per_s(self) -> float:
        return self.ok / self.elapsed_s if self.elapsed_s else 0.0

    def pct(self, q: float, values: Sequence[float] | None = None) -> float | None:
        data = sorted(self.ok_latencies_ms if values is None else values)
        if not data:
            return None
        return data[min(len(data) - 1, int(q * len(data)))]

    @property
    def errors(self) -> int:
        return sum(n for s, n in self.statuses.items() if not s.startswith("2") and s != "503")

    @property
    def cpu_ms_per_plan(self) -> float | None:
        if self.server_cpu_s is None or not self.ok:
            return None
        return self.server_cpu_s * 1000 / self.ok

    def meets(self, slo_ms: float) -> bool:
        p99 = self.pct(0.99)
        return (
            p99 is not None
            and p99 <= slo_ms
            and self.errors == 0
            and self.statuses.get("503", 0) == 0
            and self.completed_per_s >= 0.95 * self.offered_rate
        )

    def as_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out.pop("ok_latencies_ms")
        out.pop("shed_latencies_ms")
        out["statuses"] = dict(self.statuses)
        out["completed_per_s"] = round(self.completed_per_s, 1)
        for q in (0.5, 0.9, 0.99, 1.0):
            out[f"p{int(q * 100)}_ms"] = self.pct(q)
        out["shed_p99_ms"] = self.pct(0.99, self.shed_latencies_ms)
        out["cpu_ms_per_plan"] = self.cpu_ms_per_plan
        return out


# --- the open-loop generator -----------------------------------------------------------------


@dataclass(frozen=True)
class Target:
    url: str
    tokens: tuple[str, ...]
    method: str = "POST"
    path: str = "/v1/plans"
    body: bytes = b""


async def run_step(target: Target, rate: float, duration: float, timeout: float, max_conn: int) -> Step:
    """Offer ``rate`` requests/s for ``duration`` s; wait at most ``timeout`` for the last."""
    import aiohttp

    step = Step(label="", offered_rate=rate, duration_s=duration)
    n = max(1, int(rate * duration))
    loop = asyncio.get_running_loop()
    headers = [
        {"Authorization": f"Bearer {tok}", "Content-Type": "application/json"} for tok in target.tokens
    ]
    connector = aiohttp.TCPConnector(limit=max_conn, force_close=False, enable_cleanup_closed=True)
    tasks: list[asyncio.Task[None]] = []
    last_done = [0.0]

    async with aiohttp.ClientSession(
        base_url=target.url, connector=connector, timeout=aiohttp.ClientTimeout(total=None)
    ) as session:

        async def one(i: int, due: float) -> None:
            key = "timeout"
            try:
                async with asyncio.timeout_at(due + timeout):
                    async with session.request(
                        target.method,
                        target.path,
                        data=target.body or None,
                        headers=headers[i % len(headers)],
                    ) as resp:
                        await resp.read()
                        key = str(resp.status)
            except TimeoutError:
                key = "timeout"
            except aiohttp.ClientError as exc:
                key = f"error:{type(exc).__name__}"
            except OSError as exc:
                key = f"error:{type(exc).__name__}"
            done = loop.time()
            last_done[0] = max(last_done[0], done)
            step.statuses[key] += 1
            latency = (done - due) * 1000
            if key.startswith("2"):
                step.ok += 1
                step.ok_latencies_ms.append(latency)
            elif key == "503":
                step.shed_latencies_ms.append(latency)

        cpu0 = _own_cpu()
        t0 = loop.time() + 0.05
        for i in range(n):
            due = t0 + i / rate
            delay = due - loop.time()
            if delay > 0:
                await asyncio.sleep(delay)
            tasks.append(asyncio.create_task(one(i, due)))
        step.sent = n
        await asyncio.gather(*tasks)
        step.elapsed_s = max(duration, last_done[0] - t0)
        step.generator_cpu = (_own_cpu() - cpu0) / max(step.elapsed_s, 1e-9)
    return step


def _own_cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


# --- servers this script starts --------------------------------------------------------------


def tree_cpu_s(pid: int) -> float:
    """utime+stime (s) of ``pid`` and all its descendants, live ones read from /proc."""
    parents: dict[int, int] = {}
    times: dict[int, float] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        fields = stat[stat.rindex(")") + 2 :].split()
        parents[int(entry.name)] = int(fields[1])
        times[int(entry.name)] = (int(fields[11]) + int(fields[12])) / CLK_TCK
    total, todo = 0.0, [pid]
    while todo:
        p = todo.pop()
        total += times.get(p, 0.0)
        todo += [c for c, pp in parents.items() if pp == p]
    return total


class Server:
    """``carepath serve --workers N`` in a subprocess, with its own data dir and users."""

    def __init__(
        self, workers: int, database_url: str | None, env: dict[str, str], users: int, python: str = ""
    ) -> None:
        self.python = python or sys.executable
        self.workers = workers
        self.database_url = database_url
        self.tmp = Path(tempfile.mkdtemp(prefix="carepath-load-"))
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        inherited = {
            k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "CAREPATH_DATABASE_URL")
        }
        self.env = {**inherited, "CAREPATH_DATA_DIR": str(self.tmp / "data"), **env}
        if database_url:
            self.env["CAREPATH_DATABASE_URL"] = database_url
        self.n_users = users
        self.tokens: tuple[str, ...] = ()
        self.proc: subprocess.Popen[bytes] | None = None

    def _cli(self, *args: str, stdin: str = "") -> str:
        done = subprocess.run(
            [self.python, "-m", "carepath.api", *args],
            env=self.env,
            input=stdin,
            capture_output=True,
            text=True,
            timeout=120,
        )
        if done.returncode != 0:
            raise RuntimeError(f"carepath {args[0]} {args[1]} failed: {done.stderr.strip()[-300:]}")
        return done.stdout.strip()

    def __enter__(self) -> Server:
        self._cli("db", "upgrade")  # the only command that creates the database (issue 10)
        tokens = []
        for u in range(self.n_users):
            email = f"bench{u}@bench.example"
            self._cli("users", "add", "--org", "bench", "--email", email, "--password-stdin", stdin=PASSWORD)
            tokens.append(self._cli("users", "token", email, "--label", "bench").splitlines()[-1])
        self.tokens = tuple(tokens)
        log = (self.tmp / "server.log").open("wb")
        self.proc = subprocess.Popen(
            [self.python, "-m", "carepath.api", "serve", "--port", str(self.port)]
            + ["--workers", str(self.workers)],
            env=self.env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        self._wait_ready()
        return self

    def _wait_ready(self) -> None:
        import httpx

        deadline = time.monotonic() + STARTUP_LIMIT_S
        ready = 0
        while time.monotonic() < deadline:
            assert self.proc is not None
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited ({self.proc.returncode}); see {self.tmp / 'server.log'}")
            with contextlib.suppress(httpx.HTTPError):
                # every worker must answer: hit /health a few times in a row
                if httpx.get(self.url + "/health", timeout=2).status_code == 200:
                    ready += 1
                    if ready >= 3 * self.workers:
                        return
                    continue
            time.sleep(0.2)
        raise RuntimeError("server did not start in time")

    def cpu_s(self) -> float:
        assert self.proc is not None
        return tree_cpu_s(self.proc.pid)

    def stored_plans(self) -> int:
        from sqlalchemy import create_engine, text

        url = self.database_url or f"sqlite:///{self.tmp / 'data' / 'carepath.sqlite3'}"
        engine = create_engine(url)
        try:
            with engine.connect() as conn:
                return int(conn.execute(text("SELECT count(*) FROM plans")).scalar_one())
        finally:
            engine.dispose()

    def __exit__(self, *exc: object) -> None:
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(10)
        shutil.rmtree(self.tmp, ignore_errors=True)


# --- driving one configuration ---------------------------------------------------------------


def measure(target: Target, label: str, rate: float, args: argparse.Namespace, server: Server | None) -> Step:
    cpu0 = server.cpu_s() if server else None
    stored0 = server.stored_plans() if server and target.path == "/v1/plans" else None
    step = _run(target, rate, args.duration, args)
    step.label = label
    if server is not None and cpu0 is not None:
        step.server_cpu_s = server.cpu_s() - cpu0
    if server is not None and stored0 is not None:
        time.sleep(0.5)  # requests the server is still finishing after the client gave up
        step.stored = server.stored_plans() - stored0
    return step


def _run(target: Target, rate: float, duration: float, args: argparse.Namespace) -> Step:
    try:
        import uvloop

        runner = uvloop.run
    except ImportError:  # pragma: no cover - uvloop ships with uvicorn[standard]
        runner = asyncio.run

    def step() -> Step:
        return runner(run_step(target, rate, duration, args.timeout, args.max_connections))

    try:
        asyncio.get_running_loop()
    except RuntimeError:  # no loop in this thread: the usual case (the command line)
        return step()
    # called from a thread that already runs an event loop (e.g. a test process that drove a
    # sync Playwright browser first): the generator gets a loop of its own in a worker thread
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(step).result()


def read_target(url: str, tokens: Sequence[str], args: argparse.Namespace) -> Target:
    body = Path(args.body).read_bytes() if args.body else EXAMPLE.read_bytes()
    if args.endpoint == "create":
        return Target(url, tuple(tokens), "POST", "/v1/plans", body)
    import httpx  # read: one plan made up front, then GET it over and over

    resp = httpx.post(
        url + "/v1/plans",
        content=body,
        headers={"Authorization": f"Bearer {tokens[0]}", "Content-Type": "application/json"},
        timeout=60,
    )
    resp.raise_for_status()
    return Target(url, (tokens[0],), "GET", f"/v1/plans/{resp.json()['plan_id']}")


def warm_up(target: Target, args: argparse.Namespace) -> None:
    if args.warmup > 0:
        _run(target, min(20.0, args.rates[0]), args.warmup, args)


def run_config(label: str, target: Target, args: argparse.Namespace, server: Server | None) -> list[Step]:
    warm_up(target, args)
    steps = []
    for rate in args.rates:
        step = measure(target, label, rate, args, server)
        steps.append(step)
        print(row(step), flush=True)
        time.sleep(args.pause)
    if args.overload:
        knee = max((s for s in steps if s.meets(args.slo_ms)), key=lambda s: s.offered_rate, default=None)
        if knee is None:
            print(f"{label}: no step met the SLO (p99 <= {args.slo_ms:g} ms); no overload step", flush=True)
        else:
            over = measure(target, label, knee.offered_rate * args.overload, args, server)
            over.note = (
                f"{args.overload:g}x knee {knee.offered_rate:g}/s: completed "
                f"{over.completed_per_s / knee.completed_per_s:.2f}x of the knee"
            )
            steps.append(over)
            print(row(over), flush=True)
    return steps


# --- the table --------------------------------------------------------------------------------

HEADER = (
    f"{'config':<21} {'offered/s':>9} {'done/s':>7} {'p50':>7} {'p90':>7} {'p99':>7} {'max':>7} "
    f"{'503':>6} {'503p99':>7} {'t/o':>5} {'err':>4} {'stored':>6} {'cpu/plan':>8} {'gen':>5}  statuses"
)


def _ms(v: float | None) -> str:
    return "-" if v is None else (f"{v:.0f}" if v >= 100 else f"{v:.1f}")


def row(s: Step) -> str:
    stored = "-" if s.stored is None else str(s.stored)
    cpu = "-" if s.cpu_ms_per_plan is None else f"{s.cpu_ms_per_plan:.1f}ms"
    errs = s.errors - s.statuses.get("timeout", 0)
    hist = " ".join(f"{k}:{v}" for k, v in sorted(s.statuses.items()))
    text = (
        f"{s.label:<21} {s.offered_rate:>9g} {s.completed_per_s:>7.1f} {_ms(s.pct(0.5)):>7} "
        f"{_ms(s.pct(0.9)):>7} {_ms(s.pct(0.99)):>7} {_ms(s.pct(1.0)):>7} "
        f"{s.statuses.get('503', 0):>6} {_ms(s.pct(0.99, s.shed_latencies_ms)):>7} "
        f"{s.statuses.get('timeout', 0):>5} {errs:>4} {stored:>6} {cpu:>8} {s.generator_cpu:>5.0%}  {hist}"
    )
    return text + (f"\n{'':<21} ^ {s.note}" if s.note else "")


def summary(steps: list[Step], args: argparse.Namespace) -> None:
    print("\n" + HEADER)
    for s in steps:
        print(row(s))
    labels = list(dict.fromkeys(s.label for s in steps))
    print(
        f"\nknee per config (highest step with p99 <= {args.slo_ms:g} ms, "
        ">= 95% completed, no errors or 503s):"
    )
    for label in labels:
        own = [s for s in steps if s.label == label and not s.note]
        knee = max((s for s in own if s.meets(args.slo_ms)), key=lambda s: s.offered_rate, default=None)
        best = max(own, key=lambda s: s.completed_per_s)
        print(
            f"  {label:<21} knee {'-' if knee is None else f'{knee.offered_rate:g}/s'}; "
            f"best {best.completed_per_s:.1f}/s at {best.offered_rate:g}/s offered"
        )


def threading_is_main() -> bool:
    import threading

    return threading.current_thread() is threading.main_thread()


def _loadavg() -> str:
    try:
        return " ".join(Path("/proc/loadavg").read_text().split()[:3])
    except OSError:
        return "?"


# --- command line -----------------------------------------------------------------------------


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--rates", default="50,100,200", help="offered requests/s per step, comma-separated")
    p.add_argument("--duration", type=float, default=10.0, help="seconds per step (default 10)")
    p.add_argument("--timeout", type=float, default=10.0, help="client gives up this long after due")
    p.add_argument("--workers", default="1,2", help="server workers to compare, comma-separated")
    p.add_argument("--db", default="sqlite", help="sqlite,postgresql (servers this script starts)")
    p.add_argument(
        "--pg-url",
        default=os.environ.get("CAREPATH_BENCH_PG_URL") or os.environ.get("CAREPATH_TEST_PG_URL"),
        help="PostgreSQL admin URL for --db postgresql (a throwaway database is made per server)",
    )
    p.add_argument("--url", help="load an already running server instead of starting one")
    p.add_argument("--token", action="append", default=[], help="bearer token(s) for --url")
    p.add_argument("--users", type=int, default=4, help="users (tokens) to spread requests over")
    p.add_argument("--endpoint", choices=("create", "read"), default="create",
                   help="create: POST /v1/plans; read: GET one stored plan")  # fmt: skip
    p.add_argument("--body", help="intake JSON to POST (default examples/intake-fentanyl.json)")
    p.add_argument("--overload", type=float, default=0.0, help="then offer this multiple of the knee")
    p.add_argument("--slo-ms", type=float, default=100.0, help="p99 bound that defines the knee")
    p.add_argument("--warmup", type=float, default=3.0, help="seconds of warm-up per server")
    p.add_argument("--pause", type=float, default=1.0, help="seconds between steps")
    p.add_argument("--max-connections", type=int, default=1000, help="client connection pool size")
    p.add_argument("--server-env", action="append", default=[], help="KEY=VALUE for started servers")
    p.add_argument(
        "--server-python",
        action="append",
        default=[],
        metavar="LABEL=PYTHON",
        help="compare installations side by side: the server runs under each PYTHON "
        "(e.g. before=/venvs/old/bin/python); default: this interpreter",
    )
    p.add_argument("--json", help="also write every step as JSON to this file")
    args = p.parse_args(argv)
    args.rates = [float(r) for r in args.rates.split(",") if r]
    args.workers = [int(w) for w in args.workers.split(",") if w]
    args.db = [d.strip() for d in args.db.split(",") if d.strip()]
    bad = set(args.db) - {"sqlite", "postgresql"}
    if bad:
        p.error(f"--db: unknown {', '.join(sorted(bad))}")
    if "postgresql" in args.db and not args.url and not args.pg_url:
        p.error("--db postgresql needs --pg-url (or CAREPATH_BENCH_PG_URL)")
    if args.url and not args.token:
        p.error("--url needs --token")
    return args


def main(argv: Sequence[str] | None = None) -> list[Step]:
    args = parse_args(argv)
    if threading_is_main():  # SIGTERM unwinds like Ctrl-C: servers stopped, databases dropped
        signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    print(
        f"# carepath load: {platform.python_version()}, {os.cpu_count()} cores, loadavg {_loadavg()}, "
        f"{args.endpoint}, {args.duration:g}s/step, timeout {args.timeout:g}s",
        flush=True,
    )
    print(HEADER, flush=True)
    steps: list[Step] = []
    if args.url:
        steps += run_config("url", read_target(args.url, args.token, args), args, None)
    else:
        env = dict(kv.split("=", 1) for kv in args.server_env)
        pythons = [tuple(kv.split("=", 1)) for kv in args.server_python] or [("", "")]
        for db in args.db:
            for workers in args.workers:
                for name, python in pythons:
                    with contextlib.ExitStack() as stack:
                        url = stack.enter_context(pg_database(args.pg_url)) if db == "postgresql" else None
                        server = stack.enter_context(Server(workers, url, env, args.users, python))
                        target = read_target(server.url, server.tokens, args)
                        label = f"{name + ' ' if name else ''}{db[:6]} w{workers}"
                        steps += run_config(label, target, args, server)
    summary(steps, args)
    print(f"# loadavg at the end {_loadavg()} (other processes share this machine)")
    if args.json:
        Path(args.json).write_text(json.dumps([s.as_dict() for s in steps], indent=1))
    return steps


if __name__ == "__main__":
    main()
