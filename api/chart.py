"""Read the chart: standard FHIR resources -> a carepath intake, and every field it could not fill.

A pure function (no HTTP, no database, no clock): ``intake_from_chart(chart, as_of=...)`` takes
the resources an EHR holds (Patient, Condition, MedicationRequest / MedicationStatement,
Observation, Encounter) and the value sets of ``api/valuesets/chart.yaml`` and returns

    ChartIntake.intake     the intake fields the chart settles (a dict, not yet validated)
    ChartIntake.readings   what was read, field by field, with the chart evidence behind it
    ChartIntake.unfilled   every intake field it could not fill, each with the reason
    ChartIntake.notes      things the clinician must check (e.g. methadone for pain or OUD?)
    ChartIntake.relevant   whether the chart shows opioid use disorder or its treatment at all

Missing is not "no": an absent diagnosis never becomes ``false``. A field is set to "none" or
``false`` only where the chart can say so: the medication list was provided and holds no opioid
analgesic (``prescribed_opioid_analgesics: false``) or no medicine of carepath's interaction
table (``interacting_medications: []``). Lookback windows are named constants below, each with
its reason. ``merge_intakes(questionnaire, chart)`` lets a carepath QuestionnaireResponse win
field by field.
"""

from __future__ import annotations

import copy
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any, Literal

from carepath.api.terminology import Match, ValueSet, chart_valuesets
from carepath.engine.derive import KNOWN_DRUGS
from carepath.engine.intake import FIELD_PATHS, FIELD_PREREQUISITES
from carepath.engine.labels import field_label

__all__ = [
    "Chart",
    "ChartIntake",
    "Reading",
    "Unfilled",
    "intake_from_chart",
    "merge_intakes",
    "FIELD_SOURCES",
    "NOT_FROM_CHART",
    "COWS_MAX_AGE",
    "QTC_MAX_AGE",
    "PREGNANCY_CONDITION_MAX_AGE",
    "PREGNANCY_POSITIVE_MAX_AGE",
    "PREGNANCY_NEGATIVE_MAX_AGE",
    "WITHDRAWAL_MAX_AGE",
    "LOOKBACK_YEAR",
    "LIVER_TESTS_MAX_AGE",
]

# ---------------------------------------------------------------- lookback windows (with reasons)
COWS_MAX_AGE = timedelta(hours=24)
"""COWS scores withdrawal at one moment and changes by the hour (S24): only today's counts."""
WITHDRAWAL_MAX_AGE = timedelta(days=3)
"""A withdrawal diagnosis older than 72 h no longer says the patient is in withdrawal (F-51)."""
QTC_MAX_AGE = timedelta(days=180)
"""Design inference: an ECG within 6 months stands for the baseline QTc; older ones are shown only."""
PREGNANCY_CONDITION_MAX_AGE = timedelta(days=300)
"""A pregnancy diagnosis recorded more than ~43 weeks ago cannot be the current pregnancy."""
PREGNANCY_POSITIVE_MAX_AGE = timedelta(days=30)
"""Design inference: a positive hCG or a 'pregnant' status within 30 days means pregnant now."""
PREGNANCY_NEGATIVE_MAX_AGE = timedelta(days=7)
"""Design inference: a negative hCG or 'not pregnant' status counts for 7 days only."""
LOOKBACK_YEAR = timedelta(days=365)
"""Overdoses and suicide attempts 'in the last year' (the intake's own window)."""
LIVER_TESTS_MAX_AGE = timedelta(days=365)
"""Design inference: normal ALT, AST and bilirubin within a year, with no liver disease on the
problem list, is taken as no hepatic impairment (Child-Pugh B/C needs raised bilirubin or a
cirrhosis diagnosis). The clinical lead owns this inference."""

_ACTIVE_CONDITION = {"active", "recurrence", "relapse"}
_REMISSION_CONDITION = {"remission", "resolved", "inactive"}
_REFUTED = {"refuted", "entered-in-error"}
_HISTORY_SETS = {
    "opioid_use_disorder",
    "oud_in_remission",
    "opioid_overdose",
    "suicide_attempt",
    "sedative_withdrawal_delirium",
}
"""Value sets read whatever the clinical status: a diagnosis ever made, or a dated event."""
_ACTIVE_REQUEST = {"active", "on-hold"}
_ACTIVE_STATEMENT = {"active", "intended"}
_OBS_DONE = {"final", "amended", "corrected", "preliminary"}
_BIRTHSEX_URL = "http://hl7.org/fhir/us/core/StructureDefinition/us-core-birthsex"
_BIRTHSEX = {"F": "female", "M": "male", "UNK": "unknown"}
_MENTAL = ("depression", "anxiety", "ptsd", "bipolar", "psychosis", "personality_disorder", "adhd")
_NEVER_READ = {"patient.id", "patient.name"}
"""Identifiers stay out of the intake built from the chart: carepath does not need them."""

