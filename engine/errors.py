"""carepath's exceptions, in one tree.

    CarepathError
    ├── IntakeError        bad input: one FieldProblem per offending field (exit 2 / HTTP 422).
    │                      Messages name the field and what is expected; never the value.
    ├── RulePackError      the rule pack is broken (unreadable YAML, unknown fact, bad citation).
    │                      Fail closed: no plan is produced from a broken pack.
    └── EngineError        the rules engine failed during an evaluation (e.g. an exception
                           inside a rule action). The request is refused; no partial plan.

Expected clinical problems (a contraindication, a missing answer) are never exceptions: they
are values in the plan, shown to the clinician.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

__all__ = ["CarepathError", "IntakeError", "RulePackError", "EngineError", "FieldProblem"]


class CarepathError(Exception):
    """Base of every error carepath raises on purpose."""


@dataclass(frozen=True)
class FieldProblem:
    field: str
    message: str

    def __str__(self) -> str:
        return f"{self.field}: {self.message}"


class IntakeError(CarepathError):
    # Deliberately not a ValueError: pydantic would wrap it and lose the field paths.
    def __init__(self, problems: list[FieldProblem]) -> None:
        self.problems = problems
        super().__init__("; ".join(str(p) for p in problems))


class RulePackError(CarepathError):
    pass


class EngineError(CarepathError):
    pass


_EXPECTED = {
    "missing": "is required",
    "extra_forbidden": "is not a field of the intake (unknown fields are rejected)",
    "int_type": "must be a whole number",
    "int_from_float": "must be a whole number",
    "int_parsing": "must be a whole number",
    "float_type": "must be a number",
    "float_parsing": "must be a number",
    "finite_number": "must be a finite number",
    "bool_type": "must be true or false",
    "bool_parsing": "must be true or false",
    "string_type": "must be a string",
    "list_type": "must be a list",
    "model_type": "must be an object",
    "model_attributes_type": "must be an object",
    "dict_type": "must be an object",
    "date_type": "must be a date in the format YYYY-MM-DD",
    "date_parsing": "must be a date in the format YYYY-MM-DD",
    "date_from_datetime_parsing": "must be a date in the format YYYY-MM-DD",
    "date_from_datetime_inexact": "must be a date without a time of day",
    "json_invalid": "is not valid JSON",
    "json_type": "is not valid JSON",
}


def _path(loc: tuple[Any, ...], kind: str, known_fields: frozenset[str]) -> str:
    parts: list[str] = []
    for i, part in enumerate(loc):
        last = i == len(loc) - 1
        if isinstance(part, int):
            parts.append(f"[{part}]")
        elif kind == "extra_forbidden" and last and part not in known_fields:
            # An unknown key may itself be patient data (a name used as a key): only a key
            # that is a contract field name (misplaced, not invented) is shown.
            parts.append("(unrecognised field name)")
        else:
            parts.append(str(part))
    text = ".".join(parts).replace(".[", "[")
    return text or "(intake)"


def _message(err: dict[str, Any]) -> str:
    kind = err["type"]
    ctx = err.get("ctx") or {}
    if kind in _EXPECTED:
        return _EXPECTED[kind]
    if kind == "literal_error":
        return f"must be one of {ctx.get('expected', 'the listed values')}"
    if kind in ("greater_than_equal", "greater_than", "less_than_equal", "less_than"):
        words = {
            "greater_than_equal": "at least",
            "greater_than": "greater than",
            "less_than_equal": "at most",
            "less_than": "less than",
        }
        bound = next(iter(ctx.values()), "the limit")
        return f"must be {words[kind]} {bound}"
    if kind in ("too_long", "string_too_long"):
        return f"is too long (at most {ctx.get('max_length', 'the limit')})"
    if kind in ("too_short", "string_too_short"):
        return f"is too short (at least {ctx.get('min_length', 'the limit')})"
    if kind == "value_error" and "error" in ctx:
        return str(ctx["error"])
    return "has an invalid value"


def problems_from_validation(exc: Any, known_fields: frozenset[str] = frozenset()) -> list[FieldProblem]:
    """Turn a pydantic ValidationError into field problems without echoing any input.

    ``known_fields``: the field names of the contract; an unknown key is named only when it is
    one of them (e.g. ``age`` at the top level), never when it could be submitted data.
    """
    problems: list[FieldProblem] = []
    for err in exc.errors(include_input=False, include_url=False):
        loc = tuple(err.get("loc", ()))
        if err["type"] in ("json_invalid", "json_type"):
            problems.append(FieldProblem("(intake)", "is not valid JSON: expected a JSON object"))
            continue
        problems.append(FieldProblem(_path(loc, err["type"], known_fields), _message(err)))
    return problems or [FieldProblem("(intake)", "is not a valid intake")]
