"""``carepath batch``: NDJSON in, one result line per intake in input order, on worker processes.

The command runs for real (subprocess, spawned workers); its plans must equal the in-process
Engine's, its invalid lines must carry the same field problems as ``parse_intake_json``, and
stderr must hold no value from any intake.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from carepath.api.batch import run_batch
from carepath.engine import Engine, EngineError, IntakeError, load_rulepack, parse_intake_json
from tests.conftest import FIXED_TIME, ROOT
from tests.factories import random_intake
from tests.rulepacks import BASE_RULES, make_pack

NAME = "Quentin Canarywood"
STAMP = "2026-01-01T12:00:00+00:00"
CANARIES = (NAME, "Canarywood", "CANARY", "Traceback")


def cli() -> list[str]:
    script = shutil.which("carepath")
    return [script] if script else [sys.executable, "-c", "from carepath.api.cli import main; main()"]


def carepath(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "NO_COLOR": "1"}
    return subprocess.run([*cli(), *args], capture_output=True, text=True, cwd=cwd, env=env, timeout=300)


def _valid(n: int, seed: int = 21) -> list[bytes]:
    rng = random.Random(seed)
    lines = []
    for _ in range(n):
        intake = random_intake(rng)
        intake["patient"]["name"] = NAME
        lines.append(json.dumps(intake).encode())
    return lines


INVALID = [
    json.dumps({"assessment_date": "2026-01-15", "patient": {"age": "CANARY-AGE", "name": NAME}}).encode(),
    b"not json at all CANARY",
    json.dumps({"assessment_date": "2026-01-15", "patient": {"age": 40, "Canarywood": 1}}).encode(),
    b'{"assessment_date": "2026-01-15", "patient": {"age": 40, "name": "Qu\xffentin"}}',
    b"[1, 2, 3]",
]


@pytest.fixture(scope="module")
def mixed(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[tuple[int, bytes]]]:
    """60 valid intakes with the invalid ones and blank lines mixed in; (number, raw) pairs."""
    body = _valid(60)
    for at, bad in zip((3, 17, 30, 41, 59), INVALID, strict=True):
        body.insert(at, bad)
    body.insert(10, b"")
    body.insert(25, b"   \t")
    path = tmp_path_factory.mktemp("batch") / "in.ndjson"
    path.write_bytes(b"\n".join(body) + b"\r\n")
    numbered = [(n, raw.rstrip(b"\r")) for n, raw in enumerate(body, start=1) if raw.strip()]
    return path, numbered


def _expected(engine: Engine, raw: bytes) -> dict[str, Any]:
    try:
        intake = parse_intake_json(raw.decode("utf-8"))
    except UnicodeDecodeError:
        return {"errors": [{"field": "(intake)", "message": "is not UTF-8 text: expected a JSON object"}]}
    except IntakeError as exc:
        return {"errors": [{"field": p.field, "message": p.message} for p in exc.problems]}
    try:
        return {"plan": json.loads(engine.evaluate(intake, FIXED_TIME).model_dump_json())}
    except EngineError as exc:
        return {"failed": f"refused: {exc}"}


def test_batch_command_gives_one_line_per_intake_in_order(
    mixed: tuple[Path, list[tuple[int, bytes]]], tmp_path: Path
) -> None:
    source, numbered = mixed
    rules = tmp_path / "rules"  # a frozen copy: the CLI and the oracle read the same pack
    shutil.copytree(ROOT / "rules", rules)
    engine = Engine(load_rulepack(rules))
    out = tmp_path / "out.ndjson"
    args = ["--workers", "2", "--generated-at", STAMP, "--rules-dir", str(rules)]
    run = carepath("batch", str(source), "-o", str(out), *args, cwd=tmp_path)
    results = [json.loads(line) for line in out.read_text(encoding="utf-8").splitlines()]
    expected = [{"line": n, **_expected(engine, raw)} for n, raw in numbered]
    assert [r["line"] for r in results] == [n for n, _ in numbered]
    assert results == expected
    counts = {k: sum(1 for e in expected if k in e) for k in ("plan", "errors", "failed")}
    assert counts["errors"] == len(INVALID)
    assert run.returncode == (1 if counts["failed"] else 0), run.stderr
    assert f"{counts['plan']} plans, {counts['errors']} invalid, {counts['failed']} failed" in run.stderr
    assert run.stdout == ""
    for canary in CANARIES:
        assert canary not in run.stderr, f"{canary!r} leaked into stderr"
    assert not (tmp_path / "out.ndjson.part").exists()


def test_one_worker_and_several_give_identical_output(
    mixed: tuple[Path, list[tuple[int, bytes]]], tmp_path: Path
) -> None:
    source, _ = mixed
    rules = tmp_path / "rules"
    shutil.copytree(ROOT / "rules", rules)
    one, three = tmp_path / "one.ndjson", tmp_path / "three.ndjson"
    first = run_batch(source, one, 1, FIXED_TIME, rules)
    second = run_batch(source, three, 3, FIXED_TIME, rules)
    assert first == second
    assert first["invalid"] == len(INVALID)
    assert one.read_bytes() == three.read_bytes()


def test_an_empty_input_gives_an_empty_output(tmp_path: Path) -> None:
    source, out = tmp_path / "in.ndjson", tmp_path / "out.ndjson"
    source.write_bytes(b"\n\n")
    run = carepath("batch", str(source), "-o", str(out), cwd=tmp_path)
    assert run.returncode == 0, run.stderr
    assert out.read_bytes() == b""
    assert "0 plans, 0 invalid, 0 failed" in run.stderr


def test_lines_the_engine_refuses_are_failed_and_exit_1(tmp_path: Path) -> None:
    """A pack that loads but offers no naloxone: every plan is refused, none is written."""
    rules = make_pack(tmp_path, {})
    (rules / "pack" / "00-base.yaml").write_text(yaml.safe_dump({"rules": BASE_RULES[1:]}), encoding="utf-8")
    source, out = tmp_path / "in.ndjson", tmp_path / "out.ndjson"
    source.write_bytes(b"\n".join(_valid(5) + [INVALID[0]]) + b"\n")
    run = carepath(
        "batch", str(source), "-o", str(out), "--workers", "2", "--rules-dir", str(rules), cwd=tmp_path
    )
    assert run.returncode == 1
    results = [json.loads(line) for line in out.read_text(encoding="utf-8").splitlines()]
    assert [sorted(r) for r in results] == [["failed", "line"]] * 5 + [["errors", "line"]]
    assert all("naloxone" in r["failed"] for r in results[:5])
    assert "0 plans, 1 invalid, 5 failed" in run.stderr
    assert not any(canary in run.stderr for canary in CANARIES)


def test_a_broken_pack_stops_the_batch_before_any_output(tmp_path: Path) -> None:
    rules = make_pack(tmp_path, {"50-defect.yaml": "rules:\n  - id: [unclosed\n"})
    source, out = tmp_path / "in.ndjson", tmp_path / "out.ndjson"
    source.write_bytes(b"\n".join(_valid(3)) + b"\n")
    run = carepath("batch", str(source), "-o", str(out), "--rules-dir", str(rules), cwd=tmp_path)
    assert run.returncode == 1
    assert run.stderr.startswith("carepath: rule pack refused: 50-defect.yaml is not valid YAML")
    assert not out.exists() and not (tmp_path / "out.ndjson.part").exists()
    assert "Traceback" not in run.stderr


def test_a_missing_input_is_invalid_input(tmp_path: Path) -> None:
    run = carepath(
        "batch", str(tmp_path / "nowhere.ndjson"), "-o", str(tmp_path / "out.ndjson"), cwd=tmp_path
    )
    assert run.returncode == 2
    assert "input file not found" in run.stderr and "Traceback" not in run.stderr


def test_workers_refuse_a_pack_that_changed_after_the_parent_checked_it(tmp_path: Path) -> None:
    from carepath.api import batch

    batch._start_worker(str(make_pack(tmp_path, {})), "0" * 64, FIXED_TIME)
    status, line = batch._evaluate_line((1, _valid(1)[0]))
    assert status == "failed"
    assert json.loads(line) == {
        "line": 1,
        "failed": "refused: the rule pack changed while the batch was running",
    }
