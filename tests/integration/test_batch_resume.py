"""``carepath batch`` survives interruption: streaming input (a bounded number of chunks in
flight), SIGINT / SIGTERM / SIGKILL of the real command stop its workers and keep the partial
output, ``--resume`` finishes it byte-identical to an uninterrupted run; the Dask executor
(LocalCluster) gives the same bytes as the process pool and resumes the same way.

These runs use the reference interpreter (``--engine reference``): what is tested is the
batch machinery, and its outputs must be byte-comparable across runs (the durable runner's
own concurrency is tested with the engine)."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from carepath.api.batch import ResumeRefused, ordered, run_batch
from tests.conftest import FIXED_TIME, ROOT
from tests.integration.test_batch import CANARIES, INVALID, STAMP, _valid, cli

N = 400


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, bytes]:
    """An input of N intakes (some invalid), a frozen rule pack, and the uninterrupted output."""
    tmp = tmp_path_factory.mktemp("resume")
    body = _valid(N, seed=5)
    for at, bad in zip(range(7, N, 97), INVALID, strict=False):
        body[at] = bad
    source = tmp / "in.ndjson"
    source.write_bytes(b"\n".join(body) + b"\n")
    rules = tmp / "rules"
    shutil.copytree(ROOT / "rules", rules)
    whole = tmp / "whole.ndjson"
    run_batch(source, whole, 2, FIXED_TIME, rules, progress=False, runner="reference")
    return source, rules, whole.read_bytes()


def _children(pid: int) -> set[int]:
    out = set()
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            if int(stat[stat.rindex(")") + 2 :].split()[1]) == pid:
                out.add(int(entry.name))
    return out


def _alive(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat[stat.rindex(")") + 2] != "Z"


def _start(source: Path, out: Path, rules: Path, *extra: str) -> subprocess.Popen[str]:
    args = [*cli(), "batch", str(source), "-o", str(out), "--workers", "2", "--generated-at", STAMP]
    args += ["--engine", "reference"]
    return subprocess.Popen(
        [*args, "--rules-dir", str(rules), *extra],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "NO_COLOR": "1"},
        start_new_session=True,  # its own process group, like a job in a terminal
    )


def _wait_for_progress(proc: subprocess.Popen[str], partial: Path) -> set[int]:
    """Until some output is written (and the workers are up); returns the worker pids."""
    deadline = time.monotonic() + 240
    workers: set[int] = set()
    while time.monotonic() < deadline and proc.poll() is None:
        workers |= _children(proc.pid)
        if partial.exists() and partial.stat().st_size > 0 and len(workers) >= 2:
            return workers
        time.sleep(0.02)
    pytest.fail("the batch never wrote partial output")


@pytest.mark.parametrize(
    ("how", "code"),
    [("SIGINT to the process group (Ctrl-C)", 130), ("SIGTERM to the parent", 143)],
)
def test_a_signal_stops_the_workers_keeps_the_partial_output_and_resume_finishes_it(
    corpus: tuple[Path, Path, bytes], tmp_path: Path, how: str, code: int
) -> None:
    source, rules, whole = corpus
    out = tmp_path / "out.ndjson"
    partial = tmp_path / "out.ndjson.part"
    proc = _start(source, out, rules)
    workers = _wait_for_progress(proc, partial)
    if how.startswith("SIGINT"):
        os.killpg(proc.pid, signal.SIGINT)
    else:
        proc.send_signal(signal.SIGTERM)
    _, stderr = proc.communicate(timeout=120)
    assert proc.returncode == code, stderr
    assert "interrupted after" in stderr and "--resume" in stderr
    assert "Traceback" not in stderr and not any(c in stderr for c in CANARIES)
    deadline = time.monotonic() + 30
    while any(_alive(w) for w in workers) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not any(_alive(w) for w in workers), "workers outlived the parent"
    assert not out.exists()
    kept = partial.read_bytes()
    assert kept and whole.startswith(kept) and kept.endswith(b"\n")
    assert len(kept) < len(whole)

    resumed = _start(source, out, rules, "--resume")
    _, stderr = resumed.communicate(timeout=600)
    assert resumed.returncode == 0, stderr
    assert out.read_bytes() == whole
    assert not partial.exists() and not (tmp_path / "out.ndjson.part.json").exists()


def test_a_parent_killed_outright_takes_its_workers_with_it_and_a_torn_line_is_redone(
    corpus: tuple[Path, Path, bytes], tmp_path: Path
) -> None:
    source, rules, whole = corpus
    out, partial = tmp_path / "out.ndjson", tmp_path / "out.ndjson.part"
    proc = _start(source, out, rules)
    workers = _wait_for_progress(proc, partial)
    proc.kill()  # SIGKILL: no handler runs; the kernel stops the workers (PR_SET_PDEATHSIG)
    proc.communicate(timeout=60)
    deadline = time.monotonic() + 30
    while any(_alive(w) for w in workers) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not any(_alive(w) for w in workers), "workers outlived a killed parent"
    with partial.open("ab") as f:
        f.write(b'{"line":999999,"plan":{"half a li')  # as if cut off mid-write
    resumed = _start(source, out, rules, "--resume")
    _, stderr = resumed.communicate(timeout=600)
    assert resumed.returncode == 0, stderr
    assert out.read_bytes() == whole


def test_resume_refuses_a_changed_input_or_time_stamp(
    corpus: tuple[Path, Path, bytes], tmp_path: Path
) -> None:
    source, rules, whole = corpus
    out = tmp_path / "out.ndjson"
    _fake_interrupted_run(source, out, whole, keep_lines=10)
    later = FIXED_TIME.replace(year=FIXED_TIME.year + 1)
    with pytest.raises(ResumeRefused, match="generated-at"):
        run_batch(source, out, 1, later, rules, resume=True, progress=False, runner="reference")
    changed = tmp_path / "changed.ndjson"
    changed.write_bytes(source.read_bytes() + b"{}\n")
    _fake_interrupted_run(changed, tmp_path / "c.ndjson", whole, keep_lines=10, input_sha_of=source)
    with pytest.raises(ResumeRefused, match="input"):
        run_batch(
            changed, tmp_path / "c.ndjson", 1, None, rules, resume=True, progress=False, runner="reference"
        )


def _fake_interrupted_run(
    source: Path, out: Path, whole: bytes, keep_lines: int, input_sha_of: Path | None = None
) -> None:
    """The .part and sidecar an interrupted run leaves: the first lines of the full output."""
    import hashlib

    from carepath.engine import load_rulepack

    lines = whole.splitlines(keepends=True)
    out.with_name(out.name + ".part").write_bytes(b"".join(lines[:keep_lines]))
    rules_sha = load_rulepack(ROOT / "rules").sha256
    state = {
        "input_sha256": hashlib.sha256((input_sha_of or source).read_bytes()).hexdigest(),
        "rules_sha256": rules_sha,
        "generated_at": FIXED_TIME.isoformat(),
        "runner": "reference",
    }
    out.with_name(out.name + ".part.json").write_text(json.dumps(state))


def test_the_parent_reads_ahead_only_a_bounded_window_of_chunks() -> None:
    consumed = []

    def chunks() -> Iterator[list[tuple[int, bytes]]]:
        for n in range(1000):
            consumed.append(n)
            yield [(n, b"{}")]

    class Done:
        def __init__(self, chunk: list[tuple[int, bytes]]) -> None:
            self.chunk = chunk

        def result(self) -> tuple[str, str]:
            return "o", f"{self.chunk[0][0]}\n"

    results = ordered(Done, chunks(), window=8)
    first = next(results)
    assert first == ("o", "0\n") and len(consumed) == 8
    rest = list(results)
    assert [int(text) for _, text in [first, *rest]] == list(range(1000))


def test_dask_local_cluster_gives_the_process_pool_bytes_and_resumes(
    corpus: tuple[Path, Path, bytes], tmp_path: Path
) -> None:
    pytest.importorskip("distributed")
    source, rules, whole = corpus
    out = tmp_path / "dask.ndjson"
    counts = run_batch(source, out, 2, FIXED_TIME, rules, cluster="local", progress=False, runner="reference")
    assert out.read_bytes() == whole
    assert counts == {"ok": N - len(INVALID), "invalid": len(INVALID), "failed": 0}
    resumed = tmp_path / "resumed.ndjson"
    _fake_interrupted_run(source, resumed, whole, keep_lines=123)
    again = run_batch(
        source, resumed, 2, None, rules, resume=True, cluster="local", progress=False, runner="reference"
    )
    assert resumed.read_bytes() == whole and again == counts
