"""Patient summary: plain language (grade <= 8), catalogue-driven texts in en/es/de."""

from __future__ import annotations

from pathlib import Path

import pytest
import textstat
from babel.messages.extract import extract_from_dir
from babel.messages.pofile import read_po

from carepath.reports import render_html
from carepath.reports.helplines import HELPLINES
from carepath.reports.i18n import LANGUAGES, po_path, translations
from carepath.reports.patient_texts import PATIENT_MSGIDS
from carepath.reports.schedule import _SOONER, _STANDARD
from tests.reports.helpers import visible_text

REPORTS = Path(__file__).resolve().parents[2] / "reports"
MAX_GRADE = 8.0


def _catalog(language: str):
    with po_path(language).open("rb") as fp:
        return read_po(fp, locale=language)


def _extracted() -> set:
    method_map = [("**.py", "python"), ("templates/**.html", "jinja2")]
    options = {"templates/**.html": {"extensions": "jinja2.ext.i18n"}}
    return {m[2] for m in extract_from_dir(str(REPORTS), method_map, options_map=options)}


def test_catalogues_hold_every_message_in_every_language():
    wanted = _extracted()
    assert len(wanted) > 100
    for language in LANGUAGES:
        catalog = _catalog(language)
        for msgid in wanted:
            msg = catalog.get(msgid if isinstance(msgid, str) else msgid[0])
            assert msg is not None, f"{language}: missing {msgid!r}"
            strings = msg.string if isinstance(msg.string, tuple) else (msg.string,)
            assert all(s.strip() for s in strings), f"{language}: empty translation for {msgid!r}"
            assert not msg.fuzzy, f"{language}: fuzzy {msgid!r}"


def test_every_code_in_the_pack_has_a_patient_text(pack):
    wanted = {f"code.{code}" for code in pack.codes}
    assert wanted <= set(PATIENT_MSGIDS), sorted(wanted - set(PATIENT_MSGIDS))
    for language in LANGUAGES:
        tr = translations(language)
        for msgid in wanted | {"medicine.methadone", "medicine.buprenorphine", "medicine.naltrexone"}:
            assert tr.gettext(msgid) != msgid, f"{language}: no text for {msgid}"


def test_every_schedule_visit_has_a_patient_text():
    keys = {k for _, k, _ in _STANDARD + _SOONER} | {"same_day_psychiatry", "obstetric_visit", "ecg"}
    for language in LANGUAGES:
        for key in keys:
            assert translations(language).gettext(f"schedule.{key}") != f"schedule.{key}"


def test_patient_texts_do_not_come_from_the_rules(short_plan, example_patient):
    text = visible_text(render_html(short_plan, "patient", "en", patient=example_patient))
    for item in short_plan.items():
        assert item.text not in text and item.rationale not in text


def _reading_grade(language: str, text: str) -> tuple[str, float, bool]:
    """A grade-8 check in the language's own formula: (formula, score, plain enough?).

    en: Flesch-Kincaid grade <= 8. es: Fernandez-Huerta >= 70 ("fairly easy", about 7th grade)
    and Szigriszt-Pazos / INFLESZ >= 65 ("fairly easy"). de: first Wiener Sachtextformel (a
    school grade for German text) <= 8. textstat counts syllables with the language's hyphenation.
    """
    textstat.set_lang(language)
    try:
        if language == "es":
            fh, sp = textstat.fernandez_huerta(text), textstat.szigriszt_pazos(text)
            return f"Fernandez-Huerta {fh:.0f}, Szigriszt-Pazos {sp:.0f}", min(fh, sp), fh >= 70 and sp >= 65
        if language == "de":
            grade = textstat.wiener_sachtextformel(text, 1)
            return "Wiener Sachtextformel", grade, grade <= MAX_GRADE
        grade = textstat.flesch_kincaid_grade(text)
        return "Flesch-Kincaid grade", grade, grade <= MAX_GRADE
    finally:
        textstat.set_lang("en")


@pytest.mark.parametrize("language", LANGUAGES)
@pytest.mark.parametrize("which", ["short_plan", "rich_plan"])
def test_summary_reads_at_grade_8_or_below_in_every_language(which, language, request, patient):
    plan = request.getfixturevalue(which)
    text = visible_text(render_html(plan, "patient", language, patient=patient), drop_footer=True)
    formula, score, plain = _reading_grade(language, text)
    assert plain, f"{language}: {formula} {score:.1f} is above grade {MAX_GRADE}"


