"""Small, valid rule packs in a temporary folder, for failure tests: the real manifest,
citations and codes, two rules of our own (naloxone, outpatient), plus whatever file a test
adds. Independent of the clinical rules in rules/pack, which change as they are written."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import yaml

from tests.conftest import ROOT

__all__ = ["rule", "BASE_RULES", "make_pack"]


def _citation_key() -> str:
    registry = yaml.safe_load((ROOT / "rules" / "citations.yaml").read_text(encoding="utf-8"))
    return str(next(iter(registry)))


def rule(
    rule_id: str, when: Any = "always", then: list[dict[str, Any]] | None = None, **extra: Any
) -> dict[str, Any]:
    """A complete, valid rule document; ``extra`` overrides any key."""
    doc: dict[str, Any] = {
        "id": rule_id,
        "version": 1,
        "status": "active",
        "title": f"Test rule {rule_id}",
        "phase": "harm_reduction",
        "when": when,
        "then": [{"code": "hr.overdose_education", "kind": "recommend"}] if then is None else then,
        "rationale": "A rule written by the failure tests.",
        "citations": [{"key": _citation_key(), "locator": "p.1"}],
        "knowledge_base": ["F-91"],
        "confirmation": "confirmed",
        "evidence_grade": "test",
        "review_date": "2099-01-01",
        "reviewed_by": "test author",
        "reviewed_on": "2026-01-01",
        "examples": {"fires": [{"intake": {}}]},
    }
    if when != "always":
        doc["examples"]["does_not_fire"] = [{"intake": {}}]
    doc.update(extra)
    return doc


BASE_RULES = [
    rule("OUD-TST-001", then=[{"code": "hr.naloxone", "kind": "recommend"}]),
    rule("OUD-TST-002", phase="level_of_care", then=[{"code": "loc.outpatient", "effect": "need"}]),
]


def make_pack(tmp: Path, files: dict[str, Any]) -> Path:
    """A valid two-rule pack (the real manifest, citations and codes) plus ``files``."""
    root = tmp / "rules"
    (root / "pack").mkdir(parents=True)
    for name in ("pack.yaml", "citations.yaml", "codes.yaml"):
        shutil.copy(ROOT / "rules" / name, root / name)
    (root / "pack" / "00-base.yaml").write_text(yaml.safe_dump({"rules": BASE_RULES}), encoding="utf-8")
    for name, content in files.items():
        text = content if isinstance(content, str) else yaml.safe_dump({"rules": content})
        (root / "pack" / name).write_text(text, encoding="utf-8")
    return root