FIELD_SOURCES: dict[str, str] = {
    "assessment_date": "the date of the hook call (the visit)",
    "jurisdiction": "the service's configuration (CAREPATH_CDS_JURISDICTION)",
    "patient.age": "Patient.birthDate",
    "patient.sex_at_birth": "Patient US Core birthsex extension (Patient.gender is not sex at birth)",
    "patient.pregnant": "Observation pregnancy status / hCG; Condition pregnancy",
    "patient.gestational_weeks": "Observation gestational age; Condition Z3A.xx",
    "stage": "MedicationRequest MOUD (in treatment); Condition OUD in remission; opioid withdrawal (3 days)",
    "substance_use.opioids": "Condition fentanyl or heroin dependence",
    "substance_use.cows_score": "Observation COWS total (24 hours)",
    "substance_use.physically_dependent": "Condition opioid withdrawal (3 days)",
    "substance_use.benzodiazepines": "MedicationRequest benzodiazepine; Condition sedative use disorder",
    "substance_use.alcohol": "Condition alcohol use disorder (heavy)",
    "substance_use.stimulants": "Condition cocaine or stimulant use disorder",
    "current_treatment.moud": "MedicationRequest / MedicationStatement buprenorphine, methadone, naltrexone",
    "current_treatment.dose_mg": "the MOUD order's dose in mg and frequency",
    "current_treatment.months_on_moud": "MedicationStatement.effectivePeriod.start of the MOUD",
    "history.overdoses_last_year": "Condition / Encounter reason opioid poisoning (365 days; a lower bound)",
    "mental_health.conditions": "Condition depression, anxiety, PTSD, bipolar, psychosis, personality, ADHD",
    "mental_health.recent_suicide_attempt": "Condition suicide attempt (365 days)",
    "medical.qtc_ms": "Observation QTc (180 days)",
    "medical.hepatic_impairment": "Observation ALT, AST, bilirubin (365 days); Condition liver disease",
    "medical.hiv": "Condition HIV",
    "medical.hcv": "Condition hepatitis C",
    "medical.chronic_pain": "Condition chronic pain",
    "medical.prescribed_opioid_analgesics": "MedicationRequest opioid analgesic",
    "medical.withdrawal_seizure_history": "Condition alcohol or sedative withdrawal delirium",
    "medical.interacting_medications": "MedicationRequest in carepath's interaction table",
    "social.housing": "Condition homelessness / housing instability (Z59)",
}
"""Which chart data can fill each intake field (the mapping table of docs/interop.md)."""

NOT_FROM_CHART = "not held in standard FHIR chart data: ask the patient"


@dataclass(frozen=True)
class Chart:
    """The chart as FHIR resources (plain JSON dicts). ``None`` = not provided (unknown);
    an empty list = provided and empty (the EHR holds none)."""

    patient: Mapping[str, Any] | None = None
    conditions: Sequence[Mapping[str, Any]] | None = None
    medications: Sequence[Mapping[str, Any]] | None = None
    observations: Sequence[Mapping[str, Any]] | None = None
    encounters: Sequence[Mapping[str, Any]] | None = None


@dataclass(frozen=True)
class Reading:
    field: str
    value: Any
    evidence: str
    how: Literal["code", "name", "inference"] = "code"


@dataclass(frozen=True)
class Unfilled:
    field: str
    label: str
    reason: str


@dataclass(frozen=True)
class ChartIntake:
    intake: dict[str, Any]
    readings: list[Reading]
    unfilled: list[Unfilled]
    notes: list[str]
    relevant: bool
    has_naloxone: bool | None
    """An active naloxone order or statement (None when no medication list was provided)."""

    def filled(self) -> set[str]:
        return {r.field for r in self.readings}


def intake_from_chart(chart: Chart, *, as_of: datetime, jurisdiction: str = "US") -> ChartIntake:
    """The intake the chart supports as of ``as_of`` (an aware datetime: the hook call)."""
    return _Reader(chart, as_of.astimezone(UTC), jurisdiction).read()


