"""The plan a clinician signs, end to end in headless Chromium against `carepath serve`:
create -> decline one line with a reason, modify a dose -> sign -> the PDF (rendered to PNG with
pdftoppm, text extracted with pdftotext) shows the signature, the declined line and the new dose;
the patient summary reflects them. Screenshots go to docs/screenshots when
CAREPATH_UPDATE_SCREENSHOTS=1."""

from __future__ import annotations

import copy
import re
import shutil
import subprocess
from pathlib import Path

from tests.e2e.conftest import PDF_TIMEOUT_MS
from tests.e2e.test_web_form import CASE, fill, plan_count
from tests.reports.helpers import pdf_pages, squash

DOSE = "2 mg sublingual, repeat 2 mg every 2 h to 8 mg on day 1 (home start)"
DECLINE_REASON = "Already attends a weekly group at the syringe service."
PATIENT = {"name": "Rosa Example", "id": "MRN-E2E-5521"}


def _render_png(pdf: bytes, out: Path, stem: str) -> list[Path]:
    """pdftoppm -png -r 60, as the reviewers look at the PDFs."""
    tool = shutil.which("pdftoppm")
    assert tool, "pdftoppm is missing (poppler-utils, .ci/apt.txt)"
    source = out / f"{stem}.pdf"
    source.write_bytes(pdf)
    subprocess.run([tool, "-png", "-r", "60", str(source), str(out / stem)], check=True)
    return sorted(out.glob(f"{stem}-*.png"))


def _line(page, code: str):
    return page.locator(f"article.item[data-code='{code}']").first


def _decide(page, code: str, **fields: str) -> None:
    line = _line(page, code)
    line.locator("details.change > summary").click()
    line.locator(f"input[name=action][value={fields.pop('action')}]").check()
    for name, value in fields.items():
        line.locator(f"[name={name}]").fill(value)
    with page.expect_navigation():
        line.locator("button[id^=record-]").click()
    assert "recorded=1" in page.url, page.url


def test_create_decide_sign_then_the_pdf_and_summary_carry_the_decisions(
    page, live_server, screenshot_dir, tmp_path
):
    case = copy.deepcopy(CASE)
    case["patient"].update(PATIENT)
    page.goto(live_server.url + "/")
    fill(page, case)
    with page.expect_navigation():
        page.click("#submit-intake")
    plan_url = page.url
    assert re.search(r"/plans/pl_[A-Za-z0-9_-]{22}$", plan_url)

    # who the patient is, and the summary first
    assert page.locator("#patient-title").inner_text() == PATIENT["name"]
    assert PATIENT["id"] in page.locator(".who-line").inner_text()
    assert page.locator(".status-banner.draft").is_visible()
    assert page.locator("#level-of-care .loc-label").inner_text().strip()
    page.screenshot(path=str(screenshot_dir / "web-plan.png"), full_page=False)

    declined_code = page.locator("article.item[data-code^='psy.']").first.get_attribute("data-code")
    declined_text = _line(page, declined_code).locator(".text").inner_text()
    _decide(page, declined_code, action="decline", reason=DECLINE_REASON)
    _decide(page, "moud.buprenorphine", action="modify", dose=DOSE, reason="Home start agreed; night shifts.")
    assert "declined" in _line(page, declined_code).locator(".decision").inner_text().lower()
    assert DOSE in _line(page, "moud.buprenorphine").inner_text()
    _line(page, "moud.buprenorphine").scroll_into_view_if_needed()
    page.screenshot(path=str(screenshot_dir / "web-plan-decisions.png"), full_page=False)

    # sign: name, credentials, attestation
    page.fill("#sign-name", "Dr Ana Ruiz")
    page.fill("#sign-credentials", "MD, addiction medicine")
    page.check("#sign-attest")
    with page.expect_navigation():
        page.click("#sign-plan")
    assert "done=signed" in page.url
    banner = page.locator(".status-banner.signed").inner_text()
    assert "Signed by Dr Ana Ruiz, MD, addiction medicine" in banner
    assert page.locator(".decide").count() == 0  # a signed version takes no more decisions
    page.screenshot(path=str(screenshot_dir / "web-plan-signed.png"), full_page=False)

    # the clinician PDF: signature on every page, the declined line, the new dose
    pdf_url = page.get_attribute("form:has(#link-pdf)", "action")
    pdf = page.request.get(live_server.url + pdf_url + "?appendix=true", timeout=PDF_TIMEOUT_MS)
    assert pdf.status == 200 and pdf.headers["content-type"].startswith("application/pdf")
    pages = pdf_pages(pdf.body())
    signed_hash = re.search(r"[0-9a-f]{64}", page.locator(".signoff .mono").inner_text()).group(0)
    for n, text in enumerate(pages, start=1):
        flat = squash(text)
        assert "SignedbyDrAnaRuiz" in flat, f"page {n} lacks the signature line"
        assert signed_hash in flat, f"page {n} lacks the signed-content hash"
        assert "DRAFT-requiresclinicianreview" not in flat
    body = squash(" ".join(pages))
    assert squash(DOSE) in body
    assert squash(DECLINE_REASON) in body and squash(declined_text) in body
    first = squash(pages[0])
    assert squash(PATIENT["name"]) in first and PATIENT["id"] in first
    pngs = _render_png(pdf.body(), tmp_path, "clinician")
    assert len(pngs) == len(pages) and all(p.stat().st_size > 5_000 for p in pngs)
    shutil.copy(pngs[0], screenshot_dir / "signed-pdf-p1.png")

    # the patient summary, in Spanish, from the signed plan: no DRAFT, the dose, not the declined line
    summary = page.request.get(
        f"{live_server.url}{pdf_url}?audience=patient&language=es", timeout=PDF_TIMEOUT_MS
    )
    assert summary.status == 200
    spages = pdf_pages(summary.body())
    assert len(spages) <= 2
    stext = squash(" ".join(spages))
    assert "BORRADOR" not in stext and squash(DOSE) in stext and "DrAnaRuiz" in stext
    shutil.copy(
        _render_png(summary.body(), tmp_path, "summary")[0], screenshot_dir / "signed-summary-es-p1.png"
    )

    # the worklist shows it signed, with the patient
    page.goto(live_server.url + "/plans")
    row = page.locator("table.worklist tr", has_text=PATIENT["name"]).first
    assert "signed" in row.inner_text().lower() and PATIENT["id"] in row.inner_text()
    page.fill("#wl-patient", "rosa example")  # whole words: the patient index is sealed
    with page.expect_navigation():
        page.click("form[role=search] button[type=submit]")
    assert "rosa" not in page.url.lower()  # patient data never in the URL
    assert page.locator("table.worklist tbody tr").count() == 1
    page.screenshot(path=str(screenshot_dir / "web-worklist.png"), full_page=False)


