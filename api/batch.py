"""``carepath batch``: NDJSON intakes in, NDJSON results out, in input order, on all cores -
or on a Dask cluster - streaming, interruptible and resumable.

Every non-blank input line gives exactly one output line, in the order of the input::

    {"line": 7, "plan": {...}}                                   a draft care plan
    {"line": 8, "errors": [{"field": "...", "message": "..."}]}  invalid intake (as exit 2 / 422)
    {"line": 9, "failed": "refused: ..."}                        the engine refused: no plan

``line`` is the 1-based line number in the input file. Blank lines are not intakes and get no
output line. Invalid lines never stop the batch; the command exits 1 when any line failed.

Streaming: the parent reads the input twice, a line at a time (once to count the lines and
fingerprint the file, once to hand out chunks of ``CHUNK`` lines) and keeps at most
``WINDOW_PER_WORKER`` chunks per worker in flight, so its memory does not grow with the input.

Interruption and resume: results go to ``OUTPUT.part`` as they arrive (in order) with
``OUTPUT.part.json`` beside it (the input's sha256, the rule pack's sha256, the plans' time
stamp). SIGINT or SIGTERM stops the workers with the parent and keeps both files; the same
command with ``--resume`` checks that input, rule pack and time stamp are unchanged, drops a
half-written last line, and carries on after the last line written. On success ``.part``
becomes OUTPUT and the sidecar is removed.

Executors: a pool of worker processes (default), or a Dask distributed cluster
(``cluster="local"`` starts a LocalCluster on this machine; ``"tcp://host:8786"`` uses a
running scheduler). Both run the same per-chunk function, so their output is byte-identical.
Dask workers get the rule pack's files (not a path), so they need not share a disk.

Worker processes build their Engine once (durable_rules keeps per-process state; a forked
copy of a parent's engine is not safe) and check that they loaded the very rule pack the
parent validated (sha256). stderr carries a progress bar with counts only: never a value
from an intake.
"""

from __future__ import annotations

import hashlib
import json
import re
import signal
import tempfile
import threading
from collections import deque
from collections.abc import Callable, Generator, Iterable, Iterator
from concurrent.futures import ProcessPoolExecutor
from contextlib import closing, contextmanager, suppress
from dataclasses import dataclass
from datetime import UTC, datetime
from multiprocessing import get_context
from pathlib import Path
from typing import Any, Protocol

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from carepath.engine import CarepathError, Engine, IntakeError, load_rulepack, parse_intake_json
from carepath.engine.errors import FieldProblem
from carepath.engine.governance import require_clean
from carepath.engine.rulepack import default_rules_dir

__all__ = [
    "run_batch",
    "task_runner",
    "TaskRunner",
    "ordered",
    "BatchInterrupted",
    "ResumeRefused",
    "CHUNK",
    "WINDOW_PER_WORKER",
]

CHUNK = 32  # input lines per task
WINDOW_PER_WORKER = 4  # tasks in flight per worker: enough to keep it busy, bounded memory
STATUS = {"o": "ok", "i": "invalid", "f": "failed"}
_KIND = re.compile(rb'^\{"line":(\d+),"(plan|errors|failed)"')

Chunk = list[tuple[int, bytes]]
ChunkResult = tuple[str, str]  # (one status letter per line, the NDJSON lines of the chunk)


class BatchInterrupted(Exception):
    """SIGINT or SIGTERM: the workers are stopped, the partial output kept."""

    def __init__(self, signum: int, done: int, total: int, partial: Path) -> None:
        super().__init__(f"interrupted by signal {signum}")
        self.signum, self.done, self.total, self.partial = signum, done, total, partial


class ResumeRefused(Exception):
    """--resume, but the partial output does not belong to this input / pack / time stamp."""


@dataclass(frozen=True)
class Setup:
    rules_dir: str
    sha256: str
    generated_at: datetime
    runner: str = "durable"  # or "reference" (the plain-Python interpreter, as `evaluate --engine`)


class TaskFuture(Protocol):
    def result(self) -> ChunkResult: ...


