"""XSS / template injection: every free-text field, every payload, both audiences.

Each payload is planted in every string the report prints (patient identifiers, item texts,
rationales, alerts, citations, rule ids, why-not reasons, missing information, triggering
facts and their names, ruleset provenance). The HTML must keep exactly the element structure
of a clean render and show the payload as text; the PDF must show it as text; a loopback
canary server must receive no request from any rendering.
"""

from __future__ import annotations

import http.server
import re
import shutil
import subprocess
import tempfile
import threading
import unicodedata
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from carepath.engine import CarePlan
from carepath.reports import render_html
from carepath.reports.pdf import render_pdf
from tests.reports.helpers import pdf_pages, shape, visible_text
from tests.reports.payloads import PAYLOADS
from tests.reports.plans import PATIENT, long_plan_dict

STRUCTURAL = {"kind", "severity", "phase", "impact", "assessment_date", "generated_at", "effective_date"}
CODE_KEYS = {"code"}


def plant(value: Any, text: str, keep_codes: bool, key: str = "") -> Any:
    """Replace every free-text string (and dict key of triggering facts) with ``text``."""
    if isinstance(value, dict):
        out = {}
        for k, v in value.items():
            new_key = f"{text}{len(out)}" if key == "triggered_by" else k
            out[new_key] = plant(v, text, keep_codes, k)
        return out
    if isinstance(value, list):
        return [plant(v, text, keep_codes, key) for v in value]
    if isinstance(value, str):
        if key in STRUCTURAL or (keep_codes and key in CODE_KEYS):
            return value
        return text
    return value


def hostile_plan(text: str, keep_codes: bool) -> CarePlan:
    return CarePlan.model_validate(plant(long_plan_dict(), text, keep_codes))


def hostile_patient(text: str, keep_codes: bool) -> dict[str, Any]:
    pref = PATIENT["medication_preference"] if keep_codes else text
    return {"id": text, "name": text, "age": 40, "sex_at_birth": text, "medication_preference": pref}


class Canary(http.server.BaseHTTPRequestHandler):
    hits: list[str] = []

    def do_GET(self) -> None:  # noqa: N802
        Canary.hits.append(self.path)
        self.send_response(200)
        self.end_headers()

    do_POST = do_HEAD = do_GET

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture(scope="module")
def canary():
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Canary)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    base = f"http://127.0.0.1:{server.server_address[1]}"
    urllib.request.urlopen(base + "/control").read()  # the canary does hear requests
    assert Canary.hits == ["/control"]
    Canary.hits.clear()
    yield base
    server.shutdown()
    assert Canary.hits == [], f"renderers fetched {Canary.hits}"


@pytest.fixture(scope="module")
def payloads(canary):
    return [p.replace("{canary}", canary) for p in PAYLOADS]


def test_there_are_at_least_50_payloads():
    assert len(PAYLOADS) >= 50


def _normal(text: str) -> str:
    """What a reader sees: no control, format (zero-width, bidi) or whitespace characters."""
    text = unicodedata.normalize("NFKC", text)
    drop = ("C", "Z")
    return "".join(
        c for c in text if unicodedata.category(c)[0] not in drop and not c.isspace() and c != "\ufffd"
    )


def _assert_safe(html: str, clean: str, payload: str) -> None:
    got, want = shape(html), shape(clean)
    assert got.tags == want.tags, "element structure changed"
    assert not [t for t, _ in got.tags if t == "script"]
    assert not [a for _, a, _ in got.attrs if a.lower().startswith("on")]
    assert {v for _, a, v in got.attrs if a == "href"} <= {v for _, a, v in want.attrs if a == "href"}
    assert _normal(payload) in _normal(" ".join(got.text))


@pytest.mark.parametrize("keep_codes", [True, False], ids=["codes-kept", "codes-planted"])
@pytest.mark.parametrize("audience", ["clinician", "patient"])
def test_payloads_are_literal_text_in_html(payloads, audience, keep_codes, pack, canary):
    clean_plan = hostile_plan("plain text", keep_codes)
    clean = render_html(clean_plan, audience, pack=pack, patient=hostile_patient("plain text", keep_codes))
    for payload in payloads:
        plan = hostile_plan(payload, keep_codes)
        html = render_html(plan, audience, pack=pack, patient=hostile_patient(payload, keep_codes))
        try:
            _assert_safe(html, clean, payload)
        except AssertionError as exc:
            raise AssertionError(f"payload {payload!r}: {exc}") from None


def _cycling_plan(payloads: list[str]) -> tuple[CarePlan, list[str]]:
    """One plan in which each field gets the next payload, so one PDF carries them all."""
    it = iter(range(10**6))

    def walk(value: Any, key: str = "") -> Any:
        if isinstance(value, dict):
            return {
                (payloads[next(it) % len(payloads)] if key == "triggered_by" else k): walk(v, k)
                for k, v in value.items()
            }
        if isinstance(value, list):
            return [walk(v, key) for v in value]
        if isinstance(value, str) and key not in STRUCTURAL | CODE_KEYS:
            return payloads[next(it) % len(payloads)]
        return value

    data = long_plan_dict()
    trace = data.pop("trace")  # never printed
    plan = CarePlan.model_validate({**walk(data), "trace": trace})
    return plan, payloads


@pytest.mark.parametrize("audience", ["clinician", "patient"])
def test_payloads_are_literal_text_in_pdf(payloads, audience, pack, canary):
    """Whatever payload the HTML shows as text, the PDF shows as text too."""
    plan, used = _cycling_plan(payloads)
    assert len(used) == len(payloads)
    for start in range(0, len(payloads), 20):
        batch = payloads[start : start + 20]
        who = {"id": batch[0], "name": " | ".join(batch), "age": 40, "sex_at_birth": "female"}
        html_text = _normal(visible_text(render_html(plan, audience, pack=pack, patient=who)))
        pdf_text = _normal("".join(pdf_pages(render_pdf(plan, audience, pack=pack, patient=who))))
        shown = [p for p in payloads if _normal(p) in html_text]
        assert set(batch) <= set(shown)
        for payload in shown:
            # a right-to-left override is honoured (shown reversed): check the text around it
            plain = _normal(re.sub("\u202e.*?\u202c", "", payload))
            assert plain in pdf_text, f"payload {payload!r} not shown literally in the PDF"


def test_chromium_print_of_hostile_html_fetches_nothing(payloads, pack, canary):
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        pytest.skip("chromium is not installed")
    plan, _ = _cycling_plan(payloads)
    html = render_html(plan, pack=pack, patient={"name": " ".join(payloads), "id": payloads[3]})
    with tempfile.TemporaryDirectory() as tmp:
        page = Path(tmp) / "report.html"
        page.write_text(html, encoding="utf-8")
        subprocess.run(
            [
                chromium,
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--no-first-run",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                f"--user-data-dir={tmp}/profile",
                f"--print-to-pdf={tmp}/out.pdf",
                page.as_uri(),
            ],
            capture_output=True,
            timeout=120,
            check=False,
        )
        assert (Path(tmp) / "out.pdf").stat().st_size > 1000
    assert Canary.hits == []


def test_template_syntax_is_not_evaluated(pack):
    html = render_html(hostile_plan("{{ 7*7 }} {% raw %}x", True), pack=pack, patient=PATIENT)
    text = visible_text(html)
    assert "{{ 7*7 }} {% raw %}x" in text and not re.search(r"(?<![\d.])49(?![\d.])", text)
