"""The clinician web form in headless Chromium against a real `carepath serve` on loopback."""

from __future__ import annotations

import re

from carepath.api.intake_fields import FIELD_BY_PATH, form_values
from tests.e2e.conftest import PDF_TIMEOUT_MS, LiveServer, sign_in

# A realistic case: 29-year-old woman, daily fentanyl (smoked and injected), in mild-to-moderate
# withdrawal, passive suicidal ideation with depression, hepatitis C, unstable housing, wants
# buprenorphine and outpatient care.
CASE = {
    "assessment_date": "2026-03-02",
    "jurisdiction": "US",
    "patient": {"age": 29, "sex_at_birth": "female", "pregnant": False},
    "stage": "active_use",
    "readiness": "preparation",
    "substance_use": {
        "opioids": ["fentanyl", "heroin"],
        "route": "injection",
        "frequency": "daily",
        "last_use_hours": 14,
        "dsm5_criteria_met": 7,
        "cows_score": 9,
        "physically_dependent": True,
        "benzodiazepines": "none",
        "alcohol": "moderate",
        "stimulants": False,
        "xylazine_exposure": True,
    },
    "history": {"withdrawal_episodes": 2, "outpatient_episodes": 1, "overdoses_last_year": 1},
    "mental_health": {"conditions": ["depression", "anxiety"], "suicidal_ideation": "passive"},
    "medical": {"qtc_ms": 440, "hepatic_impairment": "none", "hcv": True, "hiv": False},
    "social": {
        "housing": "unstable",
        "support_system": "limited",
        "caregiver": True,
        "can_leave_work": False,
    },
    "preferences": {
        "medication": "buprenorphine",
        "setting": "outpatient",
        "goal": "abstinence",
        "language": "en",
    },
}


def fill(page, intake: dict) -> None:
    """Type the intake into the form the way a clinician would: field by field."""
    for path, values in form_values(intake).items():
        spec = FIELD_BY_PATH[path]
        if spec.kind == "bool":
            page.check(f"#{spec.html_id}-{values[0]}")
        elif spec.kind == "multi":
            for v in values:
                page.check(f"#{spec.html_id}-{v}")
        elif spec.kind == "choice":
            page.select_option(f"#{spec.html_id}", values[0])
        else:
            page.fill(f"#{spec.html_id}", values[0])


def plan_count(page, server: LiveServer) -> int:
    r = page.request.get(server.url + "/v1/plans?limit=100&include_superseded=true")
    assert r.status == 200
    return len(r.json()["items"])


def test_form_is_accessible_and_grouped_like_the_contract(page):
    assert page.locator("h1").inner_text() == "New OUD assessment"
    legends = page.locator("fieldset.group > legend").all_inner_texts()
    assert legends[:3] == ["Assessment and patient", "Stage and readiness", "Substance use"]
    assert {"Dual diagnosis (mental health)", "Medical", "Social", "Preferences"} <= set(legends)
    unlabeled = page.evaluate(
        """() => [...document.querySelectorAll('input:not([type=hidden]), select, textarea')]
                 .filter(el => !el.labels || el.labels.length === 0).map(el => el.id || el.name)"""
    )
    assert unlabeled == []
    assert page.locator("script").count() == 0
    assert page.locator("main form[action='/'] input[name=csrf_token]").count() == 1
    # booleans: yes / no / unknown, unknown by default (missing is not "no")
    assert page.is_checked("#f-medical-hiv-unknown")


