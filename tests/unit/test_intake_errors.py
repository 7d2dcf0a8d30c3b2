"""The bad-input table, through the real command line (``carepath evaluate FILE`` and ``-``).

Every malformed intake must give exit code 2, nothing on stdout, and on stderr the field path
and what is expected: never a submitted value (each case plants canaries and checks they are
absent) and never a traceback. All cases run at once in a thread pool (each is a subprocess).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from carepath.engine import CarePlan
from carepath.engine.intake import MAX_INTAKE_BYTES
from tests.conftest import ROOT

NAME = "Quentin Canarywood"
MRN = "MRN-CANARY-55821"
ALWAYS_ABSENT = (NAME, "Canarywood", MRN, "55821", "Traceback", 'File "')


def cli() -> list[str]:
    script = shutil.which("carepath")
    return [script] if script else [sys.executable, "-c", "from carepath.api.cli import main; main()"]


def intake(**sections: Any) -> dict[str, Any]:
    data: dict[str, Any] = {
        "assessment_date": "2026-01-15",
        "patient": {"age": 40, "name": NAME, "id": MRN},
    }
    for key, value in sections.items():
        if isinstance(value, dict) and isinstance(data.get(key), dict):
            data[key] = {**data[key], **value}
        else:
            data[key] = value
    return data


def raw(data: Any) -> bytes:
    return json.dumps(data).encode()


def without(data: dict[str, Any], path: str) -> dict[str, Any]:
    head, _, rest = path.partition(".")
    out = dict(data)
    if rest:
        out[head] = without(out[head], rest)
    else:
        del out[head]
    return out


@dataclass(frozen=True)
class Bad:
    id: str
    body: bytes
    field: str
    expected: str
    canaries: Sequence[str] = ()
    via: str = "file"  # "file" | "stdin" | "both"


def p(**fields: Any) -> dict[str, Any]:
    """patient fields on top of the canary name and MRN."""
    return {"patient": {"age": 40, "name": NAME, "id": MRN, **fields}}


VALID = raw(intake())
HUGE = raw(intake(medical={"interacting_medications": ["canary-padding-drug-" + "x" * 70] * 3000}))
assert len(HUGE) > MAX_INTAKE_BYTES

CASES: list[Bad] = [
    # wrong types
    Bad("age-string", raw(intake(**p(age="CANARY-AGE-4711"))), "patient.age", "whole number", ["4711"]),
    Bad("age-numeric-string", raw(intake(**p(age="7319"))), "patient.age", "whole number", ["7319"], "both"),
    Bad("age-bool", raw(intake(**p(age=True))), "patient.age", "whole number", ["true"]),
    Bad("age-fraction", raw(intake(**p(age=34.25))), "patient.age", "whole number", ["34.25"]),
    Bad("pregnant-number", raw(intake(**p(pregnant=7777))), "patient.pregnant", "true or false", ["7777"]),
    Bad(
        "bool-as-string",
        raw(intake(substance_use={"stimulants": "yes-CANARY"})),
        "substance_use.stimulants",
        "true or false",
        ["yes-CANARY"],
    ),
    Bad("cows-bool", raw(intake(substance_use={"cows_score": True})), "substance_use.cows_score", "whole"),
    Bad(
        "cows-fraction",
        raw(intake(substance_use={"cows_score": 12.75})),
        "substance_use.cows_score",
        "whole number",
        ["12.75"],
    ),
    Bad(
        "dose-word",
        raw(intake(current_treatment={"moud": "methadone", "dose_mg": "forty-CANARY"})),
        "current_treatment.dose_mg",
        "must be a number",
        ["forty-CANARY"],
    ),
    Bad(
        "list-as-object",
        raw(intake(medical=["CANARY-LIST"])),
        "medical",
        "must be an object",
        ["CANARY-LIST"],
    ),
    Bad(
        "object-as-list",
        raw(intake(substance_use={"opioids": {"heroin": "CANARY-OBJ"}})),
        "substance_use.opioids",
        "must be a list",
        ["CANARY-OBJ"],
    ),
    Bad(
        "string-as-list",
        raw(intake(mental_health={"conditions": "depression-CANARY"})),
        "mental_health.conditions",
        "must be a list",
        ["depression-CANARY"],
    ),
    # out of range
    Bad("age-11", raw(intake(**p(age=11))), "patient.age", "at least 12", ["11"], "both"),
    Bad("age-111", raw(intake(**p(age=111))), "patient.age", "at most 110", ["111"]),
    Bad("age-huge", raw(intake(**p(age=98765432109876543210))), "patient.age", "at most 110", ["98765"]),
    Bad(
        "cows-49",
        raw(intake(substance_use={"cows_score": 49})),
        "substance_use.cows_score",
        "at most 48",
        ["49"],
    ),
    Bad(
        "dsm5-12",
        raw(intake(substance_use={"dsm5_criteria_met": 12})),
        "substance_use.dsm5_criteria_met",
        "at most 11",
        ["12"],
    ),
    Bad("qtc-1234", raw(intake(medical={"qtc_ms": 1234})), "medical.qtc_ms", "at most 900", ["1234"]),
    Bad("qtc-150", raw(intake(medical={"qtc_ms": 150})), "medical.qtc_ms", "at least 200", ["150"]),
    Bad(
        "gestation-0",
        raw(intake(**p(sex_at_birth="female", pregnant=True, gestational_weeks=0))),
        "patient.gestational_weeks",
        "at least 1",
    ),
    Bad(
        "gestation-46",
        raw(intake(**p(sex_at_birth="female", pregnant=True, gestational_weeks=46))),
        "patient.gestational_weeks",
        "at most 45",
        ["46"],
    ),
    Bad(
        "last-use-negative",
        raw(intake(substance_use={"last_use_hours": -3.25})),
        "substance_use.last_use_hours",
        "at least 0",
        ["3.25"],
    ),
    Bad(
        "last-use-nan",
        VALID[:-1] + b', "substance_use": {"last_use_hours": NaN}}',
        "substance_use.last_use_hours",
        "finite number",
        ["NaN", "nan"],
        "both",
    ),
    Bad(
        "last-use-infinity",
        VALID[:-1] + b', "substance_use": {"last_use_hours": Infinity}}',
        "substance_use.last_use_hours",
        "finite number",
        ["Infinity", "inf"],
    ),
    Bad(
        "dose-minus-infinity",
        VALID[:-1] + b', "current_treatment": {"moud": "methadone", "dose_mg": -Infinity}}',
        "current_treatment.dose_mg",
        "finite number",
        ["Infinity", "inf"],
        "stdin",
    ),
    Bad(
        "overdoses-501",
        raw(intake(history={"overdoses_last_year": 501})),
        "history.overdoses_last_year",
        "at most 500",
        ["501"],
    ),
    Bad(
        "release-negative",
        raw(intake(social={"days_since_release": -8642})),
        "social.days_since_release",
        "at least 0",
        ["8642"],
    ),
    Bad("name-too-long", raw(intake(**p(name="Canarywood" * 21))), "patient.name", "too long (at most 200)"),
    Bad(
        "drug-too-long",
        raw(intake(medical={"interacting_medications": ["canarycillin" * 9]})),
        "medical.interacting_medications[0]",
        "too long (at most 100)",
        ["canarycillin"],
    ),
    Bad(
        "drug-empty",
        raw(intake(medical={"interacting_medications": ["canarycillin", ""]})),
        "medical.interacting_medications[1]",
        "too short",
        ["canarycillin"],
    ),
    Bad(
        "prior-moud-too-many",
        raw(intake(history={"prior_moud": ["methadone", "naltrexone", "methadone", "buprenorphine"]})),
        "history.prior_moud",
        "too long (at most 3)",
    ),
    # unknown fields: only contract field names are ever repeated back
    Bad(
        "unknown-top-level",
        raw(intake(notes="CANARY free text about the patient")),
        "(unrecognised field name)",
        "is not a field",
        ["notes", "CANARY free text"],
    ),
    Bad(
        "unknown-key-is-a-name",
        raw(intake(**p(Canarywood=True))),
        "patient.(unrecognised field name)",
        "is not a field",
        [],
        "both",
    ),
    Bad(
        "unknown-key-full-name",
        raw({**intake(), NAME: {"diagnosis": "CANARY-DX"}}),
        "(unrecognised field name)",
        "is not a field",
        ["CANARY-DX", "diagnosis"],
    ),
    Bad(
        "unknown-nested-unicode-key",
        raw(intake(medical={"Jöhn Smïth-Canary": 1})),
        "medical.(unrecognised field name)",
        "is not a field",
        ["Jöhn", "Smïth"],
    ),
    Bad("misplaced-field-is-named", raw(intake(age=40)), "age", "is not a field of the intake"),
    # bad enumerations
    Bad(
        "sex-enum",
        raw(intake(**p(sex_at_birth="CanaryGender"))),
        "patient.sex_at_birth",
        "must be one of 'female', 'male', 'intersex' or 'unknown'",
        ["CanaryGender"],
    ),
    Bad(
        "jurisdiction-enum", raw(intake(jurisdiction="FR-CANARY")), "jurisdiction", "must be one of", ["FR-"]
    ),
    Bad("stage-enum", raw(intake(stage="detox-CANARY")), "stage", "must be one of", ["detox-CANARY"]),
    Bad(
        "opioid-list-enum",
        raw(intake(substance_use={"opioids": ["heroin", "canarynil"]})),
        "substance_use.opioids[1]",
        "must be one of",
        ["canarynil"],
    ),
    Bad("moud-enum", raw(intake(current_treatment={"moud": "Suboxone"})), "current_treatment.moud", "one of"),
    # impossible combinations
    Bad(
        "pregnant-male",
        raw(intake(**p(sex_at_birth="male", pregnant=True))),
        "patient.pregnant",
        "cannot be true when sex_at_birth is 'male'",
        [],
        "both",
    ),
    Bad(
        "gestation-without-pregnancy",
        raw(intake(**p(gestational_weeks=12))),
        "patient.gestational_weeks",
        "only allowed when patient.pregnant is true",
    ),
    Bad(
        "gestation-not-pregnant",
        raw(intake(**p(pregnant=False, gestational_weeks=12))),
        "patient.gestational_weeks",
        "only allowed when patient.pregnant is true",
    ),
    Bad(
        "dose-without-moud",
        raw(intake(current_treatment={"dose_mg": 87.5})),
        "current_treatment.dose_mg",
        "needs current_treatment.moud",
        ["87.5"],
    ),
    Bad(
        "months-with-moud-null",
        raw(intake(current_treatment={"moud": None, "months_on_moud": 13.5})),
        "current_treatment.months_on_moud",
        "needs current_treatment.moud",
        ["13.5"],
    ),
    Bad(
        "withdrawal-not-dependent",
        raw(intake(stage="in_withdrawal", substance_use={"physically_dependent": False})),
        "substance_use.physically_dependent",
        "cannot be false when stage is 'in_withdrawal'",
    ),
    # not an intake at all
    Bad("empty", b"", "(intake)", "is empty", [], "both"),
    Bad("whitespace-only", b"  \n\t \r\n", "(intake)", "not valid JSON", [], "both"),
    Bad("not-json", b"patient: Quentin Canarywood\nage: 40\n", "(intake)", "not valid JSON"),
    Bad("json-array", raw([intake()]), "(intake)", "must be an object"),
    Bad("json-string", raw(NAME), "(intake)", "must be an object", [], "both"),
    Bad("json-null", b"null", "(intake)", "must be an object"),
    Bad("json-number", b"55821", "(intake)", "must be an object"),
    Bad(
        "invalid-utf8",
        VALID.replace(b"Quentin", b"Qu\xff\xfeentin"),
        "(intake)",
        "not UTF-8",
        [],
        "both",
    ),
    Bad("truncated", VALID[: len(VALID) // 2], "(intake)", "not valid JSON", [], "both"),
    Bad("huge", HUGE, "(intake)", f"too large: at most {MAX_INTAKE_BYTES} bytes", ["canary-padding"], "both"),
    Bad(
        "deeply-nested-value",
        raw(intake(**p(name=json.loads("[" * 100 + '"Canarywood"' + "]" * 100)))),
        "patient.name",
        "must be a string",
    ),
    Bad("nested-beyond-parser", b"[" * 100_000 + b"]" * 100_000, "(intake)", "not valid JSON", [], "both"),
    # missing and malformed required fields
    Bad(
        "missing-assessment-date", raw(without(intake(), "assessment_date")), "assessment_date", "is required"
    ),
    Bad(
        "missing-patient-age", raw(without(intake(), "patient.age")), "patient.age", "is required", [], "both"
    ),
    Bad("missing-patient", raw(without(intake(), "patient")), "patient", "is required"),
    Bad(
        "impossible-date",
        raw({**intake(), "assessment_date": "2026-02-30"}),
        "assessment_date",
        "YYYY-MM-DD",
        ["02-30"],
    ),
    Bad(
        "date-as-number",
        raw({**intake(), "assessment_date": 20260115}),
        "assessment_date",
        "YYYY-MM-DD",
        ["20260115"],
    ),
    Bad(
        "date-with-time",
        raw({**intake(), "assessment_date": "2026-01-15T10:47:13"}),
        "assessment_date",
        "YYYY-MM-DD",
        ["10:47"],
    ),
]


@dataclass(frozen=True)
class Run:
    returncode: int
    stdout: bytes
    stderr: str


def _run(args: list[str], stdin: bytes | None, cwd: Path) -> Run:
    env = {**os.environ, "PYTHONDONTWRITEBYTECODE": "1", "NO_COLOR": "1"}
    done = subprocess.run(args, input=stdin, capture_output=True, cwd=cwd, env=env, timeout=120)
    return Run(done.returncode, done.stdout, done.stderr.decode("utf-8", errors="replace"))


def _jobs(tmp: Path) -> dict[str, tuple[list[str], bytes | None]]:
    jobs: dict[str, tuple[list[str], bytes | None]] = {}
    for case in CASES:
        if case.via in ("file", "both"):
            path = tmp / f"{case.id}.json"
            path.write_bytes(case.body)
            jobs[f"{case.id}[file]"] = ([*cli(), "evaluate", str(path)], None)
        if case.via in ("stdin", "both"):
            jobs[f"{case.id}[stdin]"] = ([*cli(), "evaluate", "-"], case.body)
    return jobs


@pytest.fixture(scope="module")
def results(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Run]:
    tmp = tmp_path_factory.mktemp("bad-intakes")
    jobs = _jobs(tmp)
    with ThreadPoolExecutor(max_workers=2 * (os.cpu_count() or 1)) as pool:
        futures = {key: pool.submit(_run, args, stdin, tmp) for key, (args, stdin) in jobs.items()}
        return {key: f.result() for key, f in futures.items()}


PARAMS = [
    pytest.param(case, via, id=f"{case.id}[{via}]")
    for case in CASES
    for via in (("file", "stdin") if case.via == "both" else (case.via,))
]


def test_the_table_is_big_enough() -> None:
    assert len(CASES) >= 35
    assert len({c.id for c in CASES}) == len(CASES)


@pytest.mark.parametrize(("case", "via"), PARAMS)
def test_bad_intake_is_refused_without_echo(case: Bad, via: str, results: dict[str, Run]) -> None:
    run = results[f"{case.id}[{via}]"]
    assert run.returncode == 2, run.stderr
    assert run.stdout == b""
    lines = run.stderr.splitlines()
    assert lines[0] == "carepath: invalid intake", run.stderr
    wanted = [line for line in lines[1:] if line.strip().startswith(f"{case.field}: ")]
    assert wanted, f"no message for {case.field!r} in:\n{run.stderr}"
    assert any(case.expected in line for line in wanted), run.stderr
    for canary in (*ALWAYS_ABSENT, *case.canaries):
        assert canary not in run.stderr, f"{canary!r} leaked into stderr:\n{run.stderr}"


def test_every_problem_is_listed_once_per_field(tmp_path: Path) -> None:
    body = raw(
        intake(
            **p(age="CANARY-AGE", Canarywood=1),
            substance_use={"cows_score": 49, "route": "CANARY-ROUTE"},
        )
    )
    run = _run([*cli(), "evaluate", "-"], body, tmp_path)
    assert run.returncode == 2 and run.stdout == b""
    fields = sorted(line.strip().split(":")[0] for line in run.stderr.splitlines()[1:])
    assert fields == sorted(
        [
            "patient.age",
            "patient.(unrecognised field name)",
            "substance_use.cows_score",
            "substance_use.route",
        ]
    )
    assert "CANARY" not in run.stderr and "Canarywood" not in run.stderr


def test_a_missing_file_is_invalid_input(tmp_path: Path) -> None:
    run = _run([*cli(), "evaluate", str(tmp_path / "nowhere.json")], None, tmp_path)
    assert run.returncode == 2 and run.stdout == b""
    assert "not found" in run.stderr and "Traceback" not in run.stderr


def test_a_valid_intake_gives_a_plan_and_exit_0(tmp_path: Path) -> None:
    path = tmp_path / "ok.json"
    path.write_bytes(VALID)
    for args, stdin in (([str(path)], None), (["-"], VALID)):
        run = _run(
            [*cli(), "evaluate", *args, "--generated-at", "2026-01-01T12:00:00+00:00"], stdin, tmp_path
        )
        assert run.returncode == 0, run.stderr
        plan = CarePlan.model_validate_json(run.stdout)
        assert "hr.naloxone" in plan.codes("recommend")
        assert NAME not in run.stderr and MRN not in run.stderr


def _broken_copy(tmp: Path, name: str, text: str) -> Path:
    rules = tmp / "rules"
    shutil.copytree(ROOT / "rules", rules)
    (rules / "pack" / name).write_text(text, encoding="utf-8")
    return rules


@pytest.mark.parametrize(
    ("name", "text", "expected"),
    [
        ("00-every-plan.yaml", "rules:\n  - id: OUD-HR-001\n    title: [unclosed\n", "not valid YAML"),
        ("99-invalid.yaml", "rules: [{id: OUD-TST-001}]\n", "99-invalid.yaml: rule OUD-TST-001"),
    ],
    ids=["broken-yaml", "invalid-rule"],
)
def test_a_broken_rule_pack_exits_1_with_a_clear_message(
    tmp_path: Path, name: str, text: str, expected: str
) -> None:
    rules = _broken_copy(tmp_path, name, text)
    intake_file = tmp_path / "ok.json"
    intake_file.write_bytes(VALID)
    run = _run([*cli(), "evaluate", str(intake_file), "--rules-dir", str(rules)], None, tmp_path)
    assert run.returncode == 1, run.stderr
    assert run.stdout == b""
    assert run.stderr.startswith("carepath: rule pack refused:"), run.stderr
    assert expected in run.stderr
    for canary in ALWAYS_ABSENT:
        assert canary not in run.stderr
