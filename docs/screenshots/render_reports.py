"""Refresh the report screenshots in this folder: PDFs rendered by carepath, pages turned into
PNGs by poppler's pdftoppm (60 dpi), picked by what they show.

    python docs/screenshots/render_reports.py

Long plan: vignette 11 (pregnant, fentanyl, requests naltrexone) with an invented name and MRN;
short plan: examples/intake-fentanyl.json. Patient summaries: vignette 11 in en, es and de.
The web-form screenshots come from the browser tests (CAREPATH_UPDATE_SCREENSHOTS=1).
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
from datetime import UTC, datetime
from pathlib import Path

import yaml
from pypdf import PdfReader

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
sys.path.insert(0, str(ROOT))

from carepath.engine import Engine, load_rulepack, parse_intake_obj  # noqa: E402
from carepath.reports import patient_from_intake  # noqa: E402
from carepath.reports.pdf import render_pdf  # noqa: E402

STAMP = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)
INVENTED = {"name": "Jane Example", "id": "MRN-000123"}


def _intake(path: Path, **patient: str) -> dict:
    raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    intake = raw.get("intake", raw)
    intake["patient"] = {**intake["patient"], **patient}
    return intake


def _pdf(engine: Engine, intake: dict, audience: str = "clinician", language: str | None = None) -> bytes:
    parsed = parse_intake_obj(intake)
    plan = engine.evaluate(parsed, STAMP)
    who = patient_from_intake(parsed)
    return render_pdf(plan, audience, language, pack=engine.pack, patient=who, intake=parsed)


def _page_with(pdf: Path, text: str) -> int:
    for n, page in enumerate(PdfReader(pdf).pages, start=1):
        if text in " ".join((page.extract_text() or "").split()):
            return n
    raise SystemExit(f"no page of {pdf.name} shows {text!r}")


def _png(pdf: Path, page: int, name: str) -> None:
    stem = HERE / name
    pages = ["-f", str(page), "-l", str(page), "-singlefile"]
    subprocess.run(["pdftoppm", "-png", "-r", "60", *pages, str(pdf), str(stem)], check=True)
    print(f"{stem.with_suffix('.png').relative_to(ROOT)}  (page {page})")


def main() -> None:
    engine = Engine(load_rulepack(), "durable")
    long_vignette = ROOT / "tests/vignettes/11-pregnant-fentanyl-requests-naltrexone.yaml"
    long_intake = _intake(long_vignette, **INVENTED)
    short_intake = json.loads((ROOT / "examples/intake-fentanyl.json").read_text(encoding="utf-8"))
    with tempfile.TemporaryDirectory() as tmp:
        long_pdf, short_pdf = Path(tmp, "long.pdf"), Path(tmp, "short.pdf")
        long_pdf.write_bytes(_pdf(engine, long_intake))
        short_pdf.write_bytes(_pdf(engine, short_intake))
        _png(long_pdf, 1, "report-long-p1")
        _png(long_pdf, 2, "report-long-p2")
        for heading, name in (
            ("Clinician review and signature", "report-long-schedule-signature"),
            ("Evidence appendix", "report-long-appendix"),
        ):
            _png(long_pdf, _page_with(long_pdf, heading), name)
        _png(short_pdf, 1, "report-short-p1")
        for language in ("en", "es", "de"):
            summary = Path(tmp, f"patient-{language}.pdf")
            summary.write_bytes(_pdf(engine, long_intake, "patient", language))
            _png(summary, 1, f"patient-summary-{language}-p1")


if __name__ == "__main__":
    main()
