"""Golden HTML snapshots of the clinician draft for every vignette (tests/golden/html/).

Machine-owned: regenerate with CAREPATH_UPDATE_GOLDEN=1 and review the diff. The inlined
stylesheet is replaced by its hash so that diffs show content, not CSS.
"""

from __future__ import annotations

import difflib
import hashlib
import os
import re
from pathlib import Path

import pytest
import yaml

from carepath.engine import parse_intake_obj
from carepath.reports import patient_from_intake, render_html
from carepath.reports.render import stylesheet
from tests.conftest import FIXED_TIME

ROOT = Path(__file__).resolve().parents[2]
VIGNETTES = sorted((ROOT / "tests" / "vignettes").glob("*.yaml"))
GOLDEN = ROOT / "tests" / "golden" / "html"
UPDATE = os.environ.get("CAREPATH_UPDATE_GOLDEN") == "1"


def normalise(html: str) -> str:
    digest = hashlib.sha256(stylesheet().encode()).hexdigest()[:16]
    return re.sub(
        r"<style>\n.*?\n</style>", f"<style>/* report.css sha256:{digest} */</style>", html, flags=re.S
    )


def snapshot(path: Path, engine, pack) -> str:
    intake = parse_intake_obj(yaml.safe_load(path.read_text(encoding="utf-8"))["intake"])
    plan = engine.evaluate(intake, FIXED_TIME)
    return normalise(render_html(plan, pack=pack, patient=patient_from_intake(intake), intake=intake))


@pytest.mark.parametrize("path", VIGNETTES, ids=[p.stem for p in VIGNETTES])
def test_golden_html(path: Path, engine, pack) -> None:
    got = snapshot(path, engine, pack)
    golden = GOLDEN / f"{path.stem}.html"
    if UPDATE:
        golden.parent.mkdir(parents=True, exist_ok=True)
        golden.write_text(got, encoding="utf-8")
        return
    assert golden.is_file(), f"no golden for {path.stem}: run with CAREPATH_UPDATE_GOLDEN=1"
    want = golden.read_text(encoding="utf-8")
    if got != want:
        diff = difflib.unified_diff(
            want.splitlines(), got.splitlines(), f"golden/{golden.name}", "rendered", lineterm="", n=2
        )
        pytest.fail("HTML differs from the golden copy:\n" + "\n".join(list(diff)[:120]))


def test_no_stale_goldens():
    stems = {p.stem for p in VIGNETTES}
    stale = [g.name for g in GOLDEN.glob("*.html") if g.stem not in stems]
    assert not stale, f"goldens without a vignette: {stale}"
