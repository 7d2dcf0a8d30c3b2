"""Valid intakes over the whole contract (§1), from one field table.

- ``intakes()``: a Hypothesis strategy (property tests);
- ``random_intake(rng)``: a seeded plain-random generator (benchmark, batch and memory tests).

Every field but ``assessment_date`` and ``patient.age`` may be missing or, where the model
allows it, an explicit ``null``. Values lean towards the thresholds ``engine.facts`` names, so
both generators cross every band. ``make_possible`` repairs the combinations the intake model
refuses as clinically impossible (pregnant male, gestational weeks without pregnancy, a dose
without a medication, in withdrawal but not dependent).
"""

from __future__ import annotations

import copy
import random
from dataclasses import dataclass
from datetime import date
from typing import Any

from hypothesis import strategies as st

__all__ = ["FIELDS", "TOP", "intakes", "random_intake", "make_possible", "shuffled"]

OPIOIDS = (
    "heroin",
    "fentanyl",
    "prescription_opioids",
    "illicit_methadone",
    "illicit_buprenorphine",
    "other_opioid",
)
MEDICATIONS = ("methadone", "buprenorphine", "naltrexone")
CONDITIONS = (
    "depression",
    "anxiety",
    "ptsd",
    "bipolar",
    "psychosis",
    "personality_disorder",
    "adhd",
    "other",
)
DRUGS = (
    "efavirenz",
    "Rifampicin",
    "st john's wort",
    "fluconazole",
    "citalopram",
    "ondansetron",
    "gabapentin",
    "zolpidem",
    "clarithromycin",
    "ibuprofen",
    "sertraline",
)


@dataclass(frozen=True)
class Int:
    lo: int
    hi: int
    edges: tuple[int, ...] = ()


@dataclass(frozen=True)
class Num:
    lo: float
    hi: float
    edges: tuple[float, ...] = ()


@dataclass(frozen=True)
class Enum:
    values: tuple[str, ...]


@dataclass(frozen=True)
class Bool:
    pass


@dataclass(frozen=True)
class Many:
    values: tuple[str, ...]
    max_size: int


@dataclass(frozen=True)
class Text:
    max_size: int


@dataclass(frozen=True)
class Drugs:
    pass


Spec = Int | Num | Enum | Bool | Many | Text | Drugs