def merge_intakes(primary: Mapping[str, Any] | None, secondary: Mapping[str, Any]) -> dict[str, Any]:
    """Field by field: a value in ``primary`` (the clinician's QuestionnaireResponse) wins over
    ``secondary`` (the chart); lists are taken whole, never mixed."""
    out = copy.deepcopy(dict(secondary))
    for key, value in (primary or {}).items():
        if isinstance(value, Mapping) and isinstance(out.get(key), Mapping):
            out[key] = merge_intakes(value, out[key])
        else:
            out[key] = copy.deepcopy(value)
    return out


# ---------------------------------------------------------------- the reader


class _Reader:
    def __init__(self, chart: Chart, now: datetime, jurisdiction: str) -> None:
        self.chart = chart
        self.now = now
        self.today = now.date()
        self.jurisdiction = jurisdiction
        self.vs = chart_valuesets()
        self.intake: dict[str, Any] = {}
        self.readings: list[Reading] = []
        self.reasons: dict[str, str] = {}
        self.notes: list[str] = []

    # -- small helpers

    def fill(self, path: str, value: Any, evidence: str, how: str = "code") -> None:
        node = self.intake
        *parents, leaf = path.split(".")
        for part in parents:
            node = node.setdefault(part, {})
        node[leaf] = value
        self.readings = [r for r in self.readings if r.field != path]
        self.readings.append(Reading(path, value, evidence, how))  # type: ignore[arg-type]

    def why(self, path: str, reason: str) -> None:
        self.reasons.setdefault(path, reason)

    def match(self, group: str, name: str, concept: Any) -> Match | None:
        vs: ValueSet = self.vs[group][name]
        return vs.match(concept)

    def age_of(self, when: date | None) -> timedelta | None:
        if when is None:
            return None
        return datetime.combine(self.today, datetime.min.time(), UTC) - datetime.combine(
            when, datetime.min.time(), UTC
        )

    # -- the whole read

    def read(self) -> ChartIntake:
        self.fill("assessment_date", self.today.isoformat(), "date of this visit (hook call)", "inference")
        self.fill("jurisdiction", self.jurisdiction, "service configuration", "inference")
        self._patient()
        conditions = self._conditions()
        meds = self._medications()
        self._stage(conditions, meds)
        self._observations(conditions)
        self._overdoses(conditions)
        relevant = bool(conditions.get("opioid_use_disorder") or meds.get("moud"))
        return ChartIntake(
            intake=self.intake,
            readings=self.readings,
            unfilled=self._unfilled(),
            notes=self.notes,
            relevant=relevant,
            has_naloxone=meds.get("naloxone") if self.chart.medications is not None else None,
        )

    # -- Patient

    def _patient(self) -> None:
        p = self.chart.patient
        if not isinstance(p, Mapping):
            self.why("patient.age", "no Patient resource was provided")
            self.why("patient.sex_at_birth", "no Patient resource was provided")
            return
        born = _date(p.get("birthDate"))
        if born is None:
            self.why("patient.age", "Patient.birthDate is not recorded")
        else:
            age = self.today.year - born.year - ((self.today.month, self.today.day) < (born.month, born.day))
            if 12 <= age <= 110:
                self.fill("patient.age", age, "Patient.birthDate")
            else:
                self.why("patient.age", "the age from Patient.birthDate is outside carepath's range (12-110)")
        sex = _birthsex(p)
        if sex:
            self.fill("patient.sex_at_birth", sex, "Patient US Core birthsex extension")
        else:
            self.why(
                "patient.sex_at_birth", "no US Core birthsex extension (Patient.gender is not sex at birth)"
            )

    # -- Condition

    def _conditions(self) -> dict[str, list[tuple[Mapping[str, Any], Match, date | None]]]:
        found: dict[str, list[tuple[Mapping[str, Any], Match, date | None]]] = {}
        if self.chart.conditions is None:
            self.notes.append("The problem list (Condition) was not available.")
        for cond in self.chart.conditions or ():
            if _status(cond.get("verificationStatus")) in _REFUTED:
                continue
            when = _date(cond.get("onsetDateTime")) or _date(_get(cond, "onsetPeriod", "start"))
            when = when or _date(cond.get("recordedDate"))
            clinical = _status(cond.get("clinicalStatus"))
            for name in self.vs["conditions"]:
                m = self.match("conditions", name, cond.get("code"))
                if m is None:
                    continue
                if name not in _HISTORY_SETS and clinical and clinical not in _ACTIVE_CONDITION:
                    continue
                found.setdefault(name, []).append((cond, m, when))
        self._condition_fields(found)
        return found

    def _condition_fields(
        self, found: Mapping[str, list[tuple[Mapping[str, Any], Match, date | None]]]
    ) -> None:
        def ev(name: str) -> str:
            _, m, when = found[name][0]
            return _evidence("Condition", m, when)

        opioids = [o for o, vs in (("fentanyl", "fentanyl_use"), ("heroin", "heroin_use")) if vs in found]
        if opioids:
            self.fill("substance_use.opioids", opioids, "; ".join(ev(f"{o}_use") for o in opioids))
            self.notes.append("Opioids used were read from diagnoses only: ask about others.")
        conditions = [c for c in _MENTAL if c in found]
        if conditions:
            self.fill("mental_health.conditions", conditions, "; ".join(ev(c) for c in conditions))
        recent = self._within(found.get("suicide_attempt", ()), LOOKBACK_YEAR)
        if recent:
            self.fill(
                "mental_health.recent_suicide_attempt", True, _evidence("Condition", recent[1], recent[2])
            )
        if "suicidal_ideation" in found:
            self.notes.append(
                f"Suicidal ideation is on the problem list ({ev('suicidal_ideation')}): "
                "assess its level today."
            )
            self.why(
                "mental_health.suicidal_ideation",
                "the problem list records suicidal ideation but not its level",
            )
        for name, path in (
            ("hiv", "medical.hiv"),
            ("hcv", "medical.hcv"),
            ("chronic_pain", "medical.chronic_pain"),
        ):
            if name in found:
                self.fill(path, True, ev(name))
        if "sedative_withdrawal_delirium" in found:
            self.fill("medical.withdrawal_seizure_history", True, ev("sedative_withdrawal_delirium"))
        if "alcohol_use_disorder" in found:
            self.fill("substance_use.alcohol", "heavy", ev("alcohol_use_disorder"), "inference")
        if "stimulant_use_disorder" in found:
            self.fill("substance_use.stimulants", True, ev("stimulant_use_disorder"))
        if "sedative_use_disorder" in found:
            self.fill("substance_use.benzodiazepines", "illicit", ev("sedative_use_disorder"), "inference")
        if "homelessness" in found:
            self.fill("social.housing", "homeless", ev("homelessness"))
        elif "housing_instability" in found:
            self.fill("social.housing", "unstable", ev("housing_instability"))
        if "liver_disease" in found:
            self.why(
                "medical.hepatic_impairment",
                f"liver disease on the problem list ({ev('liver_disease')}): grade Child-Pugh",
            )

    def _within(
        self, items: Iterable[tuple[Mapping[str, Any], Match, date | None]], window: timedelta
    ) -> tuple[Mapping[str, Any], Match, date | None] | None:
        dated = [i for i in items if i[2] is not None and (self.age_of(i[2]) or timedelta(0)) <= window]
        return max(dated, key=lambda i: i[2] or date.min) if dated else None

    # -- MedicationRequest / MedicationStatement

    def _medications(self) -> dict[str, Any]:
        found: dict[str, Any] = {"naloxone": False, "moud": None}
        meds = self.chart.medications
        if meds is None:
            self.notes.append("The medication list was not available.")
            return found
        moud: dict[str, tuple[Match, Mapping[str, Any]]] = {}
        benzo: Match | None = None
        analgesic: Match | None = None
        interacting: dict[str, Match] = {}
        for med in meds:
            if not _active_med(med):
                continue
            concept = _med_concept(med)
            kind = self._moud_kind(med, concept)
            if kind is not None:
                moud.setdefault(kind[0], (kind[1], med))
                continue
            if self.match("medications", "naloxone", concept):
                found["naloxone"] = True
                continue
            analgesic = analgesic or self.match("medications", "opioid_analgesics", concept)
            if analgesic is None and (m := self.match("medications", "buprenorphine_ambiguous", concept)):
                self.notes.append(f"Buprenorphine without a product ({m.display}): is it for OUD or pain?")
            benzo = benzo or self.match("medications", "benzodiazepines", concept)
            inter = self.match("medications", "interacting", concept)
            if inter is not None:
                key = inter.term.lower().replace(" ", "_")
                if key in KNOWN_DRUGS:
                    interacting.setdefault(key, inter)
        self._moud_fields(moud)
        found["moud"] = next(iter(moud)) if len(moud) == 1 else None
        if analgesic is not None:
            self.fill(
                "medical.prescribed_opioid_analgesics",
                True,
                _evidence("Medication", analgesic, None),
                analgesic.how,
            )
        else:
            self.fill(
                "medical.prescribed_opioid_analgesics",
                False,
                "no opioid analgesic on the active medication list",
                "inference",
            )
        if benzo is not None and "benzodiazepines" not in self.intake.get("substance_use", {}):
            self.fill(
                "substance_use.benzodiazepines", "prescribed", _evidence("Medication", benzo, None), benzo.how
            )
        names = sorted(interacting)
        evidence = "; ".join(_evidence("Medication", interacting[n], None) for n in names)
        self.fill(
            "medical.interacting_medications",
            names,
            evidence or "no medicine of carepath's interaction table on the active medication list",
            "code" if names else "inference",
        )
        return found

    def _moud_kind(self, med: Mapping[str, Any], concept: Any) -> tuple[str, Match] | None:
        for name, kind in (
            ("moud_buprenorphine", "buprenorphine"),
            ("moud_methadone", "methadone"),
            ("moud_naltrexone", "naltrexone"),
        ):
            m = self.match("medications", name, concept)
            if m is not None:
                return kind, m
        m = self.match("medications", "methadone_any", concept)
        if m is None:
            return None
        if any(self.match("conditions", "opioid_use_disorder", r) for r in med.get("reasonCode") or ()):
            return "methadone", m
        self.notes.append(f"Methadone on the medication list ({m.display}): is it for OUD or for pain?")
        return None

    def _moud_fields(self, moud: Mapping[str, tuple[Match, Mapping[str, Any]]]) -> None:
        if len(moud) > 1:
            self.notes.append("More than one MOUD is on the medication list: confirm which one is current.")
            self.why("current_treatment.moud", "more than one MOUD on the medication list")
            return
        if not moud:
            self.why(
                "current_treatment.moud",
                "no MOUD on the EHR medication list (methadone from an OTP is often not recorded there): ask",
            )
            return
        kind, (m, med) = next(iter(moud.items()))
        self.fill("current_treatment.moud", kind, _evidence("Medication", m, _med_date(med)), m.how)
        dose = _daily_mg(med)
        if dose is not None:
            self.fill("current_treatment.dose_mg", dose, "dose and frequency of the MOUD order", "inference")
        start = _date(_get(med, "effectivePeriod", "start"))
        if start is not None and start <= self.today:
            months = round((self.today - start).days / 30.44, 1)
            self.fill("current_treatment.months_on_moud", months, "MedicationStatement.effectivePeriod.start")

    def _stage(self, conditions: Mapping[str, Any], meds: Mapping[str, Any]) -> None:
        withdrawal = self._within(conditions.get("opioid_withdrawal", ()), WITHDRAWAL_MAX_AGE)
        if withdrawal is not None:
            ev = _evidence("Condition", withdrawal[1], withdrawal[2])
            self.fill("substance_use.physically_dependent", True, ev)
        if meds.get("moud"):
            self.fill("stage", "in_treatment", "a MOUD is on the active medication list", "inference")
        elif withdrawal is not None:
            self.fill("stage", "in_withdrawal", _evidence("Condition", withdrawal[1], withdrawal[2]))
        elif conditions.get("oud_in_remission"):
            _, m, when = conditions["oud_in_remission"][0]
            self.fill("stage", "remission", _evidence("Condition", m, when))

    # -- Observation

    def _observations(self, conditions: Mapping[str, Any]) -> None:
        obs = self.chart.observations
        if obs is None:
            self.notes.append("Observations (COWS, QTc, pregnancy, liver tests) were not available.")
            obs = ()
        by_set: dict[str, list[tuple[Mapping[str, Any], Match, datetime | None]]] = {}
        for o in obs:
            if o.get("status") not in _OBS_DONE:
                continue
            when = _instant(o.get("effectiveDateTime")) or _instant(_get(o, "effectivePeriod", "start"))
            when = when or _instant(o.get("issued"))
            for name in self.vs["observations"]:
                m = self.match("observations", name, o.get("code"))
                if m is not None:
                    by_set.setdefault(name, []).append((o, m, when))
        for items in by_set.values():
            items.sort(key=lambda i: i[2] or datetime.min.replace(tzinfo=UTC), reverse=True)
        self._cows(by_set.get("cows_total", []))
        self._qtc(by_set.get("qtc", []))
        self._pregnancy(by_set, conditions)
        self._liver(by_set, conditions)

    def _fresh(self, when: datetime | None, window: timedelta) -> bool:
        return when is not None and timedelta(0) - timedelta(hours=1) <= self.now - when <= window

    def _cows(self, items: list[tuple[Mapping[str, Any], Match, datetime | None]]) -> None:
        for o, m, when in items:
            value = _number(o)
            if value is None or not float(value).is_integer() or not 0 <= value <= 48:
                continue
            if self._fresh(when, COWS_MAX_AGE):
                self.fill(
                    "substance_use.cows_score", int(value), _evidence("Observation", m, when, value), m.how
                )
            else:
                self.why(
                    "substance_use.cows_score",
                    f"the last COWS ({int(value)}, {_day(when)}) is older than 24 hours: re-score",
                )
            return

    def _qtc(self, items: list[tuple[Mapping[str, Any], Match, datetime | None]]) -> None:
        for o, m, when in items:
            ms = _milliseconds(o)
            if ms is None or not 200 <= ms <= 900:
                continue
            if self._fresh(when, QTC_MAX_AGE):
                self.fill("medical.qtc_ms", ms, _evidence("Observation", m, when, f"{ms} ms"), m.how)
            else:
                self.why("medical.qtc_ms", f"the last QTc ({ms} ms, {_day(when)}) is older than 6 months")
            return

    def _pregnancy(self, by_set: Mapping[str, list[Any]], conditions: Mapping[str, Any]) -> None:
        events: list[tuple[datetime, bool, str]] = []
        for o, m, when in by_set.get("pregnancy_status", []):
            value = o.get("valueCodeableConcept")
            if self.match("answers", "pregnant", value) and self._fresh(when, PREGNANCY_POSITIVE_MAX_AGE):
                events.append((when, True, _evidence("Observation", m, when, "pregnant")))
            elif self.match("answers", "not_pregnant", value) and self._fresh(
                when, PREGNANCY_NEGATIVE_MAX_AGE
            ):
                events.append((when, False, _evidence("Observation", m, when, "not pregnant")))
        for o, m, when in by_set.get("pregnancy_test", []):
            result = _positive(o, self)
            if result is True and self._fresh(when, PREGNANCY_POSITIVE_MAX_AGE):
                events.append((when, True, _evidence("Observation", m, when, "positive")))
            elif result is False and self._fresh(when, PREGNANCY_NEGATIVE_MAX_AGE):
                events.append((when, False, _evidence("Observation", m, when, "negative")))
        recent = self._within(conditions.get("pregnancy", ()), PREGNANCY_CONDITION_MAX_AGE)
        if recent is not None and recent[2] is not None:
            at = datetime.combine(recent[2], datetime.min.time(), UTC)
            events.append((at, True, _evidence("Condition", recent[1], recent[2])))
        if not events:
            return
        when, pregnant, evidence = max(events, key=lambda e: e[0])
        if pregnant and self.intake.get("patient", {}).get("sex_at_birth") == "male":
            self.notes.append("A pregnancy is recorded but sex at birth is male: check the chart.")
            self.why("patient.pregnant", "pregnancy recorded, but sex at birth is male")
            return
        self.fill("patient.pregnant", pregnant, evidence)
        if pregnant:
            self._gestation(by_set.get("gestational_age", []), conditions.get("pregnancy", ()))

    def _gestation(self, items: list[Any], conditions: Iterable[Any]) -> None:
        for o, m, when in items:
            weeks = _weeks(o)
            if weeks is None or when is None or not self._fresh(when, PREGNANCY_CONDITION_MAX_AGE):
                continue
            now_weeks = int(weeks + (self.now - when).days / 7)
            if 1 <= now_weeks <= 45:
                self.fill(
                    "patient.gestational_weeks",
                    now_weeks,
                    _evidence("Observation", m, when, f"{weeks:g} weeks"),
                    "inference",
                )
                return
        for _cond, m, when in conditions:
            code = (m.code or "").upper()
            if code.startswith("Z3A.") and code[4:].isdigit() and 8 <= int(code[4:]) <= 42 and when:
                weeks = int(code[4:]) + (self.today - when).days // 7
                if 1 <= weeks <= 45:
                    self.fill(
                        "patient.gestational_weeks", weeks, _evidence("Condition", m, when), "inference"
                    )
                    return

    def _liver(self, by_set: Mapping[str, list[Any]], conditions: Mapping[str, Any]) -> None:
        if "medical.hepatic_impairment" in self.reasons:  # liver disease: the clinician grades it
            return
        latest = {}
        for name in ("alt", "ast", "bilirubin"):
            fresh = [i for i in by_set.get(name, []) if self._fresh(i[2], LIVER_TESTS_MAX_AGE)]
            if not fresh:
                self.why(
                    "medical.hepatic_impairment",
                    "no recent liver tests (ALT, AST, bilirubin) and no liver diagnosis",
                )
                return
            latest[name] = fresh[0]
        verdicts = {name: _normal(o) for name, (o, _, _) in latest.items()}
        if all(v is True for v in verdicts.values()):
            evidence = "; ".join(
                _evidence("Observation", m, when, "normal") for _, m, when in latest.values()
            )
            self.fill("medical.hepatic_impairment", "none", evidence, "inference")
        elif any(v is False for v in verdicts.values()):
            raised = ", ".join(
                n.upper() if n != "bilirubin" else "bilirubin" for n, v in verdicts.items() if v is False
            )
            self.notes.append(f"Liver tests out of range ({raised}): grade hepatic impairment.")
            self.why("medical.hepatic_impairment", f"liver tests out of range ({raised}): grade Child-Pugh")
        else:
            self.why("medical.hepatic_impairment", "liver tests have no reference range or interpretation")

    # -- overdoses (Condition and Encounter reasons)

    def _overdoses(self, conditions: Mapping[str, Any]) -> None:
        days: dict[date, str] = {}
        for _, m, when in conditions.get("opioid_overdose", ()):
            if when is not None and (self.age_of(when) or timedelta(0)) <= LOOKBACK_YEAR:
                days.setdefault(when, _evidence("Condition", m, when))
        for enc in self.chart.encounters or ():
            when = _date(_get(enc, "period", "start"))
            if when is None or (self.age_of(when) or timedelta(0)) > LOOKBACK_YEAR:
                continue
            for reason in enc.get("reasonCode") or ():
                m = self.match("conditions", "opioid_overdose", reason)
                if m is not None:
                    days.setdefault(when, _evidence("Encounter", m, when))
        if days:
            self.fill("history.overdoses_last_year", len(days), "; ".join(days[d] for d in sorted(days)))
            self.notes.append("Overdoses counted from this chart only (a lower bound): ask about others.")

    # -- what is left

    def _unfilled(self) -> list[Unfilled]:
        filled = self.filled_paths()
        out = []
        for path in FIELD_PATHS:
            if path in filled or path in _NEVER_READ:
                continue
            needs = FIELD_PREREQUISITES.get(path)
            if needs and needs not in filled:
                continue
            if (
                path == "patient.gestational_weeks"
                and self.intake.get("patient", {}).get("pregnant") is not True
            ):
                continue
            reason = self.reasons.get(path)
            if reason is None:
                source = FIELD_SOURCES.get(path)
                reason = f"not in the chart (looked for: {source})" if source else NOT_FROM_CHART
            out.append(Unfilled(path, field_label(path), reason))
        return out

    def filled_paths(self) -> set[str]:
        return {r.field for r in self.readings}


