"""The intake's fields (contract §1) as one catalogue for the web form and the FHIR Questionnaire.

Derived from ``engine.intake.Intake`` (so a field added to the engine appears here), with the
clinician's wording for the groups kept in this module (field labels: ``engine.labels``).
Pure data: no web imports.

    FIELDS        every leaf field: path ("substance_use.cows_score"), kind, choices, bounds
    GROUPS        the form's fieldsets, in contract order
    intake_from_form(form) -> (intake dict, problems)   text/radio/checkbox values -> JSON types
"""

from __future__ import annotations

import types
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import date
from functools import cache
from typing import Annotated, Any, Literal, Union, get_args, get_origin

from pydantic import BaseModel

from carepath.engine.errors import FieldProblem
from carepath.engine.intake import Intake
from carepath.engine.labels import field_help, field_label

__all__ = [
    "FieldSpec",
    "Group",
    "GROUPS",
    "FIELDS",
    "FIELD_BY_PATH",
    "Kind",
    "intake_from_form",
    "form_values",
    "choice_label",
    "list_answer",
    "NONE_OPTION",
    "EXPLICIT_NONE",
    "explicitly_none",
    "set_path",
    "field_for_problem",
]

Kind = Literal["date", "int", "number", "bool", "choice", "multi", "text", "textlist"]


@dataclass(frozen=True)
class FieldSpec:
    path: str
    label: str
    kind: Kind
    choices: tuple[str, ...] = ()
    required: bool = False
    minimum: float | None = None
    maximum: float | None = None
    help: str = ""

    @property
    def html_id(self) -> str:
        return "f-" + self.path.replace(".", "-")

    @property
    def anchor_id(self) -> str:
        """The id of the first input: where an error summary link should land."""
        if self.kind == "bool":
            return self.html_id + "-yes"
        if self.kind == "multi":
            return self.html_id + "-" + self.choices[0]
        return self.html_id

    @property
    def error_id(self) -> str:
        return "err-" + self.path.replace(".", "-")

    @property
    def help_id(self) -> str:
        return "help-" + self.path.replace(".", "-")


@dataclass(frozen=True)
class Group:
    key: str
    legend: str
    fields: tuple[FieldSpec, ...]


# (group key, legend, contract sections it holds); top-level scalars go where they are listed.
_GROUPS: tuple[tuple[str, str, tuple[str, ...]], ...] = (
    ("patient", "Assessment and patient", ("assessment_date", "jurisdiction", "patient")),
    ("stage", "Stage and readiness", ("stage", "readiness")),
    ("substance_use", "Substance use", ("substance_use",)),
    ("current_treatment", "Current treatment", ("current_treatment",)),
    ("history", "Treatment history", ("history",)),
    ("mental_health", "Dual diagnosis (mental health)", ("mental_health",)),
    ("medical", "Medical", ("medical",)),
    ("social", "Social", ("social",)),
    ("preferences", "Preferences", ("preferences",)),
)

_CHOICE_LABELS: dict[str, str] = {
    "US": "United States",
    "UK": "United Kingdom",
    "DE": "Germany",
    "CA": "Canada",
    "en": "English",
    "es": "Spanish",
    "de": "German",
    "adhd": "ADHD",
    "ptsd": "PTSD",
    "post_withdrawal": "Post withdrawal (detox completed, no MOUD)",
    "in_treatment": "In treatment (on MOUD or in a programme)",
    "active_no_plan": "Active, no plan",
    "active_with_plan": "Active, with plan",
    "less_than_weekly": "Less than weekly",
    "no_medication": "No medication",
    "no_preference": "No preference",
    "pending_charges": "Pending charges",
}
_HEPATIC = {
    "mild": "Mild (Child-Pugh A)",
    "moderate": "Moderate (Child-Pugh B)",
    "severe": "Severe (Child-Pugh C)",
}


def choice_label(path: str, value: str) -> str:
    if path == "medical.hepatic_impairment" and value in _HEPATIC:
        return _HEPATIC[value]
    return _CHOICE_LABELS.get(value, value.replace("_", " ").capitalize())


