"""Report rendering benchmark: HTML and PDF times, and the same HTML printed by headless Chromium.

    python bench/reports.py [--runs 20]

Short plan: examples/intake-fentanyl.json. Long plan: the vignette whose plan has the most
items, alerts and why-not entries. Each PDF engine renders the same HTML; Chromium prints it
from a file:// path (a fresh process per run, as a service would spawn it). Ratios are
measured in this one run, on this machine.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from engine import Engine, load_rulepack, parse_intake_obj  # noqa: E402
from reports import patient_from_intake, render_html  # noqa: E402
from reports.pdf import html_to_pdf  # noqa: E402

FIXED = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)
CHROMIUM_FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
)


def timings(fn: Callable[[], Any], runs: int) -> list[float]:
    fn()  # warm-up: templates, fonts, catalogues
    out = []
    for _ in range(runs):
        start = time.perf_counter()
        fn()
        out.append((time.perf_counter() - start) * 1000)
    return out


def p95(values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(0.95 * (len(ordered) - 1)))]


def plans(engine: Engine) -> dict[str, tuple[Any, Any]]:
    example = parse_intake_obj(json.loads((ROOT / "examples" / "intake-fentanyl.json").read_text()))
    best, size = None, -1
    for path in sorted((ROOT / "tests" / "vignettes").glob("*.yaml")):
        intake = parse_intake_obj(yaml.safe_load(path.read_text())["intake"])
        plan = engine.evaluate(intake, FIXED)
        n = len(plan.items()) + len(plan.alerts) + len(plan.considered_not_recommended)
        if n > size:
            best, size = (plan, intake, path.stem), n
    assert best is not None
    return {
        "short (example)": (engine.evaluate(example, FIXED), example),
        f"long ({best[2][:24]})": (best[0], best[1]),
    }


def chromium_print(chromium: str, html_path: Path, work: Path) -> Callable[[], None]:
    def run() -> None:
        profile = tempfile.mkdtemp(dir=work)
        out = work / "chromium.pdf"
        subprocess.run(
            [
                chromium,
                *CHROMIUM_FLAGS,
                f"--user-data-dir={profile}",
                f"--print-to-pdf={out}",
                html_path.as_uri(),
            ],
            check=True,
            capture_output=True,
            timeout=120,
        )
        shutil.rmtree(profile, ignore_errors=True)

    return run


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=20)
    args = parser.parse_args()
    pack = load_rulepack()
    engine = Engine(pack, "reference")
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        for name, (plan, intake) in plans(engine).items():
            who = patient_from_intake(intake)
            html = render_html(plan, pack=pack, patient=who)
            page = work / "report.html"
            page.write_text(html, encoding="utf-8")
            pdf = html_to_pdf(html)
            row = {
                "plan": name,
                "pages": pdf.count(b"/Type /Page\n") or pdf.count(b"/Type /Page"),
                "html": timings(lambda: render_html(plan, pack=pack, patient=who), args.runs),  # noqa: B023
                "weasyprint": timings(lambda: html_to_pdf(html), args.runs),  # noqa: B023
                "chromium": timings(chromium_print(chromium, page, work), args.runs) if chromium else None,
            }
            rows.append(row)
    print_table(rows, args.runs)


def print_table(rows: list[dict[str, Any]], runs: int) -> None:
    print(f"carepath report rendering, {runs} runs each (ms; median / p95)")
    head = f"{'plan':34} {'HTML':>15} {'PDF WeasyPrint':>17} {'PDF Chromium':>17} {'Chromium/WeasyPrint':>20}"
    print(head)
    print("-" * len(head))
    for r in rows:
        cells = [
            f"{statistics.median(r[k]):7.1f} /{p95(r[k]):7.1f}" if r[k] else "   n/a"
            for k in ("html", "weasyprint", "chromium")
        ]
        ratio = (
            f"{statistics.median(r['chromium']) / statistics.median(r['weasyprint']):.2f}x"
            if r["chromium"]
            else "n/a"
        )
        print(f"{r['plan']:34} {cells[0]:>15} {cells[1]:>17} {cells[2]:>17} {ratio:>20}")
    print("PDF times include HTML->PDF only (the HTML is rendered once); Chromium includes process start.")


if __name__ == "__main__":
    main()
