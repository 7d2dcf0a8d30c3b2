"""The December 2026 review's 76 probe intakes, evaluated: codes listed twice, dangerous (S1)
findings reproduced, and the level of care of each probe.

    python bench/probes.py                 # table + totals
    python bench/probes.py --json out.json # per-probe results, to compare two versions
    python bench/probes.py --compare before.json  # level-of-care changes against a saved run
"""

from __future__ import annotations

import argparse
import json
import sys
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from carepath.engine import Engine, load_rulepack, parse_intake_obj  # noqa: E402
from tests.probes import duplicated_codes, probe_intakes, s1_findings  # noqa: E402


def evaluate_all() -> dict[str, dict[str, object]]:
    engine = Engine(load_rulepack(), runner="reference")
    out: dict[str, dict[str, object]] = {}
    for name, intake in probe_intakes().items():
        plan = engine.evaluate(parse_intake_obj(intake), datetime(2026, 3, 2, tzinfo=UTC))
        doc = json.loads(plan.model_dump_json())
        out[name] = {
            "level_of_care": doc["level_of_care"]["code"],
            "duplicated": duplicated_codes(doc),
            "s1": s1_findings(doc, intake),
            "items": sorted(f"{i['kind']}:{i['code']}" for p in doc["phases"] for i in p["items"]),
        }
    return out


def _totals(label: str, results: dict[str, dict[str, object]]) -> str:
    dups = sum(1 for r in results.values() if r["duplicated"])
    plans = sum(1 for r in results.values() if r["s1"])
    findings = {f for r in results.values() for f in r["s1"]}  # type: ignore[attr-defined]
    return (
        f"{label}: {len(results)} probes; plans listing a code twice: {dups}; "
        f"plans reproducing a dangerous (S1) finding: {plans}; "
        f"distinct S1 findings reproduced: {len(findings)}"
    )


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--json", type=Path)
    ap.add_argument("--compare", type=Path)
    args = ap.parse_args()
    results = evaluate_all()
    for name, r in results.items():
        flags = "; ".join(r["s1"]) or "-"  # type: ignore[arg-type]
        dup = ", ".join(r["duplicated"]) or "-"  # type: ignore[arg-type]
        print(f"{name:42} {r['level_of_care']:28} dup: {dup:40} S1: {flags}")
    print()
    print(_totals("this run", results))
    if args.compare:
        print(_totals(args.compare.name, json.loads(args.compare.read_text())))
        before = json.loads(args.compare.read_text())
        moved = [
            (n, before[n]["level_of_care"], r["level_of_care"])
            for n, r in results.items()
            if n in before and before[n]["level_of_care"] != r["level_of_care"]
        ]
        print(f"level of care changed in {len(moved)} probes:")
        for n, a, b in moved:
            print(f"  {n:42} {a} -> {b}")
    if args.json:
        args.json.write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
