"""Clinician draft HTML: summary first, one line per decision in time order, the decisions of
record, sign-off, the confidentiality notice by jurisdiction, the evidence appendix."""

from __future__ import annotations

import re
from datetime import UTC, date, datetime

import pytest

from carepath.engine import parse_intake_obj
from carepath.reports import render_html
from carepath.reports.notices import CONFIDENTIALITY, PART2_NOTICE
from carepath.reports.record import Decision, Recorded, Signature
from carepath.reports.render import _env
from carepath.reports.summary import PHASE_TITLES
from tests.reports.helpers import shape, visible_text
from tests.reports.plans import with_date

AT = datetime(2026, 3, 2, 15, 30, tzinfo=UTC)
DOSE = "4 mg sublingual, repeat once after 1 h"


@pytest.fixture(scope="module")
def html(rich_plan, pack, patient):
    return render_html(rich_plan, pack=pack, patient=patient)


def recorded(plan, *, signed: bool = False, **decisions: Decision) -> Recorded:
    sig = Signature("dr@clinic.example", "Dr Ana Ruiz", "MD", AT, "ab" * 32) if signed else None
    return Recorded(plan.plan_id, 2, "dr@clinic.example", AT, decisions=decisions, signature=sig)


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
    assert "Name not provided" in text and "MRN not provided" in text


def test_title_and_meta_carry_no_patient_data(html, patient):
    head = html.split("<body", 1)[0]
    assert "<title>carepath care-plan draft</title>" in head
    assert patient["name"] not in head and patient["id"] not in head


def test_summary_first_then_pathway_then_the_rest(html):
    order = [
        "<h2>Plan at a glance</h2>",
        "<h3>Today</h3>",
        "<h3>Medication decision</h3>",
        "<h3>ASAM dimensions</h3>",
        "<h2>Pathway, in time order</h2>",
        "<h2>Considered, not recommended</h2>",
        "<h2>Missing information</h2>",
        "<h2>Follow-up</h2>",
        "<h2>Clinician review and signature</h2>",
        "<h2>Confidentiality notice (42 CFR 2.32(a)(1))</h2>",
        "<h2>Evidence appendix</h2>",
    ]
    positions = [html.index(marker) for marker in order]
    assert positions == sorted(positions)


def test_glance_names_level_alerts_next_visit_and_every_medication(html, rich_plan):
    glance = visible_text(html.split("<h2>Pathway", 1)[0])
    assert "Intensive outpatient (ASAM 2.1)" in glance
    assert "Lowered to the patient's preference" in glance
    for alert in rich_plan.alerts:
        assert alert.text in glance
    assert "Next visit 2026-03-02" in glance  # same-day psychiatry for suicide risk
    meds = visible_text(html.split("<h3>Medication decision</h3>", 1)[1].split("</table>", 1)[0])
    for name in ("Methadone", "Buprenorphine", "Naltrexone"):
        assert name in meds
    assert "Naltrexone preferred Avoid" in meds  # the preference, and why not
    today = visible_text(html.split("<h3>Today</h3>", 1)[1].split("<h3>", 1)[0])
    assert "Buprenorphine maintenance, 16-24 mg/day." in today
    assert "Ultra-rapid" not in today  # avoid is never a today's action


def test_pathway_one_line_per_code_in_time_order(html, rich_plan):
    titles = [t.strip() for t in re.findall(r"<h3>\d+\. ([^<]+)</h3>", html)]
    wanted = [t for k, t in PHASE_TITLES.items() if k != "level_of_care"]
    assert titles == [t for t in wanted if t in titles] and len(titles) >= 6
    codes = re.findall(r'<div class="line [^"]+" data-code="([^"]+)"', html)
    assert len(codes) == len(set(codes))
    assert set(codes) == {i.code for i in rich_plan.items() if not i.code.startswith("loc.")}


def _lines(html: str) -> dict[str, str]:
    line = r'<div class="line [^"]+" data-code="([^"]+)">(.*?)\n    </div>'
    return dict(re.findall(line, html, flags=re.S))


def test_avoid_is_unmistakable(html):
    avoid = {code: row for code, row in _lines(html).items() if 'class="badge avoid"' in row}
    assert set(avoid) == {"wm.ultra_rapid", "moud.naltrexone_xr"}
    for row in avoid.values():
        assert "Do not:" in row


def test_appendix_has_rationale_facts_rules_and_numbered_refs(html):
    block = visible_text(html.split('id="ev-moud.buprenorphine"', 1)[1].split('<div class="ev"', 1)[0])
    assert "OUD-MOUD-100" in block and "Rationale in the words of the rule" in block
    assert "Currently pregnant: yes" in block
    assert re.search(r"\[\d+\] ?\[\d+\] ?\[\d+\]", block)


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


def test_without_the_appendix_the_sources_still_print(rich_plan, pack, patient):
    short = render_html(rich_plan, pack=pack, patient=patient, appendix=False)
    assert "Evidence appendix" not in short and "<h2>Sources</h2>" in short
    assert set(re.findall(r'href="#src-(\d+)"', short)) == set(re.findall(r'id="src-(\d+)"', short))


def test_past_review_is_flagged(short_plan, pack):
    late = render_html(with_date(short_plan, date(2099, 1, 1)), pack=pack)
    assert "PAST REVIEW" in late and "Rules past their review date" in late
    fresh = render_html(with_date(short_plan, date(2000, 1, 1)), pack=pack)
    assert "PAST REVIEW" not in fresh


