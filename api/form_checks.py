"""The web form's checks and messages in the clinician's words (pure; no web imports).

- ``intake_with_problems(values, today)``: form values -> (intake dict, problems), where the
  problems are ALL of them at once: type and range errors, the clinically impossible
  combinations (the engine finds those only once every field has the right type, so the form
  validates the fields that did convert), the date bounds, and "required" pinned to the field
  that is missing (Age, Assessment date) rather than to its parent.
- ``clinician_message(problem)``: field paths and JSON literals in a message replaced by the
  labels and options the form shows ("cannot be Yes when Sex at birth is Male").
- ``explicit_none``: choices whose "None" answer is an explicit null in the intake (current
  MOUD: not on any), kept apart from "Not recorded".
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from datetime import date, timedelta
from typing import Any

from carepath.api.intake_fields import (
    FIELD_BY_PATH,
    choice_label,
    field_for_problem,
    set_path,
)
from carepath.api.intake_fields import intake_from_form as fields_to_intake
from carepath.engine import IntakeError, parse_intake_obj
from carepath.engine.errors import FieldProblem
from carepath.engine.labels import field_label

__all__ = [
    "OLD_DATE_DAYS",
    "clinician_message",
    "date_warning",
    "intake_with_problems",
]

OLD_DATE_DAYS = 365
"""An assessment date further back than this is kept but flagged on the plan page."""
_REQUIRED = {
    "patient": ("patient.age", "is required: the age in years, 12 to 110"),
    "patient.age": ("patient.age", "is required: the age in years, 12 to 110"),
    "assessment_date": ("assessment_date", "is required: the date of this assessment"),
}
_PLACEHOLDERS = {"patient.age": 30, "assessment_date": "2000-01-01"}
"""Stand-ins for a missing or mistyped required field, so the other checks still run."""
_QUOTED = re.compile(r"'([a-z_]+)'")
_NUMBER = re.compile(r"\b(\d+)\.0\b")


def intake_with_problems(
    values: Mapping[str, Sequence[str]], today: date
) -> tuple[dict[str, Any], list[FieldProblem]]:
    intake, problems = fields_to_intake(values)  # "None" on an EXPLICIT_NONE field: null
    problems += _date_bounds(intake, today)
    checked = _with_placeholders(intake, {field_for_problem(p.field) for p in problems})
    try:
        parse_intake_obj(checked)
    except IntakeError as exc:
        problems += exc.problems
    return intake, _one_per_field(problems)


def _with_placeholders(intake: dict[str, Any], failed: set[str | None]) -> dict[str, Any]:
    """A copy without the fields that failed, and with stand-ins for the required ones, so
    the engine's own checks (ranges, impossible combinations) report everything else."""
    import copy

    checked = copy.deepcopy(intake)
    for path in failed:
        if path:
            _drop(checked, path)
    for path, stand_in in _PLACEHOLDERS.items():
        if path in failed:
            set_path(checked, path, stand_in)
    return checked


def _drop(data: dict[str, Any], path: str) -> None:
    *parents, leaf = path.split(".")
    node: Any = data
    for part in parents:
        node = node.get(part) if isinstance(node, dict) else None
    if isinstance(node, dict):
        node.pop(leaf, None)


def _one_per_field(problems: Sequence[FieldProblem]) -> list[FieldProblem]:
    """Required fields named as the form shows them; one message per field, the first kept."""
    out: list[FieldProblem] = []
    seen: set[str] = set()
    for p in problems:
        field, message = p.field, p.message
        if field in _REQUIRED and "required" in message:
            field, message = _REQUIRED[field]
        if field in seen:
            continue
        seen.add(field)
        out.append(FieldProblem(field, message))
    return out


def _date_bounds(intake: Mapping[str, Any], today: date) -> list[FieldProblem]:
    raw = intake.get("assessment_date")
    try:
        day = date.fromisoformat(raw) if isinstance(raw, str) else None
    except ValueError:
        return []
    if day is not None and day > today + timedelta(days=1):
        return [FieldProblem("assessment_date", f"cannot be in the future (today is {today.isoformat()})")]
    return []


def date_warning(assessment: date, created: date) -> str | None:
    """A plausible-date warning for the plan page (the plan and its schedule are dated from it)."""
    if (created - assessment).days > OLD_DATE_DAYS:
        return (
            f"The assessment date {assessment.isoformat()} is more than a year before this plan was made: "
            "the plan and its follow-up dates are counted from it. Correct it if it was mistyped."
        )
    return None


def clinician_message(problem: FieldProblem) -> str:
    """A validation message with field paths, true/false and option values in the form's words."""
    message = problem.message
    for path in sorted(FIELD_BY_PATH, key=len, reverse=True):
        message = re.sub(rf"(?<![\w.]){re.escape(path)}(?![\w.])", field_label(path), message)
    for path in FIELD_BY_PATH:
        leaf = path.rsplit(".", 1)[-1]
        if "_" in leaf:  # a bare field name ("sex_at_birth"); plain words stay words
            message = re.sub(rf"(?<![\w.]){leaf}(?![\w.])", field_label(path), message)
    message = message.replace("be true", "be Yes").replace("be false", "be No")
    message = message.replace("is true", "is Yes").replace("is false", "is No")
    message = _QUOTED.sub(lambda m: choice_label("", m.group(1)), message)
    return _NUMBER.sub(r"\1", message)