def run_batch(
    input_path: Path | str,
    output_path: Path | str,
    workers: int,
    generated_at: datetime | None,
    rules_dir: Path | str | None = None,
    *,
    resume: bool = False,
    cluster: str | None = None,
    progress: bool = True,
    runner: str = "durable",
) -> dict[str, int]:
    """Evaluate every intake of an NDJSON file; write one result line per intake, in order.

    ``generated_at`` None: the time stamp of the run being resumed, else now. Raises
    RulePackError before any work when the pack is broken, FileNotFoundError when the input
    is missing, ResumeRefused, and BatchInterrupted (partial output kept) on SIGINT/SIGTERM.
    Returns the counts ``{"ok", "invalid", "failed"}`` of the whole output.
    """
    source, target = Path(input_path), Path(output_path)
    rules = Path(rules_dir) if rules_dir else default_rules_dir()
    pack = load_rulepack(rules)  # fail fast, in the parent, on a broken pack
    require_clean(pack)  # or one that lints with errors (engine/lint.py)
    sha256 = pack.sha256
    total, input_sha = _survey(source)
    partial, sidecar = target.with_name(target.name + ".part"), target.with_name(target.name + ".part.json")
    counts = {"ok": 0, "invalid": 0, "failed": 0}
    after = 0
    if resume and partial.exists() and sidecar.exists():
        state = json.loads(sidecar.read_text())
        stamp = generated_at or datetime.fromisoformat(state["generated_at"])
        _check_resumable(state, input_sha, sha256, stamp, runner)
        after, counts = _recover(partial)
    else:
        stamp = generated_at or datetime.now(UTC).replace(microsecond=0)
        partial.write_bytes(b"")
    sidecar.write_text(
        json.dumps(
            {
                "input_sha256": input_sha,
                "rules_sha256": sha256,
                "generated_at": stamp.isoformat(),
                "runner": runner,
            }
        )
    )
    setup = Setup(str(rules), sha256, stamp, runner)
    done = sum(counts.values())
    workers = max(1, min(workers, total - done or 1))
    with _signals_raise() as caught, partial.open("ab") as out, _progress(progress) as bar:
        task = bar.add_task("Evaluating intakes", total=total, completed=done)
        try:
            # closing(): however the loop ends, the executor (and its workers) stop right here
            with closing(_results(source, after, workers, setup, cluster)) as results:
                for statuses, text in results:
                    out.write(text.encode("utf-8"))
                    for s in statuses:
                        counts[STATUS[s]] += 1
                    done += len(statuses)
                    bar.update(task, completed=done)
        except _Signalled:
            out.flush()
            raise BatchInterrupted(caught[0], done, total, partial) from None
    partial.replace(target)
    sidecar.unlink(missing_ok=True)
    return counts


# --- input and partial output -------------------------------------------------------------------


def _lines(source: Path, after: int = 0) -> Iterator[tuple[int, bytes]]:
    with source.open("rb") as f:
        for number, raw in enumerate(f, start=1):
            if number > after and raw.strip():
                yield number, raw.rstrip(b"\r\n")


def _survey(source: Path) -> tuple[int, str]:
    """Intakes in the file and its sha256, in one streaming pass."""
    h, total = hashlib.sha256(), 0
    with source.open("rb") as f:
        for raw in f:
            h.update(raw)
            total += bool(raw.strip())
    return total, h.hexdigest()


def _chunks(lines: Iterable[tuple[int, bytes]], size: int = CHUNK) -> Iterator[Chunk]:
    chunk: Chunk = []
    for item in lines:
        chunk.append(item)
        if len(chunk) >= size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


def _check_resumable(
    state: dict[str, Any], input_sha: str, rules_sha: str, stamp: datetime, runner: str
) -> None:
    if state.get("input_sha256") != input_sha:
        raise ResumeRefused("the input file changed since the interrupted run")
    if state.get("rules_sha256") != rules_sha:
        raise ResumeRefused("the rule pack changed since the interrupted run")
    if datetime.fromisoformat(state["generated_at"]) != stamp:
        raise ResumeRefused("--generated-at differs from the interrupted run's")
    if state.get("runner", "durable") != runner:
        raise ResumeRefused("--engine differs from the interrupted run's")


def _recover(partial: Path) -> tuple[int, dict[str, int]]:
    """Drop a half-written last line; return the last input line done and the counts so far."""
    counts = {"ok": 0, "invalid": 0, "failed": 0}
    last, keep = 0, 0
    with partial.open("rb") as f:
        for raw in f:
            match = _KIND.match(raw)
            if not raw.endswith(b"\n") or match is None:
                break
            last, keep = int(match.group(1)), keep + len(raw)
            counts[{"plan": "ok", "errors": "invalid", "failed": "failed"}[match.group(2).decode()]] += 1
    with partial.open("r+b") as f:
        f.truncate(keep)
    return last, counts


# --- executors ------------------------------------------------------------------------------------


def _results(
    source: Path, after: int, workers: int, setup: Setup, cluster: str | None
) -> Generator[ChunkResult, None, None]:
    chunks = _chunks(_lines(source, after))
    if workers == 1 and not cluster:
        _start_worker(setup)
        yield from map(_evaluate_chunk, chunks)
        return
    with task_runner(workers, cluster, initializer=_start_worker, initargs=(setup,)) as run:
        if run.distributed:  # every worker (and any that restarts) gets the pack's files
            run.on_every_worker(_PackOnWorker(_pack_files(Path(setup.rules_dir)), setup))
        yield from ordered(lambda c: run.submit(_evaluate_chunk, c), chunks, run.window)