def test_enter_in_a_text_field_never_stores_a_plan(page, live_server):
    before = plan_count(page, live_server)
    page.goto(live_server.url + "/")
    page.fill("#f-patient-age", "40")
    page.fill("#f-patient-name", "Enter Test")
    page.press("#f-patient-name", "Enter")
    page.press("#f-patient-age", "Enter")
    page.wait_for_timeout(500)
    assert page.url.rstrip("/") == live_server.url
    assert plan_count(page, live_server) == before


def test_none_for_current_medication_and_missing_rows_answered_from_the_plan(page, live_server):
    page.goto(live_server.url + "/")
    fill(page, {"assessment_date": CASE["assessment_date"], "patient": {"age": 33}, "stage": "active_use"})
    page.select_option("#f-current_treatment-moud", "none")
    with page.expect_navigation():
        page.click("#submit-intake")
    labels = page.locator("#missing table td:first-child").all_inner_texts()
    assert "Current MOUD" not in labels  # "None" is an answer, not "not recorded"
    assert page.locator(".incomplete").is_visible()  # severity, dependence... unknown

    row = page.locator("#missing tr", has_text="Days since release").first
    row.locator("select, input[type=checkbox]").first.evaluate(
        "el => el.tagName === 'SELECT' ? (el.value = 'not_applicable') : (el.checked = true)"
    )
    with page.expect_navigation():
        row.locator("button.button").click()
    assert "done=marked" in page.url
    assert page.locator("#missing tr", has_text="Days since release").count() == 0
    assert "Days since release" in page.locator("#missing").inner_text()  # listed as marked N/A

    version = page.url
    row = page.locator("#missing tr", has_text="HIV").first
    row.locator("select").select_option("no")
    with page.expect_navigation():
        row.locator("button.button").click()
    assert "done=answered" in page.url and page.url.split("?")[0] != version.split("?")[0]
    assert page.locator("#missing tr", has_text="HIV").count() == 0
    assert "Days since release" in page.locator("#missing").inner_text()  # the N/A mark carried over


def test_mobile_390_has_no_horizontal_overflow_and_print_keeps_badges(browser, live_server):
    from tests.e2e.conftest import sign_in

    context = browser.new_context(viewport={"width": 390, "height": 844})
    page = context.new_page()
    try:
        sign_in(page, live_server, "/plans")
        page.goto(live_server.url + "/")
        fill(page, CASE)
        with page.expect_navigation():
            page.click("#submit-intake")
        plan_url = page.url
        for path in (plan_url, live_server.url + "/plans", live_server.url + "/"):
            page.goto(path)
            width = page.evaluate("() => document.documentElement.scrollWidth")
            assert width <= 390, (path, width)
        page.goto(plan_url)
        page.emulate_media(media="print")
        adjust = page.evaluate("() => getComputedStyle(document.querySelector('.kind')).printColorAdjust")
        assert adjust == "exact"
        assert page.locator(".decide").first.is_hidden()
    finally:
        context.close()