# ---------------------------------------------------------------- FHIR value helpers (pure)


def _get(resource: Mapping[str, Any], *keys: str) -> Any:
    node: Any = resource
    for key in keys:
        node = node.get(key) if isinstance(node, Mapping) else None
    return node


def _status(concept: Any) -> str | None:
    for c in (concept or {}).get("coding") or () if isinstance(concept, Mapping) else ():
        if isinstance(c, Mapping) and isinstance(c.get("code"), str):
            return str(c["code"])
    return None


def _date(value: Any) -> date | None:
    """A FHIR date or dateTime -> its date (partial dates: the first day they could mean)."""
    if not isinstance(value, str) or len(value) < 4:
        return None
    try:
        if len(value) == 4:
            return date(int(value), 1, 1)
        if len(value) == 7:
            return date(int(value[:4]), int(value[5:7]), 1)
        return date.fromisoformat(value[:10])
    except ValueError:
        return None


def _instant(value: Any) -> datetime | None:
    if not isinstance(value, str):
        return None
    if len(value) <= 10:
        day = _date(value)
        return datetime.combine(day, datetime.min.time(), UTC) if day else None
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def _day(when: datetime | None) -> str:
    return when.date().isoformat() if when else "undated"


def _evidence(kind: str, m: Match, when: date | datetime | None, value: Any = None) -> str:
    code = f"{m.code} " if m.code else ""
    named = "" if m.how == "code" else " (matched by name)"
    shown = f" = {value:g}" if isinstance(value, float) else (f" = {value}" if value is not None else "")
    at = f" ({when.isoformat()[:10]})" if when else ""
    return f"{kind} {code}{m.display}{shown}{at}{named}".strip()


