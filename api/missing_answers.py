"""Answering the plan's missing information from the plan page (pure; no web imports).

Each row of ``plan.missing_information`` gets a small control: the field's own answers (with
"None" where the intake can say "known and empty", e.g. current MOUD) and "Not applicable".
A real answer is a corrected intake (a new plan version, decisions carried over); "not
applicable" is recorded on the plan (``overrides`` with section missing_information) and
carried to later versions, so no row sticks for ever.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from typing import Any

from carepath.api.form_checks import intake_with_problems
from carepath.api.intake_fields import EXPLICIT_NONE, FIELD_BY_PATH, NONE_OPTION, choice_label, form_values
from carepath.engine import CarePlan, Intake
from carepath.engine.intake import canonical_intake_dict

__all__ = ["NOT_APPLICABLE", "Control", "answered_intake", "missing_controls", "stored_values"]

NOT_APPLICABLE = "not_applicable"


@dataclass(frozen=True)
class Control:
    field: str
    kind: str
    """select (one of ``options``), number, date or text."""
    options: tuple[tuple[str, str], ...]
    minimum: float | None = None
    maximum: float | None = None

    @property
    def html_id(self) -> str:
        return "mi-" + self.field.replace(".", "-")


def _options(field: str) -> tuple[tuple[str, str], ...]:
    spec = FIELD_BY_PATH[field]
    if spec.kind == "bool":
        return (("yes", "Yes"), ("no", "No"))
    choices = tuple((c, choice_label(field, c)) for c in spec.choices)
    if spec.kind == "multi":
        return ((NONE_OPTION, "None"), *choices)
    if field in EXPLICIT_NONE:
        return ((NONE_OPTION, EXPLICIT_NONE[field]), *choices)
    return choices


def missing_controls(plan: CarePlan) -> dict[str, Control]:
    """A control per answerable missing-information field ("Not applicable" is added by the page)."""
    out = {}
    for m in plan.missing_information:
        spec = FIELD_BY_PATH.get(m.field)
        if spec is None:
            continue
        if spec.kind in ("bool", "choice", "multi"):
            out[m.field] = Control(m.field, "select", _options(m.field))
        elif spec.kind in ("int", "number"):
            out[m.field] = Control(m.field, "number", (), spec.minimum, spec.maximum)
        else:
            out[m.field] = Control(m.field, "date" if spec.kind == "date" else "text", ())
    return out


def stored_values(intake: Intake) -> dict[str, list[str]]:
    """The stored intake as form values, explicit "None" answers included."""
    return form_values(canonical_intake_dict(intake))


def answered_intake(
    intake: Intake, field: str, answers: list[str], today: date
) -> tuple[dict[str, Any], str | None]:
    """The stored intake with ``field`` answered -> (intake dict, the problem in words or None)."""
    values = stored_values(intake)
    values[field] = answers
    corrected, problems = intake_with_problems(values, today)
    if not answers:
        return corrected, "Choose an answer, or Not applicable."
    mine = [p for p in problems if p.field.split("[", 1)[0] == field]
    if problems:
        from carepath.api.form_checks import clinician_message

        first = (mine or problems)[0]
        return corrected, f"{FIELD_BY_PATH[field].label}: {clinician_message(first)}"
    return corrected, None
