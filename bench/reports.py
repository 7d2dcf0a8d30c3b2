"""Report rendering benchmark: the clinician draft as HTML and PDF, side by side in one run.

    python bench/reports.py [--runs 20] [--no-chromium]

Plans: the vignettes (tests/vignettes and tests/heldout) with the smallest and the largest plan
(items + alerts + why-not), printed with the evidence appendix, and the largest without it (the
web form's default PDF). Columns, all from the SAME
HTML and interleaved run by run so that host load hits every column alike:

- HTML: plan -> HTML (Jinja2).
- WeasyPrint, cold: HTML with its inline stylesheet; a new font configuration and stylesheet
  parse every time (what reports/pdf.py did before issue 8).
- WeasyPrint, reused: what reports/pdf.py does now: fonts and the parsed stylesheet made once
  per thread and reused.
- Chromium, fresh: a new headless Debian Chromium process per PDF (--print-to-pdf), as a
  service would spawn it.
- Chromium, running: one headless Chromium kept running (Playwright, Debian's executable);
  each PDF is page.set_content + page.pdf.

Also printed: the page counts of the clinician body (before the appendix), the whole PDF and
the patient summary for every vignette (the targets: body <= 3, whole <= 6, summary <= 2).
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
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import yaml
from pypdf import PdfReader

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from carepath.engine import Engine, load_rulepack, parse_intake_obj  # noqa: E402
from carepath.reports import patient_from_intake, render_html  # noqa: E402
from carepath.reports.pdf import html_to_pdf, render_pdf  # noqa: E402

FIXED = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
)
COLUMNS = ("html", "weasy_cold", "weasy_reused", "chromium_fresh", "chromium_running")
HEADS = ("HTML", "WeasyPrint cold", "WeasyPrint reused", "Chromium fresh", "Chromium running")


def timings(fns: dict[str, Callable[[], Any]], runs: int) -> dict[str, list[float]]:
    """Interleaved: each run times every renderer once, so load on a shared host hits all alike."""
    for fn in fns.values():
        fn()  # warm-up: templates, catalogues, Chromium's disk cache, the reused font configuration
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


def cases(engine: Engine) -> list[tuple[str, Any, Any]]:
    out = []
    for path in sorted((ROOT / "tests" / "vignettes").glob("*.yaml")) + sorted(
        (ROOT / "tests" / "heldout").glob("*.yaml")
    ):
        intake = parse_intake_obj(yaml.safe_load(path.read_text())["intake"])
        out.append((path.stem, engine.evaluate(intake, FIXED), intake))
    return out


def extremes(all_cases: list[tuple[str, Any, Any]]) -> dict[str, tuple[Any, Any, bool]]:
    """The vignettes with the smallest and the largest plan (items + alerts + why-not), with the
    evidence appendix; and the largest without it (the web form's default PDF)."""

    def size(plan: Any) -> int:
        return len(plan.items()) + len(plan.alerts) + len(plan.considered_not_recommended)

    ordered = sorted(all_cases, key=lambda c: (size(c[1]), c[0]))
    (short_name, short, short_in), (long_name, long, long_in) = ordered[0], ordered[-1]
    return {
        f"short {short_name[:18]} +appendix": (short, short_in, True),
        f"long {long_name[:19]} +appendix": (long, long_in, True),
        f"long {long_name[:19]} body only": (long, long_in, False),
    }


def chromium_fresh(html_path: Path, work: Path) -> Callable[[], None]:
    def run() -> None:
        profile = tempfile.mkdtemp(dir=work)
        subprocess.run(
            [CHROMIUM, *CHROMIUM_FLAGS, f"--user-data-dir={profile}", f"--print-to-pdf={work / 'c.pdf'}"]
            + [html_path.as_uri()],
            check=True,
            capture_output=True,
            timeout=120,
        )
        shutil.rmtree(profile, ignore_errors=True)

    return run


@contextmanager
def running_chromium() -> Iterator[Any]:
    """One headless Chromium for the whole run (Playwright driving Debian's executable)."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, headless=True, args=["--no-sandbox"])
        try:
            yield browser.new_page()
        finally:
            browser.close()


def chromium_running(page: Any, html: str) -> Callable[[], None]:
    def run() -> None:
        page.set_content(html, wait_until="load")
        page.pdf(format="A4", print_background=True, prefer_css_page_size=True)

    return run


def page_counts(all_cases: list[tuple[str, Any, Any]], pack: Any) -> list[tuple[str, int, int, int]]:
    from tests.reports.helpers import pdf_pages
    from tests.reports.test_page_limits import body_pages

    rows = []
    for name, plan, intake in all_cases:
        who = patient_from_intake(intake)
        pages = pdf_pages(render_pdf(plan, pack=pack, patient=who, intake=intake))
        summary = pdf_pages(render_pdf(plan, "patient", intake.preferences.language, patient=who))
        rows.append((name, body_pages(pages), len(pages), len(summary)))
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--no-chromium", action="store_true", help="WeasyPrint columns only")
    parser.add_argument("--no-pages", action="store_true", help="skip the page counts of every vignette")
    args = parser.parse_args()
    pack = load_rulepack()
    engine = Engine(pack, "reference")
    all_cases = cases(engine)
    chromium = not args.no_chromium and Path(CHROMIUM).exists()
    rows = []
    with tempfile.TemporaryDirectory() as tmp, _maybe(chromium) as page:
        work = Path(tmp)
        for name, (plan, intake, appendix) in extremes(all_cases).items():
            who = patient_from_intake(intake)
            kw = {"pack": pack, "patient": who, "intake": intake, "appendix": appendix}
            html = render_html(plan, **kw)  # stylesheet inlined
            bare = render_html(plan, embed_css=False, **kw)
            source = work / "report.html"
            source.write_text(html, encoding="utf-8")
            fns: dict[str, Callable[[], Any]] = {
                "html": lambda: render_html(plan, **kw),  # noqa: B023
                "weasy_cold": lambda: html_to_pdf(html, reuse=False),  # noqa: B023
                "weasy_reused": lambda: html_to_pdf(bare),  # noqa: B023
            }
            if chromium:
                fns["chromium_fresh"] = chromium_fresh(source, work)
                fns["chromium_running"] = chromium_running(page, html)
            pages = len(PdfReader(io.BytesIO(html_to_pdf(bare))).pages)
            rows.append({"plan": name, "pages": pages} | timings(fns, args.runs))
    print_table(rows, args.runs)
    if not args.no_pages:
        print_pages(page_counts(all_cases, pack))


@contextmanager
def _maybe(chromium: bool) -> Iterator[Any]:
    if not chromium:
        yield None
        return
    with running_chromium() as page:
        yield page


def print_table(rows: list[dict[str, Any]], runs: int) -> None:
    print(f"carepath clinician PDF, {runs} interleaved runs (ms; median / p95)")
    head = f"{'plan':34} {'pages':>5} " + " ".join(f"{h:>17}" for h in HEADS)
    print(head)
    print("-" * len(head))
    for r in rows:
        cells = [f"{statistics.median(r[k]):7.1f} /{p95(r[k]):7.1f}" if r.get(k) else "n/a" for k in COLUMNS]
        print(f"{r['plan']:34} {r['pages']:>5} " + " ".join(f"{c:>17}" for c in cells))
    print("ratios of medians (how many times slower than WeasyPrint reused):")
    for r in rows:
        base = statistics.median(r["weasy_reused"])
        ratios = [
            f"{h} {statistics.median(r[k]) / base:.2f}x"
            for k, h in zip(COLUMNS, HEADS, strict=True)
            if r.get(k)
        ]
        print(f"  {r['plan']:32} " + " · ".join(ratios))


def print_pages(rows: list[tuple[str, int, int, int]]) -> None:
    body, whole, summary = (max(r[i] for r in rows) for i in (1, 2, 3))
    print(f"\npage counts over {len(rows)} vignettes: clinician body max {body} (target <= 3), whole PDF max")
    print(f"{whole} (target <= 6), patient summary max {summary} (target <= 2)")
    counts: dict[tuple[int, int, int], int] = {}
    for r in rows:
        counts[r[1:]] = counts.get(r[1:], 0) + 1
    for (b, w, s), n in sorted(counts.items()):
        print(f"  body {b}, whole {w}, summary {s}: {n} vignettes")


if __name__ == "__main__":
    main()