def _birthsex(patient: Mapping[str, Any]) -> str | None:
    for ext in patient.get("extension") or ():
        if isinstance(ext, Mapping) and ext.get("url") == _BIRTHSEX_URL:
            return _BIRTHSEX.get(str(ext.get("valueCode")))
    return None


def _active_med(med: Mapping[str, Any]) -> bool:
    kind = med.get("resourceType")
    if kind == "MedicationRequest":
        return med.get("status") in _ACTIVE_REQUEST and med.get("doNotPerform") is not True
    if kind == "MedicationStatement":
        return med.get("status") in _ACTIVE_STATEMENT
    return False


def _med_concept(med: Mapping[str, Any]) -> Any:
    concept = med.get("medicationCodeableConcept")
    if concept is not None:
        return concept
    ref = _get(med, "medicationReference", "reference")
    if isinstance(ref, str) and ref.startswith("#"):
        for contained in med.get("contained") or ():
            if isinstance(contained, Mapping) and contained.get("id") == ref[1:]:
                return contained.get("code")
    return _get(med, "medicationReference") or {}


def _med_date(med: Mapping[str, Any]) -> date | None:
    return (
        _date(med.get("authoredOn"))
        or _date(_get(med, "effectivePeriod", "start"))
        or _date(med.get("effectiveDateTime"))
    )


