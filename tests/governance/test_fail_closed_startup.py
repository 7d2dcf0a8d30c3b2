"""Rule packs fail closed: the CLI, `carepath batch`, `carepath serve`, the app factory and the
runtime refuse a pack that does not lint clean, with ONE line on stderr, no traceback, exit 1;
a pack with no active rules never reaches durable_rules (it crashed in native code:
`free(): invalid size`, exit 139). Each command runs in a subprocess, as a user would run it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from carepath.api.app import create_app
from carepath.api.hardening import migrate, open_database
from carepath.api.settings import Settings
from carepath.engine import Engine, RulePackError, load_rulepack
from carepath.engine._durable import DurableRunner
from tests.conftest import ROOT
from tests.rulepacks import BASE_RULES, make_pack, rule

EXAMPLE = ROOT / "examples" / "intake-fentanyl.json"


def _empty(tmp_path: Path) -> Path:
    return make_pack(tmp_path, {"00-base.yaml": [dict(r, status="draft") for r in BASE_RULES]})


def _no_naloxone(tmp_path: Path) -> Path:
    return make_pack(tmp_path, {"00-base.yaml": BASE_RULES[1:]})


def _contradiction(tmp_path: Path) -> Path:
    cond = {"all": [{"fact": "stage", "is": "active_use"}, {"fact": "stage", "is": "remission"}]}
    return make_pack(tmp_path, {"50-x.yaml": [rule("OUD-TST-010", when=cond)]})


BROKEN = {"no-active-rules": _empty, "no-naloxone": _no_naloxone, "contradiction": _contradiction}
WHY = {"no-active-rules": "no active rules", "no-naloxone": "hr.naloxone", "contradiction": "can never hold"}


def _run(
    args: list[str], tmp_path: Path, rules: Path, timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    env = {
        **os.environ,
        "CAREPATH_RULES_DIR": str(rules),
        "CAREPATH_DATA_DIR": str(tmp_path / "data"),
        "PYTHONFAULTHANDLER": "",
    }
    return subprocess.run(args, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=timeout)


def _one_line_refusal(result: subprocess.CompletedProcess[str], why: str) -> None:
    assert result.returncode == 1, (result.returncode, result.stderr[-2000:])
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("carepath: rule pack refused: ") and why in lines[0], lines[0]
    assert "Traceback" not in result.stderr + result.stdout
    assert result.stdout == ""


@pytest.mark.parametrize("case", sorted(BROKEN))
def test_evaluate_refuses_in_one_line(tmp_path: Path, case: str):
    rules = BROKEN[case](tmp_path)
    result = _run([sys.executable, "-m", "carepath.api", "evaluate", str(EXAMPLE)], tmp_path, rules)
    _one_line_refusal(result, WHY[case])


def test_evaluate_on_the_reference_engine_refuses_an_empty_pack_too(tmp_path: Path):
    result = _run(
        [sys.executable, "-m", "carepath.api", "evaluate", str(EXAMPLE), "--engine", "reference"],
        tmp_path,
        _empty(tmp_path),
    )
    _one_line_refusal(result, "no active rules")


def test_batch_refuses_before_any_output(tmp_path: Path):
    source = tmp_path / "in.ndjson"
    source.write_text(EXAMPLE.read_text().replace("\n", "") + "\n")
    result = _run(
        [
            sys.executable,
            "-m",
            "carepath.api",
            "batch",
            str(source),
            "-o",
            str(tmp_path / "out.ndjson"),
            "--workers",
            "1",
        ],
        tmp_path,
        _no_naloxone(tmp_path),
    )
    _one_line_refusal(result, "hr.naloxone")
    assert not (tmp_path / "out.ndjson").exists()


@pytest.mark.parametrize("case", ["no-active-rules", "contradiction"])
def test_serve_refuses_to_start(tmp_path: Path, case: str):
    result = _run(
        [sys.executable, "-m", "carepath.api", "serve", "--port", "9"], tmp_path, BROKEN[case](tmp_path)
    )
    _one_line_refusal(result, WHY[case])
    assert not (tmp_path / "data").exists()  # refused before the database was touched


def test_the_app_factory_refuses_to_start_under_uvicorn(tmp_path: Path):
    args = [sys.executable, "-m", "uvicorn", "--factory", "carepath.api.app:app_from_env", "--port", "9"]
    result = _run(args, tmp_path, _no_naloxone(tmp_path))
    _one_line_refusal(result, "hr.naloxone")


def test_create_app_refuses_at_startup(tmp_path: Path):
    settings = Settings(data_dir=tmp_path / "data", rules_dir=_contradiction(tmp_path))
    with pytest.raises(RulePackError, match="does not lint clean"), TestClient(create_app(settings)):
        pass


def test_a_good_pack_still_serves(tmp_path: Path):
    settings = Settings(data_dir=tmp_path / "data", rules_dir=make_pack(tmp_path, {}))
    db = open_database(settings, create=True)  # what `carepath db upgrade` does
    migrate(settings, db)
    db.dispose()
    with TestClient(create_app(settings)) as client:
        assert client.get("/health").status_code == 200


def test_an_empty_pack_never_reaches_durable_rules(tmp_path: Path):
    """In a subprocess: on the old code this process died in native code (exit 139)."""
    code = (
        "import sys\n"
        "from carepath.engine import Engine, RulePackError, load_rulepack\n"
        "from carepath.engine._durable import DurableRunner\n"
        f"pack = load_rulepack({str(_empty(tmp_path))!r})\n"
        "builds = (lambda: DurableRunner(pack), lambda: Engine(pack, 'durable'),\n"
        "          lambda: Engine(pack, 'reference'))\n"
        "for build in builds:\n"
        "    try:\n"
        "        build()\n"
        "    except RulePackError as exc:\n"
        "        print(exc)\n"
        "    else:\n"
        "        sys.exit('not refused')\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, (result.returncode, result.stderr[-2000:])
    version = load_rulepack(ROOT / "rules").version
    assert result.stdout.splitlines() == [f"carepath-oud {version} has no active rules: nothing to run"] * 3


def test_empty_pack_refusal_in_process(tmp_path: Path):
    pack = load_rulepack(_empty(tmp_path))
    with pytest.raises(RulePackError, match="no active rules"):
        DurableRunner(pack)
    with pytest.raises(RulePackError, match="no active rules"):
        Engine(pack, "reference")


def test_a_clean_pack_evaluates_from_the_cli(tmp_path: Path):
    result = _run(
        [sys.executable, "-m", "carepath.api", "evaluate", str(EXAMPLE)], tmp_path, make_pack(tmp_path, {})
    )
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["ruleset"]["id"] == "carepath-oud"