def test_review_dates_come_from_the_pack(short_plan, pack):
    text = visible_text(render_html(short_plan, pack=pack))
    rule = pack.rule("OUD-HR-001").rule
    assert f"OUD-HR-001 review {rule.review_date.isoformat()}" in text


def test_follow_up_dates_are_computed_from_the_assessment_date(html):
    table = visible_text(html.split("<h2>Follow-up</h2>", 1)[1].split("</table>", 1)[0])
    for day, when in [
        ("2026-03-02", "same day"),
        ("2026-03-03", "+1 d"),
        ("2026-03-05", "+3 d"),
        ("2026-03-09", "+7 d"),
        ("2026-04-01", "+30 d"),
        ("2026-05-31", "+90 d"),
    ]:
        assert f"{day} {when}" in table


def test_unsigned_draft_has_a_signature_block(html):
    text = visible_text(html)
    for label in ("Clinician name", "Credentials", "Signature", "Date"):
        assert label in text


def test_footer_has_the_short_notice_and_provenance_and_the_full_notice_prints_once(html, rich_plan):
    footer = html.split('<footer class="page-footer">', 1)[1].split("</footer>", 1)[0]
    assert CONFIDENTIALITY["US"].short in footer and PART2_NOTICE not in footer
    assert rich_plan.ruleset.sha256 in footer and rich_plan.ruleset.version in footer
    assert 'class="pageno"' in footer
    assert html.count(PART2_NOTICE) == 1


@pytest.mark.parametrize("jurisdiction", ["UK", "DE", "CA"])
def test_notice_follows_the_jurisdiction(jurisdiction, rich_plan, pack):
    html = render_html(rich_plan.model_copy(update={"jurisdiction": jurisdiction}), pack=pack)
    notice, text = CONFIDENTIALITY[jurisdiction], visible_text(html)
    assert notice.short in text and notice.full in text
    assert "42 CFR" not in html  # US rules only in US plans


def test_missing_and_why_not_listed(html, rich_plan):
    text = visible_text(html)
    for m in rich_plan.missing_information:
        assert m.label in text
    safety = [m for m in rich_plan.missing_information if m.impact == "safety"]
    appendix = visible_text(html.split("<h2>Evidence appendix</h2>", 1)[1])
    for m in safety:
        assert m.field in appendix and m.why_it_matters in appendix
    for w in rich_plan.considered_not_recommended:
        assert w.reason in text


def test_decisions_of_record_are_printed_and_the_suggestion_stays_in_the_appendix(rich_plan, pack, patient):
    rec = recorded(
        rich_plan,
        **{
            "moud.buprenorphine": Decision(
                "moud.buprenorphine", "modified", "Home start", "dr@x", AT, dose=DOSE
            ),
            "psy.cbt": Decision("psy.cbt", "declined", "Already in CBT elsewhere", "dr@x", AT),
            "hr.naloxone": Decision("hr.naloxone", "accepted", "", "dr@x", AT),
        },
    )
    html = render_html(rich_plan, pack=pack, patient=patient, recorded=rec)
    lines = _lines(html)
    assert DOSE in lines["moud.buprenorphine"] and "decision modified" in lines["moud.buprenorphine"]
    assert "struck" in lines["psy.cbt"] and "Already in CBT elsewhere" in lines["psy.cbt"]
    assert "decision accepted" in lines["hr.naloxone"]
    assert "decision suggested" in lines["psy.contingency_management"]
    appendix = html.split("<h2>Evidence appendix</h2>", 1)[1]
    block = appendix.split('id="ev-moud.buprenorphine"', 1)[1].split('<div class="ev"', 1)[0]
    assert "Suggested:" in block and "Buprenorphine maintenance, 16-24 mg/day." in block
    today = visible_text(html.split("<h3>Today</h3>", 1)[1].split("<h3>", 1)[0])
    assert DOSE in today


def test_signed_plan_says_signed_by_instead_of_draft(rich_plan, pack, patient):
    html = render_html(rich_plan, pack=pack, patient=patient, recorded=recorded(rich_plan, signed=True))
    text = visible_text(html)
    assert "Signed by Dr Ana Ruiz, MD (dr@clinic.example) on 2026-03-02 15:30 UTC" in text
    footer = html.split('<footer class="page-footer">', 1)[1].split("</footer>", 1)[0]
    assert "ab" * 32 in footer  # the signed-content hash on every page
    assert "DRAFT - requires clinician review" not in html and 'class="watermark"' not in html
    assert "accepted at signing" in html  # undecided lines are accepted by the signature


def test_incomplete_intake_banner(rich_plan, pack, example_intake):
    data = example_intake.model_dump(mode="json", exclude_none=True)
    complete = parse_intake_obj({**data, "current_treatment": {"moud": None}})  # "None": known, not on MOUD
    assert "Incomplete intake" not in visible_text(render_html(rich_plan, pack=pack, intake=complete))
    del data["substance_use"]["dsm5_criteria_met"]
    text = visible_text(render_html(rich_plan, pack=pack, intake=parse_intake_obj(data)))
    assert (
        "Incomplete intake: OUD severity (DSM-5 criteria), Current medication (MOUD) are not recorded" in text
    )


def test_html_loads_nothing(html):
    s = shape(html)
    assert not [t for t, _ in s.tags if t in ("script", "link", "img", "iframe", "object", "embed")]
    assert "@import" not in html and "url(" not in html
    assert not [a for _, a, _ in s.attrs if a == "style"]  # one hashable <style> block: CSP-friendly
    assert html.count("<main>") == 1  # one landmark holds the content (axe: landmark-one-main, region)


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