def ordered(
    submit: Callable[[Chunk], TaskFuture], chunks: Iterator[Chunk], window: int
) -> Iterator[ChunkResult]:
    """Results in submission order, with at most ``window`` tasks in flight (the input is read
    only as fast as results come back)."""
    pending: deque[TaskFuture] = deque()
    for chunk in chunks:
        pending.append(submit(chunk))
        if len(pending) >= window:
            yield pending.popleft().result()
    while pending:
        yield pending.popleft().result()


class TaskRunner(Protocol):
    """What ``task_runner`` yields: ``submit(fn, *args)`` returns a future (``.result()``);
    ``window`` is how many tasks to keep in flight; ``distributed`` is True on Dask, where
    ``initializer`` does not run: ``on_every_worker(plugin)`` installs a Dask WorkerPlugin
    instead (its ``setup(worker)`` runs on every worker, also on one that restarts)."""

    distributed: bool
    window: int

    def submit(self, fn: Callable[..., Any], *args: Any) -> Any: ...

    def on_every_worker(self, plugin: Any) -> None: ...


@contextmanager
def task_runner(
    workers: int,
    cluster: str | None = None,
    *,
    initializer: Callable[..., None] | None = None,
    initargs: tuple[Any, ...] = (),
) -> Iterator[TaskRunner]:
    """Worker processes for population runs (``carepath batch``; the hook for ``rules impact``):
    a spawn process pool whose workers stop with the parent, or a Dask cluster (``cluster``:
    "local" for a LocalCluster of ``workers`` single-threaded processes, or a scheduler address).
    Functions and arguments must be picklable and importable on the workers."""
    if cluster:
        with _dask(cluster, workers) as runner:
            yield runner
    else:
        with _process_pool(workers, initializer, initargs) as runner:
            yield runner


@dataclass
class _PoolRunner:
    pool: ProcessPoolExecutor
    window: int
    distributed: bool = False

    def submit(self, fn: Callable[..., Any], *args: Any) -> Any:
        return self.pool.submit(fn, *args)

    def on_every_worker(self, plugin: Any) -> None:
        raise TypeError("a process pool sets its workers up with the initializer")


@dataclass
class _DaskRunner:
    client: Any
    window: int
    distributed: bool = True

    def submit(self, fn: Callable[..., Any], *args: Any) -> Any:
        return self.client.submit(fn, *args, pure=False)

    def on_every_worker(self, plugin: Any) -> None:
        self.client.register_plugin(plugin)


@contextmanager
def _process_pool(
    workers: int, initializer: Callable[..., None] | None, initargs: tuple[Any, ...]
) -> Iterator[TaskRunner]:
    pool = ProcessPoolExecutor(
        max_workers=workers,
        mp_context=get_context("spawn"),
        initializer=_start_pool_worker,
        initargs=(initializer, initargs),
    )
    try:
        yield _PoolRunner(pool, WINDOW_PER_WORKER * workers)
    except BaseException:
        # interrupted or failed: the workers stop now, with the parent, not after the queue
        for process in list(getattr(pool, "_processes", {}).values()):
            with suppress(Exception):
                process.terminate()
        pool.shutdown(wait=True, cancel_futures=True)
        raise
    pool.shutdown(wait=True)


def _start_pool_worker(initializer: Callable[..., None] | None, initargs: tuple[Any, ...]) -> None:
    _stop_with_parent()
    if initializer is not None:
        initializer(*initargs)


@contextmanager
def _dask(address: str, workers: int) -> Iterator[TaskRunner]:
    import logging

    from distributed import Client, LocalCluster

    cluster = None
    if address == "local":
        cluster = LocalCluster(
            n_workers=workers,
            threads_per_worker=1,
            processes=True,
            dashboard_address=None,
            silence_logs=logging.ERROR,
        )
    client = Client(cluster or address)
    try:
        n = len(client.scheduler_info().get("workers", {})) or workers
        yield _DaskRunner(client, WINDOW_PER_WORKER * n)
    finally:
        client.close()
        if cluster is not None:
            cluster.close()


