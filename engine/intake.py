"""The intake a clinician submits (contract §1), validated strictly at the boundary.

Every model is frozen and forbids unknown fields. Every field but ``assessment_date`` and
``patient.age`` may be missing: missing means *unknown*, never *no*. JSON is parsed in strict
mode (``"34"`` is not an age, ``1`` is not ``true``).
"""

from __future__ import annotations

import hashlib
import json
from datetime import date
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, model_validator

from .errors import FieldProblem, IntakeError, problems_from_validation

__all__ = [
    "Intake",
    "parse_intake_json",
    "parse_intake_obj",
    "intake_sha256",
    "canonical_intake_json",
    "canonical_intake_dict",
    "MAX_INTAKE_BYTES",
    "FIELD_PATHS",
    "FIELD_PREREQUISITES",
]

MAX_INTAKE_BYTES = 256 * 1024
"""An intake is a few kilobytes; anything larger than this is refused unread."""

Opioid = Literal[
    "heroin",
    "fentanyl",
    "prescription_opioids",
    "illicit_methadone",
    "illicit_buprenorphine",
    "other_opioid",
]
Medication = Literal["methadone", "buprenorphine", "naltrexone"]
Condition = Literal[
    "depression", "anxiety", "ptsd", "bipolar", "psychosis", "personality_disorder", "adhd", "other"
]
ShortText = Annotated[str, StringConstraints(max_length=200)]
DrugName = Annotated[str, StringConstraints(min_length=1, max_length=100)]
Count = Annotated[int, Field(ge=0, le=500)]
Hours = Annotated[float, Field(ge=0, le=24 * 365 * 100, allow_inf_nan=False)]


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid", strict=True)


class Patient(_Frozen):
    id: ShortText | None = None
    name: ShortText | None = None
    age: Annotated[int, Field(ge=12, le=110)]
    sex_at_birth: Literal["female", "male", "intersex", "unknown"] | None = None
    pregnant: bool | None = None
    gestational_weeks: Annotated[int, Field(ge=1, le=45)] | None = None


class SubstanceUse(_Frozen):
    opioids: Annotated[list[Opioid], Field(max_length=6)] | None = None
    route: Literal["injection", "smoking", "intranasal", "oral"] | None = None
    frequency: Literal["daily", "weekly", "less_than_weekly"] | None = None
    last_use_hours: Hours | None = None
    dsm5_criteria_met: Annotated[int, Field(ge=0, le=11)] | None = None
    cows_score: Annotated[int, Field(ge=0, le=48)] | None = None
    physically_dependent: bool | None = None
    benzodiazepines: Literal["none", "prescribed", "illicit"] | None = None
    benzodiazepine_daily_use: bool | None = None
    alcohol: Literal["none", "moderate", "heavy"] | None = None
    stimulants: bool | None = None
    xylazine_exposure: bool | None = None


class CurrentTreatment(_Frozen):
    moud: Medication | None = None
    dose_mg: Annotated[float, Field(ge=0, le=2000, allow_inf_nan=False)] | None = None
    months_on_moud: Annotated[float, Field(ge=0, le=1200, allow_inf_nan=False)] | None = None
    stable: bool | None = None


class History(_Frozen):
    withdrawal_episodes: Count | None = None
    outpatient_episodes: Count | None = None
    residential_episodes: Count | None = None
    relapses_after_outpatient: Count | None = None
    prior_moud: Annotated[list[Medication], Field(max_length=3)] | None = None
    overdoses_last_year: Count | None = None


class MentalHealth(_Frozen):
    conditions: Annotated[list[Condition], Field(max_length=8)] | None = None
    suicidal_ideation: Literal["none", "passive", "active_no_plan", "active_with_plan"] | None = None
    recent_suicide_attempt: bool | None = None
    in_psychiatric_care: bool | None = None


class Medical(_Frozen):
    qtc_ms: Annotated[int, Field(ge=200, le=900)] | None = None
    hepatic_impairment: Literal["none", "mild", "moderate", "severe"] | None = None
    hiv: bool | None = None
    hcv: bool | None = None
    chronic_pain: bool | None = None
    prescribed_opioid_analgesics: bool | None = None
    upcoming_surgery: bool | None = None
    withdrawal_seizure_history: bool | None = None
    interacting_medications: Annotated[list[DrugName], Field(max_length=50)] | None = None


class Social(_Frozen):
    can_leave_work: bool | None = None
    caregiver: bool | None = None
    privacy_concern: bool | None = None
    housing: Literal["stable", "unstable", "homeless"] | None = None
    home_supports_recovery: bool | None = None
    support_system: Literal["none", "limited", "strong"] | None = None
    legal: Literal["none", "probation", "parole", "pending_charges"] | None = None
    days_since_release: Annotated[int, Field(ge=0, le=36500)] | None = None


class Preferences(_Frozen):
    medication: (
        Literal["methadone", "buprenorphine", "naltrexone", "no_medication", "no_preference"] | None
    ) = None
    setting: Literal["residential", "outpatient", "no_preference"] | None = None
    goal: Literal["abstinence", "reduction", "undecided"] | None = None
    declines_counselling: bool | None = None
    language: Literal["en", "es", "de"] | None = None