def _daily_mg(med: Mapping[str, Any]) -> float | None:
    """Dose x frequency per day, when the order states both in mg and per day; else None."""
    for dosage in (med.get("dosageInstruction") or med.get("dosage") or ())[:1]:
        dose = _get((dosage.get("doseAndRate") or [{}])[0], "doseQuantity")
        repeat = _get(dosage, "timing", "repeat") or {}
        if not isinstance(dose, Mapping) or str(dose.get("unit") or dose.get("code") or "").lower() != "mg":
            return None
        value, freq, period = dose.get("value"), repeat.get("frequency", 1), repeat.get("period", 1)
        if repeat.get("periodUnit") != "d" or not all(
            isinstance(x, int | float) for x in (value, freq, period)
        ):
            return None
        daily = float(value or 0) * float(freq) / float(period)
        return round(daily, 2) if 0 < daily <= 2000 else None
    return None


def _number(o: Mapping[str, Any]) -> float | None:
    if isinstance(o.get("valueInteger"), int):
        return float(o["valueInteger"])
    value = _get(o, "valueQuantity", "value")
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


def _milliseconds(o: Mapping[str, Any]) -> int | None:
    value = _number(o)
    unit = str(_get(o, "valueQuantity", "code") or _get(o, "valueQuantity", "unit") or "ms").lower()
    if value is None:
        return None
    if unit in ("s", "sec", "second", "seconds"):
        value *= 1000
    elif unit not in ("ms", "msec", "millisecond", "milliseconds"):
        return None
    return int(round(value))


