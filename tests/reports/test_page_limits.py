"""Length targets over every vignette (tests/vignettes and tests/heldout), on the real PDFs:

- clinician draft: the body (everything before the evidence appendix) at most 3 pages, the
  whole PDF (appendix printed) at most 6;
- page 1 names the level of care, the medication decision and the next visit (the summary
  first: what a clinician needs in a 15-minute visit);
- patient summary at most 2 pages.

Page counts come from the PDF itself (poppler's pdftotext, one text per page).
"""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from carepath.engine import parse_intake_obj
from carepath.reports import patient_from_intake
from carepath.reports.pdf import render_pdf
from carepath.reports.summary import next_visit
from tests.conftest import FIXED_TIME
from tests.reports.helpers import pdf_pages, squash

ROOT = Path(__file__).resolve().parents[2]
CASES = sorted((ROOT / "tests" / "vignettes").glob("*.yaml")) + sorted(
    (ROOT / "tests" / "heldout").glob("*.yaml")
)
BODY_MAX, TOTAL_MAX, PATIENT_MAX = 3, 6, 2


def body_pages(pages: list[str]) -> int:
    """Pages before the one where the evidence appendix starts (it always starts a page)."""
    return next((n for n, text in enumerate(pages) if "Evidenceappendix" in squash(text)), len(pages))


def _case(path: Path, engine):
    intake = parse_intake_obj(yaml.safe_load(path.read_text(encoding="utf-8"))["intake"])
    return engine.evaluate(intake, FIXED_TIME), intake


@pytest.mark.parametrize("path", CASES, ids=[p.stem[:40] for p in CASES])
def test_clinician_pdf_fits_and_page_one_says_what_to_do(path: Path, engine, pack) -> None:
    plan, intake = _case(path, engine)
    pages = pdf_pages(render_pdf(plan, pack=pack, patient=patient_from_intake(intake), intake=intake))
    body = body_pages(pages)
    assert body < len(pages), "the evidence appendix is missing"
    assert body <= BODY_MAX, f"body is {body} pages (at most {BODY_MAX})"
    assert len(pages) <= TOTAL_MAX, f"the PDF is {len(pages)} pages (at most {TOTAL_MAX})"
    first = squash(pages[0])
    assert squash(plan.level_of_care.label) in first, "page 1 lacks the level of care"
    assert "Medicationdecision" in first and "Status" in first, "page 1 lacks the medication decision"
    visit = next_visit(plan)
    assert visit is not None and "Nextvisit" in first and visit.on.isoformat() in first, (
        "page 1 lacks the next visit"
    )


@pytest.mark.parametrize("path", CASES, ids=[p.stem[:40] for p in CASES])
def test_patient_summary_fits_on_two_pages(path: Path, engine, pack) -> None:
    plan, intake = _case(path, engine)
    who = patient_from_intake(intake)
    pages = pdf_pages(render_pdf(plan, "patient", intake.preferences.language, pack=pack, patient=who))
    assert len(pages) <= PATIENT_MAX, f"the patient summary is {len(pages)} pages"