@pytest.mark.parametrize("language", LANGUAGES)
def test_all_patient_texts_together_read_at_grade_8_or_below(language):
    tr = translations(language)
    text = " ".join(tr.gettext(m) for m in PATIENT_MSGIDS)
    formula, score, plain = _reading_grade(language, text)
    assert plain, f"{language}: {formula} {score:.1f}"


def test_the_grade_check_tells_hard_text_from_plain_text():
    """The formulas are not vacuous: a dense clinical sentence fails in every language."""
    hard = {
        "en": "Pharmacokinetic considerations necessitate individualised titration methodologies "
        "incorporating comprehensive electrocardiographic surveillance.",
        "es": "Las consideraciones farmacocinéticas necesitan metodologías individualizadas de "
        "titulación incorporando vigilancia electrocardiográfica comprehensiva.",
        "de": "Pharmakokinetische Gesichtspunkte erfordern individualisierte Titrationsmethodiken "
        "unter Einbeziehung umfassender elektrokardiographischer Überwachungsmaßnahmen.",
    }
    for language in LANGUAGES:
        assert not _reading_grade(language, hard[language])[2], language


@pytest.mark.parametrize(
    ("language", "expected", "absent"),
    [
        ("en", ["Your care plan", "What happens next", "Overdose and naloxone", "Where to get help"], []),
        (
            "es",
            ["Su plan de atención", "Qué pasa ahora", "Sobredosis y naloxona", "988 en español"],
            ["What we suggest"],
        ),
        (
            "de",
            ["Ihr Behandlungsplan", "Wie es weitergeht", "Überdosis und Naloxon", "Wo Sie Hilfe bekommen"],
            ["Your care plan"],
        ),
    ],
)
def test_language_is_picked_from_preferences(language, expected, absent, rich_plan, patient):
    html = render_html(rich_plan, "patient", language, patient=patient)
    assert f'<html lang="{language}">' in html
    text = visible_text(html)
    for phrase in expected:
        assert phrase in text
    for phrase in absent:
        assert phrase not in text


def test_unknown_language_falls_back_to_english(rich_plan):
    assert '<html lang="en">' in render_html(rich_plan, "patient", "fr")


def test_summary_sections(rich_plan, patient):
    text = visible_text(render_html(rich_plan, "patient", "en", patient=patient))
    assert "DRAFT: your clinician must check and sign this before you get it." in text
    assert "1-800-662-4357" in text and "988" in text
    assert "Naloxone blocks the effect of opioids" not in text  # only the medicines in the plan
    assert "Buprenorphine melts under your tongue" in text
    assert "Not right for you now" in text and "Fast detox while you are put to sleep" in text
    assert "March 3, 2026" in text  # +1 day, localised
    assert "Your body is not used to opioids now" in text


def test_summary_dates_are_localised(rich_plan):
    assert "3 de marzo de 2026" in visible_text(render_html(rich_plan, "patient", "es"))
    assert "3. März 2026" in visible_text(render_html(rich_plan, "patient", "de"))


@pytest.mark.parametrize("jurisdiction", sorted(HELPLINES))
def test_helplines_by_jurisdiction(jurisdiction, rich_plan):
    plan = rich_plan.model_copy(update={"jurisdiction": jurisdiction})
    text = visible_text(render_html(plan, "patient", "en"))
    for line in HELPLINES[jurisdiction]:
        if not line.languages:
            assert line.number in text


def test_summary_follows_the_decisions_of_record(rich_plan, patient):
    from datetime import UTC, datetime

    from carepath.reports.record import Decision, Recorded, Signature

    at = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
    cbt = translations("en").gettext("code.psy.cbt")
    before = visible_text(render_html(rich_plan, "patient", "en", patient=patient))
    assert cbt in before and "DRAFT" in before
    decisions = {
        "psy.cbt": Decision("psy.cbt", "declined", "Already in CBT", "dr@x", at),
        "moud.buprenorphine": Decision(
            "moud.buprenorphine", "modified", "", "dr@x", at, dose="8 mg on day 1"
        ),
    }
    sig = Signature("dr@x", "Dr Ana Ruiz", "MD", at, "ef" * 32)
    rec = Recorded(rich_plan.plan_id, 1, "dr@x", at, decisions=decisions, signature=sig)
    after = visible_text(
        render_html(rich_plan, "patient", "en", patient=patient, recorded=rec), drop_footer=True
    )
    assert cbt not in after  # declined: not told to the patient
    assert "Your clinician's note: 8 mg on day 1" in after
    assert "Already in CBT" not in after  # the clinician's reason stays in the clinician's record
    assert "DRAFT" not in after
    assert "Checked by your clinician Dr Ana Ruiz" in after