HOURS_EDGES = (0, 0.00001, 6, 11.9, 12, 12.5, 23.9, 24, 48, 72, 72.5, 100, 167, 168, 300, 335, 336, 1000)
FIELDS: dict[str, dict[str, Spec]] = {
    "patient": {
        "id": Text(40),
        "name": Text(40),
        "age": Int(12, 110, (12, 15, 16, 17, 18, 55, 56, 59, 60, 64, 65, 110)),
        "sex_at_birth": Enum(("female", "male", "intersex", "unknown")),
        "pregnant": Bool(),
        "gestational_weeks": Int(1, 45, (1, 12, 36, 45)),
    },
    "substance_use": {
        "opioids": Many(OPIOIDS, 6),
        "route": Enum(("injection", "smoking", "intranasal", "oral")),
        "frequency": Enum(("daily", "weekly", "less_than_weekly")),
        "last_use_hours": Num(0, 24 * 365 * 100, HOURS_EDGES),
        "dsm5_criteria_met": Int(0, 11, (1, 2, 3, 4, 5, 6)),
        "cows_score": Int(0, 48, (4, 5, 7, 8, 12, 13, 24, 25, 36, 37)),
        "physically_dependent": Bool(),
        "benzodiazepines": Enum(("none", "prescribed", "illicit")),
        "alcohol": Enum(("none", "moderate", "heavy")),
        "stimulants": Bool(),
        "xylazine_exposure": Bool(),
    },
    "current_treatment": {
        "moud": Enum(MEDICATIONS),
        "dose_mg": Num(0, 2000, (4, 8, 16, 24, 30, 40, 41, 60, 100, 120)),
        "months_on_moud": Num(0, 1200, (0, 1, 3, 6, 12, 24)),
        "stable": Bool(),
    },
    "history": {
        "withdrawal_episodes": Int(0, 500, (0, 1, 2, 3)),
        "outpatient_episodes": Int(0, 500, (0, 1, 2, 3)),
        "residential_episodes": Int(0, 500, (0, 1, 2)),
        "relapses_after_outpatient": Int(0, 500, (0, 1, 2, 3)),
        "prior_moud": Many(MEDICATIONS, 3),
        "overdoses_last_year": Int(0, 500, (0, 1, 2)),
    },
    "mental_health": {
        "conditions": Many(CONDITIONS, 8),
        "suicidal_ideation": Enum(("none", "passive", "active_no_plan", "active_with_plan")),
        "recent_suicide_attempt": Bool(),
        "in_psychiatric_care": Bool(),
    },
    "medical": {
        "qtc_ms": Int(200, 900, (420, 449, 450, 480, 500, 501, 520)),
        "hepatic_impairment": Enum(("none", "mild", "moderate", "severe")),
        "hiv": Bool(),
        "hcv": Bool(),
        "chronic_pain": Bool(),
        "prescribed_opioid_analgesics": Bool(),
        "upcoming_surgery": Bool(),
        "withdrawal_seizure_history": Bool(),
        "interacting_medications": Drugs(),
    },
    "social": {
        "can_leave_work": Bool(),
        "caregiver": Bool(),
        "privacy_concern": Bool(),
        "housing": Enum(("stable", "unstable", "homeless")),
        "home_supports_recovery": Bool(),
        "support_system": Enum(("none", "limited", "strong")),
        "legal": Enum(("none", "probation", "parole", "pending_charges")),
        "days_since_release": Int(0, 36500, (0, 9, 14, 28, 29, 90)),
    },
    "preferences": {
        "medication": Enum(("methadone", "buprenorphine", "naltrexone", "no_medication", "no_preference")),
        "setting": Enum(("residential", "outpatient", "no_preference")),
        "goal": Enum(("abstinence", "reduction", "undecided")),
        "declines_counselling": Bool(),
        "language": Enum(("en", "es", "de")),
    },
}
"""Section -> field -> value spec. Every field here may also be an explicit null."""

TOP: dict[str, Spec] = {
    "stage": Enum(("active_use", "in_withdrawal", "post_withdrawal", "in_treatment", "remission", "relapse")),
    "readiness": Enum(("precontemplation", "contemplation", "preparation", "action", "maintenance")),
}
"""Top-level fields that may be missing or null (``jurisdiction`` may be missing, never null)."""

JURISDICTIONS = ("US", "UK", "DE", "CA")
FIRST_DATE, LAST_DATE = date(2020, 1, 1), date(2030, 12, 31)


def make_possible(intake: dict[str, Any]) -> dict[str, Any]:
    """Repair the combinations the intake model refuses as clinically impossible (a copy)."""
    d = copy.deepcopy(intake)
    p = d["patient"]
    if p.get("pregnant") is True and p.get("sex_at_birth") == "male":
        p["sex_at_birth"] = "female"
    if p.get("gestational_weeks") is not None and p.get("pregnant") is not True:
        del p["gestational_weeks"]
    ct = d.get("current_treatment")
    if ct is not None and ct.get("moud") is None:
        for name in ("dose_mg", "months_on_moud"):
            if ct.get(name) is not None:
                del ct[name]
    su = d.get("substance_use")
    if d.get("stage") == "in_withdrawal" and su is not None and su.get("physically_dependent") is False:
        su["physically_dependent"] = True
    return d


# --- Hypothesis -------------------------------------------------------------------------


TINY = (0.00001, 0.00002, 0.00004999, 0.00005)
"""Below 1e-4 Python writes floats with an exponent; durable_rules cannot parse "1e-05"."""


