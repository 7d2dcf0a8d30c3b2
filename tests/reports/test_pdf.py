"""PDF read back: every page carries the notice, the draft mark and the ruleset hash;
metadata carries no patient data; the appendix holds every citation; async rendering."""

from __future__ import annotations

import asyncio
import io
from concurrent.futures import ThreadPoolExecutor

import pytest
from pypdf import PdfReader

from carepath.reports.notices import CONFIDENTIALITY, PART2_NOTICE
from carepath.reports.pdf import AssetOnlyFetcher, RefusedURL, html_to_pdf, render_pdf, render_pdf_async
from tests.reports.helpers import pdf_pages, squash


@pytest.fixture(scope="module")
def long_pdf(rich_plan, pack, patient):
    return render_pdf(rich_plan, pack=pack, patient=patient)


@pytest.fixture(scope="module")
def short_pdf(short_plan, pack, example_patient):
    return render_pdf(short_plan, pack=pack, patient=example_patient)


@pytest.mark.parametrize("which", ["long_pdf", "short_pdf"])
def test_every_page_has_notice_draft_mark_hash_and_page_number(which, request, rich_plan, short_plan):
    pdf = request.getfixturevalue(which)
    plan = rich_plan if which == "long_pdf" else short_plan
    pages = pdf_pages(pdf)
    assert len(pages) >= 2
    for n, text in enumerate(pages, start=1):
        flat = squash(text)
        assert squash(CONFIDENTIALITY["US"].short) in flat, f"page {n} lacks the short Part 2 notice"
        assert "DRAFT-requiresclinicianreview" in flat, f"page {n} lacks the draft mark"
        assert plan.ruleset.sha256 in flat, f"page {n} lacks the ruleset hash"
        assert f"Page{n}of{len(pages)}" in flat, f"page {n} lacks 'page X of Y'"
    assert squash(" ".join(pages)).count(squash(PART2_NOTICE)) == 1, "the full notice prints once"


def test_signed_pdf_says_signed_by_and_the_content_hash_on_every_page(rich_plan, pack, patient):
    from datetime import UTC, datetime

    from carepath.reports.record import Recorded, Signature

    at = datetime(2026, 3, 2, 15, 30, tzinfo=UTC)
    sig = Signature("dr@clinic.example", "Dr Ana Ruiz", "MD", at, "cd" * 32)
    rec = Recorded(rich_plan.plan_id, 1, "dr@clinic.example", at, signature=sig)
    pages = pdf_pages(render_pdf(rich_plan, pack=pack, patient=patient, recorded=rec))
    for n, text in enumerate(pages, start=1):
        flat = squash(text)
        assert "SignedbyDrAnaRuiz,MD" in flat and "cd" * 32 in flat, f"page {n}"
        assert "DRAFT" not in flat, f"page {n} still says DRAFT"
    summary = pdf_pages(render_pdf(rich_plan, "patient", "en", patient=patient, recorded=rec))
    assert all("DRAFT" not in squash(p) for p in summary) and "DrAnaRuiz" in squash(summary[0])


def test_patient_summary_pages_are_marked_draft(rich_plan, patient):
    pages = pdf_pages(render_pdf(rich_plan, "patient", "es", patient=patient))
    for n, text in enumerate(pages, start=1):
        flat = squash(text)
        assert "BORRADOR" in flat and f"Página{n}de{len(pages)}" in flat


def test_every_citation_in_the_pdf_appendix(long_pdf, rich_plan):
    pages = pdf_pages(long_pdf)
    start = next(i for i, p in enumerate(pages) if "Evidenceappendix" in squash(p))
    appendix = squash(" ".join(pages[start:]))
    assert appendix
    for entry in [*rich_plan.items(), *rich_plan.alerts]:
        for c in entry.citations:
            assert squash(c.title) in appendix and squash(c.locator) in appendix


@pytest.mark.parametrize("audience", ["clinician", "patient"])
def test_metadata_and_outline_carry_no_patient_data(audience, rich_plan, pack, patient):
    reader = PdfReader(io.BytesIO(render_pdf(rich_plan, audience, pack=pack, patient=patient)))
    meta = {k: str(v) for k, v in (reader.metadata or {}).items()}
    assert meta.get("/Title") == "carepath care-plan draft"
    blob = repr(meta) + repr(reader.outline) + repr(reader.xmp_metadata)
    for value in (patient["name"], patient["id"], "Testpatient", "MRN"):
        assert value not in blob


def test_patient_identifiers_are_on_the_page(long_pdf, patient):
    first = pdf_pages(long_pdf)[0]
    assert patient["id"] in first and "Testpatient" in first


def test_async_render_leaves_the_event_loop_free(rich_plan, pack, patient):
    async def main() -> tuple[bytes, int]:
        ticks = 0

        async def ticker() -> None:
            nonlocal ticks
            while True:
                await asyncio.sleep(0.005)
                ticks += 1

        task = asyncio.create_task(ticker())
        pdf = await render_pdf_async(rich_plan, pack=pack, patient=patient)
        task.cancel()
        return pdf, ticks

    # A thread of its own: the browser tests (Playwright's sync API) leave an event loop
    # running in the main thread, where asyncio.run() refuses to start.
    with ThreadPoolExecutor(max_workers=1) as pool:
        pdf, ticks = pool.submit(asyncio.run, main()).result()
    assert pdf.startswith(b"%PDF") and ticks > 5


def test_fetcher_serves_packaged_assets_only():
    fetcher = AssetOnlyFetcher()
    assert b"DejaVu Sans" in fetcher.fetch("carepath-asset:report.css").read()
    for url in (
        "file:///etc/passwd",
        "http://127.0.0.1:9/x",
        "https://example.org/x.css",
        "data:text/css,body{}",
        "carepath-asset:../pdf.py",
        "carepath-asset:/../../etc/passwd",
        "carepath-asset:",
        "ftp://example.org/x",
        "//example.org/x",
        "report.css",
    ):
        with pytest.raises(RefusedURL):
            fetcher.fetch(url)
    with pytest.raises(RefusedURL):
        fetcher.open("http://127.0.0.1:9/")


def test_local_files_are_never_embedded():
    hostile = """<html><head><link rel="stylesheet" href="file:///etc/passwd">
      <link rel="attachment" href="file:///etc/passwd">
      <style>@import url(file:///etc/passwd); body { background: url(file:///etc/passwd) }</style></head>
      <body><img src="file:///etc/passwd"><object data="file:///etc/passwd"></object>
      <a rel="attachment" href="file:///etc/passwd">x</a><embed src="/etc/passwd">
      <svg><image href="file:///etc/passwd"/></svg><iframe src="file:///etc/passwd"></iframe></body></html>"""
    fetcher = AssetOnlyFetcher()
    pdf = html_to_pdf(hostile, fetcher)
    assert b"root:" not in pdf and b"/bin/" not in pdf and b"EmbeddedFile" not in pdf
    assert fetcher.refused >= 3
