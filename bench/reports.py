"""Report rendering benchmark: HTML and PDF times, and the same HTML printed by headless Chromium.

    python bench/reports.py [--runs 20]

Short and long plan: the vignettes whose plans have the fewest and the most items, alerts and
why-not entries. Each PDF engine renders the same HTML; Chromium prints it
from a file:// path (a fresh process per run, as a service would spawn it). Ratios are
measured in this one run, on this machine.
"""

from __future__ import annotations

import argparse
import io
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
from pypdf import PdfReader

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from carepath.engine import Engine, load_rulepack, parse_intake_obj  # noqa: E402
from carepath.reports import patient_from_intake, render_html  # noqa: E402
from carepath.reports.pdf import html_to_pdf  # noqa: E402

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


def timings(fns: dict[str, Callable[[], Any]], runs: int) -> dict[str, list[float]]:
    """Interleaved: each run times every renderer once, so load on a shared host hits all alike."""
    for fn in fns.values():
        fn()  # warm-up: templates, fonts, catalogues, Chromium's disk cache
    out: dict[str, list[float]] = {name: [] for name in fns}
    for _ in range(runs):
        for name, fn in fns.items():
            start = time.perf_counter()
            fn()
            out[name].append((time.perf_counter() - start) * 1000)
    return out


def p95(values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(0.95 * (len(ordered) - 1)))]


def plans(engine: Engine) -> dict[str, tuple[Any, Any]]:
    """The vignettes with the smallest and the largest plan (items + alerts + why-not)."""
    sized = []
    for path in sorted((ROOT / "tests" / "vignettes").glob("*.yaml")):
        intake = parse_intake_obj(yaml.safe_load(path.read_text())["intake"])
        plan = engine.evaluate(intake, FIXED)
        size = len(plan.items()) + len(plan.alerts) + len(plan.considered_not_recommended)
        sized.append((size, path.stem, plan, intake))
    sized.sort(key=lambda s: (s[0], s[1]))
    (_, short_name, short, short_in), (_, long_name, long, long_in) = sized[0], sized[-1]
    return {f"short {short_name[:26]}": (short, short_in), f"long {long_name[:27]}": (long, long_in)}


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
            fns = {
                "html": lambda: render_html(plan, pack=pack, patient=who),  # noqa: B023
                "weasyprint": lambda: html_to_pdf(html),  # noqa: B023
            }
            if chromium:
                fns["chromium"] = chromium_print(chromium, page, work)
            row: dict[str, Any] = {"plan": name, "pages": len(PdfReader(io.BytesIO(html_to_pdf(html))).pages)}
            row |= {"chromium": None} | timings(fns, args.runs)
            rows.append(row)
    print_table(rows, args.runs)


def print_table(rows: list[dict[str, Any]], runs: int) -> None:
    print(f"carepath report rendering, {runs} runs each (ms; median / p95)")
    cols = ("HTML", "PDF WeasyPrint", "PDF Chromium", "Chromium/WeasyPrint")
    head = f"{'plan':34} {'pages':>5} {cols[0]:>15} {cols[1]:>17} {cols[2]:>17} {cols[3]:>20}"
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
        print(f"{r['plan']:34} {r['pages']:>5} {cells[0]:>15} {cells[1]:>17} {cells[2]:>17} {ratio:>20}")
    print(
        "PDF columns: the same HTML to PDF (WeasyPrint in-process; Chromium a fresh headless process per run,"
    )
    print("printing the file:// page, process start included). Runs are interleaved across the three.")


if __name__ == "__main__":
    main()