def _strategy(spec: Spec) -> st.SearchStrategy[Any]:
    if isinstance(spec, Int):
        return (
            st.one_of(st.sampled_from(spec.edges), st.integers(spec.lo, spec.hi))
            if spec.edges
            else (st.integers(spec.lo, spec.hi))
        )
    if isinstance(spec, Num):
        return st.one_of(
            st.sampled_from(spec.edges + TINY),
            st.integers(int(spec.lo), int(spec.hi)),
            st.floats(spec.lo, spec.hi, allow_nan=False, allow_infinity=False),
        )
    if isinstance(spec, Enum):
        return st.sampled_from(spec.values)
    if isinstance(spec, Bool):
        return st.booleans()
    if isinstance(spec, Many):
        return st.lists(st.sampled_from(spec.values), max_size=spec.max_size)
    if isinstance(spec, Text):
        return st.text(max_size=spec.max_size)
    return st.lists(st.one_of(st.sampled_from(DRUGS), st.text(min_size=1, max_size=30)), max_size=6)


def _nullable(spec: Spec) -> st.SearchStrategy[Any]:
    return st.one_of(st.none(), _strategy(spec))


def _section(name: str) -> st.SearchStrategy[dict[str, Any]]:
    return st.fixed_dictionaries({}, optional={k: _nullable(v) for k, v in FIELDS[name].items()})


def intakes() -> st.SearchStrategy[dict[str, Any]]:
    """Valid intake dicts (JSON data) over the whole contract."""
    patient = st.fixed_dictionaries(
        {"age": _strategy(FIELDS["patient"]["age"])},
        optional={k: _nullable(v) for k, v in FIELDS["patient"].items() if k != "age"},
    )
    optional: dict[str, st.SearchStrategy[Any]] = {
        "jurisdiction": st.sampled_from(JURISDICTIONS),
        **{k: _nullable(v) for k, v in TOP.items()},
        **{name: _section(name) for name in FIELDS if name != "patient"},
    }
    dates = st.dates(FIRST_DATE, LAST_DATE).map(date.isoformat)
    return st.fixed_dictionaries({"assessment_date": dates, "patient": patient}, optional=optional).map(
        make_possible
    )


# --- seeded plain random ----------------------------------------------------------------


def _value(rng: random.Random, spec: Spec) -> Any:
    if isinstance(spec, Int | Num):
        if spec.edges and rng.random() < 0.4:
            return rng.choice(spec.edges)
        hi = min(spec.hi, spec.lo + 200)  # keep most values clinically plausible
        if isinstance(spec, Int):
            return rng.randint(spec.lo, int(hi))
        return round(rng.uniform(spec.lo, hi), rng.choice((0, 1, 2)))
    if isinstance(spec, Enum):
        return rng.choice(spec.values)
    if isinstance(spec, Bool):
        return rng.random() < 0.5
    if isinstance(spec, Many):
        return rng.sample(spec.values, rng.randint(0, min(3, len(spec.values))))
    if isinstance(spec, Text):
        return "".join(rng.choice("abcdefghij ") for _ in range(rng.randint(0, spec.max_size)))
    return rng.sample(DRUGS, rng.randint(0, 3))


def random_intake(rng: random.Random) -> dict[str, Any]:
    """One valid intake; how many fields are answered varies from almost none to nearly all."""
    density = rng.uniform(0.05, 0.95)

    def pick(fields: dict[str, Spec], required: tuple[str, ...] = ()) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for name, spec in fields.items():
            if name in required or rng.random() < density:
                out[name] = None if name not in required and rng.random() < 0.05 else _value(rng, spec)
        return out

    first = FIRST_DATE.toordinal()
    intake: dict[str, Any] = {
        "assessment_date": date.fromordinal(rng.randint(first, LAST_DATE.toordinal())).isoformat(),
        "patient": pick(FIELDS["patient"], required=("age",)),
    }
    if rng.random() < density:
        intake["jurisdiction"] = rng.choice(JURISDICTIONS)
    intake.update(pick(TOP))
    for name, fields in FIELDS.items():
        if name != "patient" and rng.random() < max(density, 0.3):
            intake[name] = pick(fields)
    return make_possible(intake)


def shuffled(value: Any, rng: random.Random) -> Any:
    """The same JSON data with the keys of every object in a random order (lists untouched)."""
    if isinstance(value, dict):
        keys = list(value)
        rng.shuffle(keys)
        return {k: shuffled(value[k], rng) for k in keys}
    if isinstance(value, list):
        return [shuffled(v, rng) for v in value]
    return value