def _unwrap(annotation: Any) -> tuple[Any, list[Any]]:
    """Strip Optional and Annotated; return the bare type and the constraint metadata."""
    meta: list[Any] = []
    while True:
        origin = get_origin(annotation)
        if origin is Annotated:
            args = get_args(annotation)
            annotation = args[0]
            for m in args[1:]:
                meta.extend(getattr(m, "metadata", None) or [m])
            continue
        if origin in (Union, types.UnionType):
            rest = [a for a in get_args(annotation) if a is not type(None)]
            if len(rest) == 1:
                annotation = rest[0]
                continue
        return annotation, meta


def _bound(meta: list[Any], *names: str) -> float | None:
    for m in meta:
        for name in names:
            value = getattr(m, name, None)
            if isinstance(value, int | float):
                return float(value)
    return None


def _spec(path: str, annotation: Any, meta: list[Any], required: bool) -> FieldSpec:
    bare, more = _unwrap(annotation)
    meta = meta + more
    label, help_text = field_label(path), field_help(path)

    def make(
        kind: Kind, choices: tuple[str, ...] = (), lo: float | None = None, hi: float | None = None
    ) -> FieldSpec:
        return FieldSpec(path, label, kind, choices, required, lo, hi, help_text)

    if get_origin(bare) is list:
        inner, _ = _unwrap(get_args(bare)[0])
        if get_origin(inner) is Literal:
            return make("multi", tuple(get_args(inner)))
        return make("textlist")
    if get_origin(bare) is Literal:
        return make("choice", tuple(get_args(bare)))
    kinds: dict[Any, Kind] = {bool: "bool", int: "int", float: "number", date: "date", str: "text"}
    if bare not in kinds:
        raise TypeError(f"intake field {path} has a type the form does not know")
    return make(kinds[bare], lo=_bound(meta, "ge", "gt"), hi=_bound(meta, "le", "lt"))


def _leaves(model: type[BaseModel], prefix: str = "") -> list[FieldSpec]:
    out: list[FieldSpec] = []
    for name, info in model.model_fields.items():
        path = prefix + name
        bare, _ = _unwrap(info.annotation)
        if isinstance(bare, type) and issubclass(bare, BaseModel):
            out.extend(_leaves(bare, path + "."))
        else:
            out.append(_spec(path, info.annotation, list(info.metadata), info.is_required()))
    return out


@cache
def _catalogue() -> tuple[tuple[FieldSpec, ...], tuple[Group, ...]]:
    fields = tuple(_leaves(Intake))
    groups = []
    for key, legend, sections in _GROUPS:
        members = tuple(f for s in sections for f in fields if f.path == s or f.path.startswith(s + "."))
        groups.append(Group(key, legend, members))
    placed = {f.path for g in groups for f in g.fields}
    assert placed == {f.path for f in fields}, "every intake field must belong to a form group"
    return fields, tuple(groups)


FIELDS, GROUPS = _catalogue()
FIELD_BY_PATH: dict[str, FieldSpec] = {f.path: f for f in FIELDS}


def set_path(target: dict[str, Any], path: str, value: Any) -> None:
    *parents, leaf = path.split(".")
    node = target
    for part in parents:
        node = node.setdefault(part, {})
    node[leaf] = value


def field_for_problem(problem_field: str) -> str | None:
    """The form field a problem belongs to ("substance_use.opioids[0]" -> "substance_use.opioids")."""
    path = problem_field.split("[", 1)[0]
    return path if path in FIELD_BY_PATH else None


_BOOLS = {"yes": True, "true": True, "no": False, "false": False}


NONE_OPTION = "none"
"""The answer that makes a list field known and empty ("no mental health conditions"), where
leaving it blank means unknown. Offered by the form's checkbox groups and the Questionnaire."""


EXPLICIT_NONE: dict[str, str] = {"current_treatment.moud": "None (not on MOUD)"}
"""Choice fields with a "None" option that means known and empty (an explicit null), where no
answer means unknown: "not on MOUD" is an answer. Offered by the web form and the Questionnaire."""


