"""Golden copy of the compiled durable_rules ruleset (tests/golden/compiled_rules.json).

Machine-owned, reviewed as a diff: any change to a rule's condition, a flag or the compiler
shows up here. Regenerate with ``CAREPATH_UPDATE_GOLDEN=1 python -m pytest tests/test_golden_compiled.py``
and review the diff before committing. The text is exactly what ``carepath rules compile`` prints.
"""

from __future__ import annotations

import difflib
import json
import os
from pathlib import Path

import pytest

from carepath.engine.compile import compile_pack
from carepath.engine.rulepack import RulePack

GOLDEN = Path(__file__).resolve().parent / "golden" / "compiled_rules.json"
UPDATE = os.environ.get("CAREPATH_UPDATE_GOLDEN") == "1"
MAX_DIFF_LINES = 200


def compiled_text(pack: RulePack) -> str:
    """Same serialisation as ``carepath rules compile`` (indent 1, sorted keys, final newline)."""
    return json.dumps(compile_pack(pack), indent=1, sort_keys=True) + "\n"


def test_compiled_rules_match_the_golden_copy(pack: RulePack) -> None:
    got = compiled_text(pack)
    if UPDATE:
        GOLDEN.parent.mkdir(parents=True, exist_ok=True)
        GOLDEN.write_text(got, encoding="utf-8")
        return
    assert GOLDEN.is_file(), f"no golden copy at {GOLDEN}: run with CAREPATH_UPDATE_GOLDEN=1"
    want = GOLDEN.read_text(encoding="utf-8")
    if got == want:
        return
    before, after = json.loads(want), json.loads(got)
    changed = sorted(rid for rid in set(before) & set(after) if before[rid] != after[rid])
    summary = [
        f"rules added: {sorted(set(after) - set(before)) or 'none'}",
        f"rules removed: {sorted(set(before) - set(after)) or 'none'}",
        f"rules changed: {changed or 'none'}",
    ]
    diff = list(
        difflib.unified_diff(
            want.splitlines(),
            got.splitlines(),
            "golden/compiled_rules.json",
            "compiled now",
            lineterm="",
            n=3,
        )
    )
    shown = diff[:MAX_DIFF_LINES]
    if len(diff) > MAX_DIFF_LINES:
        shown.append(f"... {len(diff) - MAX_DIFF_LINES} more diff lines")
    pytest.fail(
        "The compiled rule set differs from the golden copy. If the change is intended, regenerate "
        "with CAREPATH_UPDATE_GOLDEN=1 and review the diff.\n" + "\n".join(summary + shown)
    )


def test_the_cli_prints_the_same_text(pack: RulePack) -> None:
    """The golden copy is what `carepath rules compile` prints, so reviewers can regenerate it either way."""
    from typer.testing import CliRunner

    from carepath.api.cli import app

    result = CliRunner().invoke(app, ["rules", "compile", "--rules-dir", pack.source_dir])
    assert result.exit_code == 0, result.output
    assert result.stdout == compiled_text(pack)