def test_submit_a_realistic_case_see_the_plan_open_reports_and_record_a_decision(
    page, live_server, screenshot_dir
):
    before = plan_count(page, live_server)
    page.goto(live_server.url + "/")
    fill(page, CASE)
    page.fill("#f-medical-interacting_medications", "efavirenz, rifampicin")
    page.screenshot(path=str(screenshot_dir / "web-form.png"), full_page=True)

    with page.expect_navigation():
        page.click("#submit-intake")
    assert re.search(r"/plans/pl_[A-Za-z0-9_-]{22}$", page.url), page.url
    assert plan_count(page, live_server) == before + 1
    assert "DRAFT - requires clinician review" in page.locator(".status-banner").inner_text()
    assert page.locator("#level-of-care .loc-label").inner_text().strip()
    assert page.locator(".alert").count() >= 1
    assert page.locator("article.item").count() >= 3
    assert page.locator("article.item[data-code^='hr.']").first.is_visible()

    pdf_href = page.get_attribute("form:has(#link-pdf)", "action")
    pdf = page.request.get(live_server.url + pdf_href, timeout=PDF_TIMEOUT_MS)
    assert pdf.status == 200
    assert pdf.headers["content-type"].startswith("application/pdf")
    assert pdf.body()[:5] == b"%PDF-"
    html = page.request.get(live_server.url + page.get_attribute("#link-html", "href"))
    assert html.status == 200 and "text/html" in html.headers["content-type"]
    assert page.get_attribute("form:has(#link-patient) input[name=audience]", "value") == "patient"
    assert page.locator("#ps-language option").all_inner_texts() == ["English", "Spanish", "German"]
    fhir = page.request.get(live_server.url + page.get_attribute("#link-fhir", "href"))
    assert fhir.status == 200 and fhir.json()["resourceType"] == "Bundle"

    item = page.locator("article.item[data-code='hr.naloxone']").first
    item.locator("details.change > summary").click()
    item.locator("input[name=action][value=modify]").check()
    item.locator("textarea[name=replacement_text]").fill(
        "Naloxone: patient already carries two kits; check expiry."
    )
    item.locator("textarea[name=reason]").fill(
        "Patient already carries two naloxone kits from the syringe service."
    )
    with page.expect_navigation():
        item.locator("button[id^=record-]").click()
    assert "recorded=1" in page.url
    assert "recorded" in page.locator(".flash").inner_text()
    line = page.locator("article.item[data-code='hr.naloxone']").first
    assert "check expiry" in line.inner_text()
    assert "Patient already carries two naloxone kits" in line.locator(".reason").inner_text()
    assert "modified" in line.locator(".decision").inner_text().lower()


def test_decline_without_reason_is_refused_next_to_the_reason(page, live_server):
    page.goto(live_server.url + "/")
    fill(page, {"assessment_date": "2026-03-02", "patient": {"age": 41}, "stage": "active_use"})
    with page.expect_navigation():
        page.click("#submit-intake")
    item = page.locator("article.item").first
    item.locator("details.change > summary").click()
    item.locator("input[name=action][value=decline]").check()
    with page.expect_navigation():
        item.locator("button[id^=record-]").click()
    error = page.locator(".decision-form .field-error")
    assert error.count() == 1 and "reason" in error.inner_text().lower()
    assert page.locator(".reason").count() == 0


def test_invalid_form_shows_the_error_next_to_the_field_and_stores_nothing(page, live_server):
    before = plan_count(page, live_server)
    page.goto(live_server.url + "/")
    fill(page, {**CASE, "patient": {"age": 8, "sex_at_birth": "female", "name": "<b>Zed</b> Canary-4471"}})
    with page.expect_navigation() as nav:
        page.click("#submit-intake")
    assert nav.value.status == 422
    age_field = page.locator(".field", has=page.locator("#f-patient-age"))
    error = age_field.locator("#err-patient-age")
    assert error.is_visible()
    assert "at least 12" in error.inner_text()
    assert "8" not in error.inner_text()
    assert "err-patient-age" in page.get_attribute("#f-patient-age", "aria-describedby")
    assert page.get_attribute("#f-patient-age", "aria-invalid") == "true"
    assert page.locator(".error-summary a[href='#f-patient-age']").count() == 1
    # the clinician's own input comes back, escaped (no markup), and other answers are kept
    assert page.input_value("#f-patient-name") == "<b>Zed</b> Canary-4471"
    assert page.locator("b", has_text="Zed").count() == 0
    assert page.is_checked("#f-substance_use-opioids-fentanyl")
    assert plan_count(page, live_server) == before
    assert "Canary-4471" not in live_server.logs()


def test_csp_and_security_headers_on_the_form(page, live_server):
    r = page.request.get(live_server.url + "/")
    csp = r.headers["content-security-policy"]
    assert "default-src 'self'" in csp and "unsafe-inline" not in csp
    assert r.headers["x-content-type-options"] == "nosniff"
    assert "no-store" in r.headers["cache-control"]


def test_the_form_works_without_javascript(browser, live_server):
    context = browser.new_context(java_script_enabled=False)
    page = context.new_page()
    try:
        sign_in(page, live_server)
        fill(page, {"assessment_date": "2026-03-02", "patient": {"age": 52}, "stage": "in_treatment"})
        page.select_option("#f-current_treatment-moud", "methadone")
        page.fill("#f-current_treatment-dose_mg", "80")
        with page.expect_navigation():
            page.click("#submit-intake")
        assert "/plans/pl_" in page.url
        assert page.locator("#level-of-care").is_visible()
        assert page.locator("#f-current_treatment-moud").count() == 0
    finally:
        context.close()
