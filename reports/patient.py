"""Patient identifiers for the report header. The plan never carries them; callers pass them."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

__all__ = ["Patient", "as_patient", "patient_from_intake"]


@dataclass(frozen=True)
class Patient:
    id: str | None = None
    name: str | None = None
    age: int | None = None
    sex_at_birth: str | None = None
    medication_preference: str | None = None


_FIELDS = ("id", "name", "age", "sex_at_birth", "medication_preference")


def as_patient(value: Any) -> Patient | None:
    """Accept a Patient, a mapping {id, name, age, sex_at_birth} or an object with those attributes."""
    if value is None or isinstance(value, Patient):
        return value
    if isinstance(value, Mapping):
        return Patient(**{k: value.get(k) for k in _FIELDS})
    return Patient(**{k: getattr(value, k, None) for k in _FIELDS})


def patient_from_intake(intake: Any) -> Patient:
    """Identifiers and the stated medication preference from a parsed engine Intake."""
    p = intake.patient
    return Patient(
        id=p.id,
        name=p.name,
        age=p.age,
        sex_at_birth=p.sex_at_birth,
        medication_preference=intake.preferences.medication,
    )