def explicitly_none(intake: Mapping[str, Any], path: str) -> bool:
    """True when ``path`` is present in the intake dict with the value null."""
    *parents, leaf = path.split(".")
    node: Any = intake
    for part in parents:
        node = node.get(part) if isinstance(node, Mapping) else None
    return isinstance(node, Mapping) and leaf in node and node[leaf] is None


def list_answer(spec: FieldSpec, chosen: Sequence[str]) -> tuple[list[str] | None, str | None]:
    """The answers to a list field -> (list, or None when unanswered; problem message or None).

    Shared by the web form and the FHIR QuestionnaireResponse: ``none`` alone is the empty list.
    """
    if not chosen:
        return None, None
    if any(v.lower() == NONE_OPTION for v in chosen):
        return ([], None) if len(chosen) == 1 else (None, "cannot combine 'None' with other answers")
    if spec.kind == "multi" and any(v not in spec.choices for v in chosen):
        return None, "has an option that is not on the list"
    return list(chosen), None


def _convert(spec: FieldSpec, values: Sequence[str]) -> tuple[Any, str | None]:
    """One form field -> (JSON value or None for 'not recorded', problem message or None)."""
    values = [v.strip() for v in values if v is not None]
    if spec.kind == "multi":
        return list_answer(spec, [v for v in values if v])
    text = values[-1] if values else ""
    if text == "" or (spec.kind == "bool" and text == "unknown"):
        return None, None
    if spec.kind == "textlist":
        return list_answer(spec, [part.strip() for part in text.split(",") if part.strip()])
    if spec.kind == "bool":
        if text.lower() not in _BOOLS:
            return None, "must be yes, no or unknown"
        return _BOOLS[text.lower()], None
    if spec.kind == "int":
        try:
            return int(text), None
        except ValueError:
            return None, "must be a whole number"
    if spec.kind == "number":
        try:
            number = float(text)
        except ValueError:
            return None, "must be a number"
        if number != number or number in (float("inf"), float("-inf")):
            return None, "must be a finite number"
        return number, None
    if spec.kind == "date":
        try:
            date.fromisoformat(text)
        except ValueError:
            return None, "must be a date in the format YYYY-MM-DD"
        return text, None
    if spec.kind == "choice" and text not in spec.choices:
        return None, "must be one of the listed options"
    return text, None


def _text(value: Any) -> str:
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def form_values(intake: Mapping[str, Any]) -> dict[str, list[str]]:
    """An intake dict -> what the form shows (path -> submitted strings): the inverse of intake_from_form."""
    values: dict[str, list[str]] = {}
    for spec in FIELDS:
        node: Any = intake
        for part in spec.path.split("."):
            node = node.get(part) if isinstance(node, Mapping) else None
        if node is None:
            continue
        if spec.kind == "multi":
            values[spec.path] = [str(v) for v in node] or [NONE_OPTION]
        elif spec.kind == "textlist":
            values[spec.path] = [", ".join(str(v) for v in node) or NONE_OPTION]
        else:
            values[spec.path] = [_text(node)]
    for path in EXPLICIT_NONE:
        if explicitly_none(intake, path):
            values[path] = [NONE_OPTION]
    return values


def intake_from_form(form: Mapping[str, Sequence[str]]) -> tuple[dict[str, Any], list[FieldProblem]]:
    """Form values (name -> list of strings) -> intake dict and the problems found on the way.

    Empty fields, "unknown" radios and unticked checkbox groups are omitted: missing is not
    "no"; a list answered "None" is the empty list. Problems never quote what was typed.
    """
    intake: dict[str, Any] = {}
    problems: list[FieldProblem] = []
    for spec in FIELDS:
        if spec.path in EXPLICIT_NONE and [v.strip() for v in form.get(spec.path, ())][-1:] == [NONE_OPTION]:
            set_path(intake, spec.path, None)  # known and empty, e.g. not on MOUD
            continue
        value, problem = _convert(spec, list(form.get(spec.path, ())))
        if problem:
            problems.append(FieldProblem(spec.path, problem))
        elif value is not None:
            set_path(intake, spec.path, value)
    return intake, problems
