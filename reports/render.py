"""Plan -> HTML (pure). The only importer of Jinja2.

Autoescape is on for every template and string, undefined names raise (StrictUndefined),
and the page loads nothing: the stylesheet is inlined from the package.
"""

from __future__ import annotations

import re
from datetime import date
from functools import cache, lru_cache
from importlib import resources
from typing import Any

from babel.dates import format_date
from jinja2 import Environment, PackageLoader, StrictUndefined
from markupsafe import Markup

from carepath.engine import CarePlan, Intake, RulePack, RulePackError, load_rulepack
from carepath.reports.i18n import pick_language, translations
from carepath.reports.patient import as_patient
from carepath.reports.record import Recorded
from carepath.reports.view import clinician_view, patient_view

__all__ = ["AUDIENCES", "DOCUMENT_TITLE", "render_html", "render_impact_html", "stylesheet"]

AUDIENCES = ("clinician", "patient")
# C0/C1 controls (but tab, newline, carriage return) cannot be shown and make HTML parsers drop
# text (a NUL in a name hid the rest of it in the PDF): every printed value shows U+FFFD instead.
_CONTROL = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f]")
DOCUMENT_TITLE = "carepath care-plan draft"  # also the PDF title: never patient data


@lru_cache(maxsize=1)
def stylesheet() -> str:
    css = resources.files("carepath.reports").joinpath("static/report.css").read_text(encoding="utf-8")
    if "</" in css:
        raise ValueError("report.css must not contain '</'")
    return css


@cache
def _env(language: str) -> Environment:
    env = Environment(
        loader=PackageLoader("carepath.reports", "templates"),
        autoescape=True,
        undefined=StrictUndefined,
        extensions=["jinja2.ext.i18n"],
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
        finalize=_visible,
    )
    tr = translations(language)
    env.install_gettext_translations(tr, newstyle=True)  # type: ignore[attr-defined]
    env.globals["ptext"] = lambda msgid: _patient_text(tr, msgid)
    env.filters["longdate"] = lambda d: format_date(d, format="long", locale=language)
    env.filters["isodate"] = lambda d: d.isoformat() if isinstance(d, date) else str(d)
    return env


def _visible(value: Any) -> Any:
    if isinstance(value, str) and not isinstance(value, Markup):
        return _CONTROL.sub("\ufffd", value)
    return value


def _patient_text(tr: Any, msgid: str) -> str | None:
    text = tr.gettext(msgid)
    return None if text == msgid or not text.strip() else text


def render_html(
    plan: CarePlan,
    audience: str = "clinician",
    language: str | None = None,
    *,
    pack: RulePack | None = None,
    patient: Any = None,
    intake: Intake | None = None,
    recorded: Recorded | None = None,
    appendix: bool = True,
    embed_css: bool = True,
) -> str:
    """The clinician draft or the patient summary as one self-contained HTML page.

    ``intake`` fills what a plan assembled before Pathway v2 lacks (DSM-5 count, dimension
    ratings, incomplete-intake banner); ``recorded`` carries the decisions and the sign-off;
    ``appendix`` prints the evidence appendix of the clinician draft; ``embed_css=False`` leaves
    the stylesheet out (``reports.pdf`` passes its parsed copy instead).
    """
    if audience not in AUDIENCES:
        raise ValueError(f"audience must be one of {AUDIENCES}")
    who = as_patient(patient)
    lang = pick_language(language) if audience == "patient" else "en"
    css = Markup(stylesheet()) if embed_css else None
    common = {"css": css, "title": DOCUMENT_TITLE, "lang": lang}
    if audience == "patient":
        view = patient_view(plan, who, lang, recorded)
        return _env(lang).get_template("patient.html").render(v=view, **common)
    pack = pack if pack is not None else _default_pack()
    view = clinician_view(plan, pack, who, intake=intake, recorded=recorded, with_appendix=appendix)
    return _env("en").get_template("clinician.html").render(v=view, **common)


def _default_pack() -> RulePack | None:
    """Review dates come from the rule pack; without one the appendix says they are unknown."""
    try:
        return load_rulepack()
    except RulePackError:
        return None


# --- rules impact report (governance; English only) ------------------------------------------

_KIND_COLOURS = {
    "level": "#9b1c1c",
    "alert": "#c0392b",
    "code": "#b9770e",
    "recommendation": "#d68910",
    "wording": "#2e86c1",
    "rule_ids": "#7fb3d5",
}


def _bar_chart(
    title: str, rows: list[tuple[str, int]], colours: dict[str, str] | None = None
) -> dict[str, Any]:
    """Geometry of a horizontal bar chart (the template draws it as inline SVG)."""
    label_width, bar_space, row = 260, 420, 24
    top = max((v for _, v in rows), default=0) or 1
    bars = [
        {
            "label": label,
            "value": value,
            "y": 4 + i * row,
            "width": max(1, round(bar_space * value / top)),
            "colour": (colours or {}).get(label, "#566573"),
        }
        for i, (label, value) in enumerate(rows)
    ]
    return {
        "title": title,
        "bars": bars,
        "label_width": label_width,
        "width": label_width + bar_space + 60,
        "height": 8 + row * len(rows),
    }


def render_impact_html(report: Any, limit: int = 500) -> str:
    """The impact of a rule-pack change (engine.governance.ImpactReport) as one HTML page with
    charts: intakes by kind of change, and the codes changed most often."""
    share = f"{100 * len(report.changed) / report.intakes:.1f}%" if report.intakes else "0%"
    charts = [
        _bar_chart("Intakes by kind of change", list(report.by_kind().items()), _KIND_COLOURS),
        _bar_chart("Codes changed most often (intakes)", report.by_code(15)),
    ]
    template = _env("en").get_template("impact.html")
    return template.render(report=report, charts=charts, share=share, shown=report.ranked()[:limit])