def _weeks(o: Mapping[str, Any]) -> float | None:
    value = _number(o)
    unit = str(_get(o, "valueQuantity", "code") or _get(o, "valueQuantity", "unit") or "").lower()
    if value is None:
        return None
    if unit in ("wk", "week", "weeks", "w"):
        return value
    if unit in ("d", "day", "days"):
        return value / 7
    return None


def _positive(o: Mapping[str, Any], reader: _Reader) -> bool | None:
    for concept in (o.get("valueCodeableConcept"), *(o.get("interpretation") or ())):
        if reader.match("answers", "positive", concept):
            return True
        if reader.match("answers", "negative", concept):
            return False
    if isinstance(o.get("valueBoolean"), bool):
        return bool(o["valueBoolean"])
    return None


def _normal(o: Mapping[str, Any]) -> bool | None:
    """Within its reference range (or interpreted N): True; outside: False; unknown: None."""
    for concept in o.get("interpretation") or ():
        code = _status(concept)
        if code == "N":
            return True
        if code in ("H", "HH", "L", "LL", "A", "AA", "HU", "LU"):
            return False
    value = _number(o)
    ranges = o.get("referenceRange") or ()
    if value is None or not ranges:
        return None
    low = _get(ranges[0], "low", "value")
    high = _get(ranges[0], "high", "value")
    if not isinstance(high, int | float):
        return None
    return value <= high and (not isinstance(low, int | float) or value >= low)