class Intake(_Frozen):
    assessment_date: date
    jurisdiction: Literal["US", "UK", "DE", "CA"] = "US"
    patient: Patient
    stage: (
        Literal["active_use", "in_withdrawal", "post_withdrawal", "in_treatment", "remission", "relapse"]
        | None
    ) = None
    readiness: Literal["precontemplation", "contemplation", "preparation", "action", "maintenance"] | None = (
        None
    )
    substance_use: SubstanceUse = SubstanceUse()
    current_treatment: CurrentTreatment = CurrentTreatment()
    history: History = History()
    mental_health: MentalHealth = MentalHealth()
    medical: Medical = Medical()
    social: Social = Social()
    preferences: Preferences = Preferences()

    @model_validator(mode="after")
    def _clinically_possible(self) -> Intake:
        problems = list(_impossible_combinations(self))
        if problems:
            raise IntakeError(problems)
        return self


def _impossible_combinations(intake: Intake) -> list[FieldProblem]:
    """Combinations no real patient can have. Each names the field to correct."""
    p, ct = intake.patient, intake.current_treatment
    found: list[FieldProblem] = []
    if p.pregnant and p.sex_at_birth == "male":
        found.append(FieldProblem("patient.pregnant", "cannot be true when sex_at_birth is 'male'"))
    if p.gestational_weeks is not None and p.pregnant is not True:
        found.append(
            FieldProblem("patient.gestational_weeks", "is only allowed when patient.pregnant is true")
        )
    if ct.moud is None and (ct.dose_mg is not None or ct.months_on_moud is not None):
        field = "dose_mg" if ct.dose_mg is not None else "months_on_moud"
        found.append(FieldProblem(f"current_treatment.{field}", "needs current_treatment.moud to be set"))
    if intake.stage == "in_withdrawal" and intake.substance_use.physically_dependent is False:
        found.append(
            FieldProblem(
                "substance_use.physically_dependent",
                "cannot be false when stage is 'in_withdrawal' (withdrawal implies dependence)",
            )
        )
    return found


def parse_intake_json(raw: bytes | str) -> Intake:
    """Parse and validate an intake from JSON text. Raises IntakeError, never echoes values."""
    size = len(raw.encode() if isinstance(raw, str) else raw)
    if size == 0:
        raise IntakeError([FieldProblem("(intake)", "is empty: expected a JSON object")])
    if size > MAX_INTAKE_BYTES:
        raise IntakeError(
            [FieldProblem("(intake)", f"is too large: at most {MAX_INTAKE_BYTES} bytes allowed")]
        )
    try:
        return Intake.model_validate_json(raw, strict=True)
    except IntakeError:
        raise
    except ValueError as exc:  # pydantic.ValidationError is a ValueError
        raise IntakeError(problems_from_validation(exc, _FIELD_NAMES)) from None


def _field_paths(model: type[BaseModel], prefix: str = "") -> list[str]:
    paths: list[str] = []
    for name, info in model.model_fields.items():
        if isinstance(info.annotation, type) and issubclass(info.annotation, BaseModel):
            paths += _field_paths(info.annotation, f"{prefix}{name}.")
        else:
            paths.append(prefix + name)
    return paths


FIELD_PATHS: tuple[str, ...] = tuple(_field_paths(Intake))
"""Every intake field as a dotted path (``substance_use.cows_score``), in contract order."""

FIELD_PREREQUISITES = {
    "current_treatment.dose_mg": "current_treatment.moud",
    "current_treatment.months_on_moud": "current_treatment.moud",
}
"""Fields the intake accepts only once another is answered (see _impossible_combinations)."""

_FIELD_NAMES = frozenset(part for path in FIELD_PATHS for part in path.split("."))
"""Every field name of the contract: the only unknown keys an error message may repeat."""


def parse_intake_obj(obj: Any) -> Intake:
    """Validate an already-decoded JSON value with exactly the JSON rules."""
    try:
        raw = json.dumps(obj, allow_nan=False)
    except (TypeError, ValueError):
        raise IntakeError([FieldProblem("(intake)", "must be plain JSON data")]) from None
    return parse_intake_json(raw)


def canonical_intake_dict(intake: Intake) -> dict[str, Any]:
    """The validated intake as JSON data without nulls: a null means the same as a missing
    field, except an explicit ``current_treatment.moud: null`` ("no MOUD", see
    ``engine.derive``), which is kept (the form and the Questionnaire show it as "None")."""
    data = intake.model_dump(mode="json", exclude_none=True)
    if intake.current_treatment.moud is None and "moud" in intake.current_treatment.model_fields_set:
        data.setdefault("current_treatment", {})["moud"] = None
    return data


def canonical_intake_json(intake: Intake) -> str:
    """Field-order independent, whitespace-free JSON of ``canonical_intake_dict``: two intakes
    that mean different things never share a hash (and a plan id)."""
    data = canonical_intake_dict(intake)
    return json.dumps(data, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def intake_sha256(intake: Intake) -> str:
    return hashlib.sha256(canonical_intake_json(intake).encode()).hexdigest()
