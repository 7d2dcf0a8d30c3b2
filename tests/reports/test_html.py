"""Clinician draft HTML: sections, order, badges, references, schedule, appendix."""

from __future__ import annotations

import re
from datetime import date

import pytest

from carepath.reports import render_html
from carepath.reports.notices import PART2_NOTICE
from carepath.reports.render import _env
from carepath.reports.view import PHASES
from tests.reports.helpers import shape, visible_text
from tests.reports.plans import with_date


@pytest.fixture(scope="module")
def html(rich_plan, pack, patient):
    return render_html(rich_plan, pack=pack, patient=patient)


def test_environment_is_strict_and_escapes():
    env = _env("en")
    assert env.autoescape is True
    assert env.undefined.__name__ == "StrictUndefined"  # Jinja2 is imported by reports/render.py only


def test_header_has_identifiers_and_assessment_date(html, patient):
    text = visible_text(html)
    assert patient["name"] in text and patient["id"] in text
    assert "Assessment date 2026-03-02" in text
    assert "DRAFT - requires clinician review" in text


def test_identifiers_are_optional(rich_plan, pack):
    text = visible_text(render_html(rich_plan, pack=pack))
    assert "name not provided" in text


def test_title_and_meta_carry_no_patient_data(html, patient):
    head = html.split("<body", 1)[0]
    assert "<title>carepath care-plan draft</title>" in head
    assert patient["name"] not in head and patient["id"] not in head


def test_sections_in_order(html):
    order = [
        "<h2>Alerts</h2>",
        "<h2>Level of care</h2>",
        "<h2>Pathway</h2>",
        "<h2>Medication choice: comparison</h2>",
        "<h2>Considered, not recommended</h2>",
        "<h2>Missing information</h2>",
        "<h2>Reassessment and follow-up</h2>",
        "<h2>Clinician review and signature</h2>",
        "<h2>Evidence appendix</h2>",
    ]
    positions = [html.index(marker) for marker in order]
    assert positions == sorted(positions)


def test_timeline_lists_every_phase_in_order(html):
    titles = re.findall(r'<li class="phase[^"]*">\s*<h3>([^<]+)', html)
    assert [t.strip() for t in titles] == list(PHASES.values())


def _items(html: str) -> dict[str, str]:
    """Item blocks by code (each block runs to the next item or phase)."""
    parts = re.split(r'(?=<div class="item )|(?=</li>)', html)
    found = {}
    for part in parts:
        m = re.match(r'<div class="item (\w+)" data-code="([^"]+)">', part)
        if m:
            found[m.group(2)] = part
    return found


def test_avoid_is_unmistakable(html):
    avoid_blocks = [b for b in _items(html).values() if b.startswith('<div class="item avoid"')]
    assert len(avoid_blocks) == 2
    for block in avoid_blocks:
        assert "AVOID" in block and "Do not:" in block and 'class="badge avoid"' in block


def test_item_shows_rationale_triggers_rules_and_numbered_refs(html):
    text = visible_text(_items(html)["moud.buprenorphine"])
    assert "Why:" in text and "OUD-MOUD-100" in text
    assert "Currently pregnant: yes" in text
    assert re.search(r"\[\d+\] \[\d+\] \[\d+\]", text)


def test_every_reference_points_into_the_appendix(html, rich_plan):
    cited = set(re.findall(r'href="#src-(\d+)"', html))
    anchors = set(re.findall(r'id="src-(\d+)"', html))
    assert cited == anchors
    keys = {c.key for i in rich_plan.items() for c in i.citations} | {
        c.key for a in rich_plan.alerts for c in a.citations
    }
    assert len(anchors) == len(keys)


def test_every_citation_in_appendix(html, rich_plan):
    appendix = visible_text(html.split("<h2>Evidence appendix</h2>", 1)[1])
    for entry in [*rich_plan.items(), *rich_plan.alerts]:
        for c in entry.citations:
            assert c.title in appendix and c.locator in appendix


def test_past_review_is_flagged(short_plan, pack):
    late = render_html(with_date(short_plan, date(2099, 1, 1)), pack=pack)
    assert "PAST REVIEW" in late and "Rules past their review date" in late
    fresh = render_html(with_date(short_plan, date(2000, 1, 1)), pack=pack)
    assert "PAST REVIEW" not in fresh


def test_review_dates_come_from_the_pack(short_plan, pack):
    text = visible_text(render_html(short_plan, pack=pack))
    rule = pack.rule("OUD-HR-001").rule
    assert f"OUD-HR-001 (review {rule.review_date.isoformat()}" in text


def test_medication_table_when_preference_differs(html):
    table = html.split("<h2>Medication choice: comparison</h2>", 1)[1].split("</table>", 1)[0]
    text = visible_text(table)
    assert "patient's preference" in text
    assert "Methadone" in text and "Buprenorphine" in text and "Naltrexone" in text
    assert "Opioid treatment programme (OTP) only" in text


def test_no_medication_table_when_choice_is_settled(rich_plan, pack, patient):
    settled = dict(patient, medication_preference="buprenorphine")
    assert "Medication choice" not in render_html(rich_plan, pack=pack, patient=settled)


def test_schedule_dates_are_computed_from_the_assessment_date(html):
    table = visible_text(html.split("<h2>Reassessment and follow-up</h2>", 1)[1].split("</table>", 1)[0])
    for day, when in [
        ("2026-03-02", "same day"),
        ("2026-03-03", "+1 day"),
        ("2026-03-05", "+3 days"),
        ("2026-03-09", "+7 days"),
        ("2026-04-01", "+30 days"),
        ("2026-05-31", "+90 days"),
    ]:
        assert f"{day} {when}" in table


def test_signature_block(html):
    text = visible_text(html)
    for label in ("Clinician name", "Credentials", "Signature", "Date"):
        assert label in text


def test_footer_has_notice_and_provenance(html, rich_plan):
    footer = html.split('<footer class="page-footer">', 1)[1].split("</footer>", 1)[0]
    assert PART2_NOTICE in footer
    assert rich_plan.ruleset.sha256 in footer and rich_plan.ruleset.version in footer
    assert 'class="pageno"' in footer


def test_missing_and_why_not_listed(html, rich_plan):
    text = visible_text(html)
    for m in rich_plan.missing_information:
        assert m.field in text and m.label in text and m.why_it_matters in text
    for w in rich_plan.considered_not_recommended:
        assert w.reason in text


def test_html_loads_nothing(html):
    s = shape(html)
    assert not [t for t, _ in s.tags if t in ("script", "link", "img", "iframe", "object", "embed")]
    assert "@import" not in html and "url(" not in html
    assert not [a for _, a, _ in s.attrs if a == "style"]  # one hashable <style> block: CSP-friendly


def test_undefined_names_raise(rich_plan):
    with pytest.raises(Exception, match="undefined"):
        _env("en").from_string("{{ no_such_name }}").render()


def test_unknown_audience_is_refused(rich_plan):
    with pytest.raises(ValueError):
        render_html(rich_plan, audience="press")


def test_deterministic(rich_plan, pack, patient):
    assert render_html(rich_plan, pack=pack, patient=patient) == render_html(
        rich_plan, pack=pack, patient=patient
    )
