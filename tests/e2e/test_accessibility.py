"""axe-core (pinned, from npm: .ci/services.d/axe.sh exports CAREPATH_AXE_JS) on every page of the
web form and the HTML reports, at 1280 px and at 390 px (a phone): no serious or critical
violation. The pages' CSP forbids injected scripts, so the test context bypasses CSP."""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest

from tests.e2e.conftest import EMAIL, PASSWORD, LiveServer, _need
from tests.e2e.test_web_form import CASE, fill

WIDTHS = (1280, 390)
BLOCKING = ("serious", "critical")


@pytest.fixture(scope="module")
def axe_js() -> str:
    path = os.environ.get("CAREPATH_AXE_JS", "")
    _need(
        bool(path) and Path(path).is_file(),
        "axe-core not found: source .ci/services.d/axe.sh (CAREPATH_AXE_JS)",
    )
    return Path(path).read_text(encoding="utf-8")


def _violations(page, axe_js: str) -> list[dict]:
    page.add_script_tag(content=axe_js)
    return page.evaluate(
        """async () => (await axe.run(document, {resultTypes: ['violations']})).violations.map(v => ({
            id: v.id, impact: v.impact, help: v.help,
            nodes: v.nodes.slice(0, 3).map(n => n.target.join(' '))}))"""
    )


def _sign_in(page, server: LiveServer) -> None:
    page.goto(server.url + "/login")
    page.fill("#email", EMAIL)
    page.fill("#password", PASSWORD)
    with page.expect_navigation():
        page.click("button[type=submit]")


@pytest.fixture(scope="module")
def plans(browser, live_server) -> dict[str, str]:
    """A draft plan and a signed plan to look at."""
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    page = context.new_page()
    page.set_default_timeout(60_000)
    try:
        _sign_in(page, live_server)
        urls = {}
        for key in ("draft", "signed"):
            page.goto(live_server.url + "/")
            fill(page, {**CASE, "patient": {**CASE["patient"], "name": "Axe Patient", "id": "MRN-AXE-1"}})
            with page.expect_navigation():
                page.click("#submit-intake")
            urls[key] = page.url
        page.fill("#sign-name", "Dr Axe")
        page.check("#sign-attest")
        with page.expect_navigation():
            page.click("#sign-plan")
        return urls
    finally:
        context.close()


def _pages(server: LiveServer, plans: dict[str, str]) -> dict[str, str]:
    draft_id = plans["draft"].rsplit("/", 1)[-1]
    return {
        "form": "/",
        "form with errors": "/?errors",
        "worklist": "/plans",
        "plan (draft, details open)": plans["draft"].removeprefix(server.url),
        "plan (signed)": plans["signed"].removeprefix(server.url),
        "correct intake": f"/plans/{draft_id}/edit",
        "clinician report": f"/v1/plans/{draft_id}/report.html",
        "patient summary": f"/v1/plans/{draft_id}/report.html?audience=patient",
    }


@pytest.mark.parametrize("width", WIDTHS)
def test_no_serious_or_critical_violation_on_any_page(browser, live_server, plans, axe_js, width):
    context = browser.new_context(viewport={"width": width, "height": 900}, bypass_csp=True)
    page = context.new_page()
    page.set_default_timeout(60_000)
    found: dict[str, list[dict]] = {}
    try:
        page.goto(live_server.url + "/login")
        found["login"] = _violations(page, axe_js)
        _sign_in(page, live_server)
        for name, path in _pages(live_server, plans).items():
            if name == "form with errors":
                page.goto(live_server.url + "/")
                page.fill("#f-patient-age", "8")
                with page.expect_navigation():
                    page.click("#submit-intake")
            else:
                page.goto(live_server.url + path)
            if "details open" in name:
                page.evaluate("() => document.querySelectorAll('details').forEach(d => d.open = true)")
            found[name] = _violations(page, axe_js)
    finally:
        context.close()
    blocking = {name: [v for v in vs if v["impact"] in BLOCKING] for name, vs in found.items() if vs}
    blocking = {k: v for k, v in blocking.items() if v}
    assert not blocking, f"axe at {width}px: {blocking}"
    assert set(found) >= {"login", "form", "worklist", "plan (signed)", "patient summary"}
    assert all(re.match(r"^[\w ,()]+$", name) for name in found)
