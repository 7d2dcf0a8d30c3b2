"""``carepath batch``: NDJSON intakes in, NDJSON results out, in input order, on all cores.

Every non-blank input line gives exactly one output line, in the order of the input::

    {"line": 7, "plan": {...}}                                   a draft care plan
    {"line": 8, "errors": [{"field": "...", "message": "..."}]}  invalid intake (as exit 2 / 422)
    {"line": 9, "failed": "refused: ..."}                        the engine refused: no plan

``line`` is the 1-based line number in the input file. Blank lines are not intakes and get no
output line. Invalid lines never stop the batch; the command exits 1 when any line failed.

Worker processes are started with "spawn" and each builds its own Engine once (durable_rules
keeps per-process state; a forked copy of a parent's engine is not safe). Every worker checks
that it loaded the very rule pack the parent validated (sha256), so a pack edited mid-run
cannot mix two rule versions in one output. stderr carries a progress bar with counts only:
never a value from an intake.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor
from datetime import datetime
from multiprocessing import get_context
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from carepath.engine import CarepathError, Engine, IntakeError, load_rulepack, parse_intake_json
from carepath.engine.errors import FieldProblem
from carepath.engine.governance import require_clean
from carepath.engine.rulepack import default_rules_dir

__all__ = ["run_batch"]

Outcome = tuple[str, str]  # ("ok" | "invalid" | "failed", one NDJSON line without newline)

# Per-process state, set once by _start_worker (in each worker, or in-process for workers=1).
_engine: Engine | None = None
_generated_at: datetime | None = None
_setup_error: str | None = None


def run_batch(
    input_path: Path | str,
    output_path: Path | str,
    workers: int,
    generated_at: datetime,
    rules_dir: Path | str | None = None,
) -> dict[str, int]:
    """Evaluate every intake of an NDJSON file; write one result line per intake, in order.

    Raises RulePackError before any work when the pack is broken, FileNotFoundError when the
    input is missing. Returns the counts ``{"ok", "invalid", "failed"}``.
    """
    source, target = Path(input_path), Path(output_path)
    rules = Path(rules_dir) if rules_dir else default_rules_dir()
    pack = load_rulepack(rules)  # fail fast, in the parent, on a broken pack
    require_clean(pack)
    sha256 = pack.sha256
    total = sum(1 for _ in _lines(source))
    workers = max(1, min(workers, total))
    setup = (str(rules), sha256, generated_at)
    counts = {"ok": 0, "invalid": 0, "failed": 0}
    partial = target.with_name(target.name + ".part")
    try:
        with partial.open("w", encoding="utf-8") as out, _progress() as progress:
            task = progress.add_task("Evaluating intakes", total=total)
            for status, line in _outcomes(source, workers, setup, total):
                out.write(line + "\n")
                counts[status] += 1
                progress.advance(task)
        partial.replace(target)
    except BaseException:
        partial.unlink(missing_ok=True)
        raise
    return counts


def _lines(source: Path) -> Iterator[tuple[int, bytes]]:
    with source.open("rb") as f:
        for number, raw in enumerate(f, start=1):
            if raw.strip():
                yield number, raw.rstrip(b"\r\n")


def _outcomes(source: Path, workers: int, setup: tuple[str, str, datetime], total: int) -> Iterator[Outcome]:
    if workers == 1:
        _start_worker(*setup)
        yield from map(_evaluate_line, _lines(source))
        return
    chunk = max(1, min(64, total // (workers * 8)))
    with ProcessPoolExecutor(
        max_workers=workers, mp_context=get_context("spawn"), initializer=_start_worker, initargs=setup
    ) as pool:
        yield from pool.map(_evaluate_line, _lines(source), chunksize=chunk)


def _progress() -> Progress:
    return Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeRemainingColumn(),
        console=Console(stderr=True),
    )


# --- in each worker ---------------------------------------------------------------------------


def _start_worker(rules_dir: str, sha256: str, generated_at: datetime) -> None:
    """Build this process's Engine once. Never raises: a setup failure fails each line."""
    global _engine, _generated_at, _setup_error
    _engine, _generated_at, _setup_error = None, generated_at, None
    try:
        pack = load_rulepack(rules_dir)
        if pack.sha256 != sha256:
            _setup_error = "refused: the rule pack changed while the batch was running"
            return
        _engine = Engine(pack)
    except CarepathError as exc:
        _setup_error = f"refused: {exc}"
    except Exception as exc:  # noqa: BLE001 - reported per line, by class only
        _setup_error = f"internal error ({type(exc).__name__}); no plan was produced"


def _evaluate_line(item: tuple[int, bytes]) -> Outcome:
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