def _pack_files(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


class _Signalled(BaseException):
    """Raised in the main thread by the SIGINT/SIGTERM handler (BaseException: no
    ``except Exception`` on the way up swallows it)."""


@contextmanager
def _signals_raise() -> Iterator[list[int]]:
    """While the batch runs, SIGINT and SIGTERM raise _Signalled in the main thread; the
    signal's number goes into the yielded list. Outside the main thread: no change."""
    caught: list[int] = []
    if threading.current_thread() is not threading.main_thread():
        yield caught
        return

    def handler(signum: int, _frame: Any) -> None:
        if not caught:
            caught.append(signum)
            raise _Signalled()

    previous = {s: signal.signal(s, handler) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield caught
    finally:
        for s, h in previous.items():
            signal.signal(s, h)


@contextmanager
def _progress(show: bool) -> Iterator[Progress]:
    bar = Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeRemainingColumn(),
        console=Console(stderr=True),
        disable=not show,
        refresh_per_second=4,
    )
    with bar:
        yield bar


# --- in each worker -------------------------------------------------------------------------------

# Per-process state, set once by _start_worker (in each worker, or in-process for workers=1).
_engine: Engine | None = None
_generated_at: datetime | None = None
_setup_error: str | None = None


def _start_worker(setup: Setup) -> None:
    """Build this process's Engine once. Never raises: a setup failure fails each line."""
    global _engine, _generated_at, _setup_error
    _engine, _generated_at, _setup_error = None, setup.generated_at, None
    try:
        pack = load_rulepack(setup.rules_dir)
        if pack.sha256 != setup.sha256:
            _setup_error = "refused: the rule pack changed while the batch was running"
            return
        _engine = Engine(pack, "reference" if setup.runner == "reference" else "durable")
    except CarepathError as exc:
        _setup_error = f"refused: {exc}"
    except Exception as exc:  # noqa: BLE001 - reported per line, by class only
        _setup_error = f"internal error ({type(exc).__name__}); no plan was produced"


def _stop_with_parent() -> None:
    """A pool worker: Ctrl-C (sent to the whole process group) is the parent's to handle, and
    on Linux the kernel sends SIGTERM to the worker if the parent dies, even by SIGKILL."""
    if threading.current_thread() is not threading.main_thread() or get_context().parent_process() is None:
        return
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    with suppress(Exception):
        import ctypes

        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


def _evaluate_chunk(chunk: Chunk) -> ChunkResult:
    statuses, lines = [], []
    for item in chunk:
        status, line = _evaluate_line(item)
        statuses.append(status[0])
        lines.append(line + "\n")
    return "".join(statuses), "".join(lines)


try:  # Dask is optional (pip install 'carepath[dask]'); only --cluster needs it
    from distributed.diagnostics.plugin import WorkerPlugin as _WorkerPlugin
except ImportError:  # pragma: no cover
    _WorkerPlugin = object  # type: ignore[assignment,misc]


class _PackOnWorker(_WorkerPlugin):  # type: ignore[misc,valid-type]
    """A Dask WorkerPlugin: writes the shipped rule pack into a folder of the worker and
    builds the worker's Engine from it (workers need not share a disk with the parent)."""

    name = "carepath-rule-pack"

    def __init__(self, files: dict[str, bytes], setup: Setup) -> None:
        self.files, self.setup_ = files, setup

    def setup(self, worker: Any = None) -> None:
        root = Path(tempfile.mkdtemp(prefix="carepath-rules-"))
        for rel, data in self.files.items():
            (root / rel).parent.mkdir(parents=True, exist_ok=True)
            (root / rel).write_bytes(data)
        _start_worker(Setup(str(root), self.setup_.sha256, self.setup_.generated_at, self.setup_.runner))

    def teardown(self, worker: Any = None) -> None:
        pass


def _evaluate_line(item: tuple[int, bytes]) -> tuple[str, str]:
    number, raw = item
    try:
        intake = parse_intake_json(_utf8(raw))
    except IntakeError as exc:
        errors = [{"field": p.field, "message": p.message} for p in exc.problems]
        return "invalid", _dump({"line": number, "errors": errors})
    if _engine is None or _generated_at is None:
        return "failed", _dump({"line": number, "failed": _setup_error or "refused: no engine"})
    try:
        plan = _engine.evaluate(intake, _generated_at)
    except CarepathError as exc:
        return "failed", _dump({"line": number, "failed": f"refused: {exc}"})
    except Exception as exc:  # noqa: BLE001 - fail closed, by class only (no patient data)
        return "failed", _dump({"line": number, "failed": f"internal error ({type(exc).__name__})"})
    return "ok", f'{{"line":{number},"plan":{plan.model_dump_json()}}}'


def _utf8(raw: bytes) -> str:
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        raise IntakeError([FieldProblem("(intake)", "is not UTF-8 text: expected a JSON object")]) from None


def _dump(obj: Any) -> str:
    return json.dumps(obj, ensure_ascii=False, separators=(",", ":"))
