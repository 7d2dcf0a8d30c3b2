"""A synthetic population of clinically coherent intakes, pure and seeded (no I/O, no clock).

Used by ``carepath synth``, ``carepath rules impact --synth``, the lint population check, the
engine benchmark and the property tests. Unlike ``tests/factories.py`` (which crosses every
threshold, including odd ones), these intakes look like a clinic's caseload:

- a story first (stage of care, then substances, then the rest follows from them);
- pregnancy only for female or intersex patients of childbearing age (12-55), gestational weeks
  only when pregnant; a dose and months on treatment only with a current MOUD, and a dose in
  the medication's usual range;
- COWS plausible for the stage and the hours since last use (withdrawal peaks at 24-72 h after a
  short-acting opioid; near 0 in remission or on a stable dose);
- a jurisdiction mix (US 55%, UK, DE, CA 15% each) with its drug supply (fentanyl mostly in
  North America, xylazine in the US) and languages (Spanish in the US, German in Germany);
- unknowns at realistic rates: every optional answer can be missing (COWS is not scored outside
  withdrawal most of the time, a QTc is rarely on file unless on methadone), and about 6% of
  intakes are sparse first contacts.

The same (n, seed) gives the same intakes, and a longer run starts with the shorter one.
The rates are a design inference from the knowledge base's populations, not registry data.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from datetime import date, timedelta
from typing import Any

from .intake import Intake, parse_intake_obj

__all__ = ["synth_intake", "synth_dicts", "synth_intakes", "JURISDICTION_MIX"]

JURISDICTION_MIX = {"US": 0.55, "UK": 0.15, "DE": 0.15, "CA": 0.15}
STAGES = {
    "active_use": 0.42,
    "in_withdrawal": 0.12,
    "post_withdrawal": 0.06,
    "in_treatment": 0.22,
    "remission": 0.08,
    "relapse": 0.10,
}
CONDITIONS = {
    "depression": 0.30,
    "anxiety": 0.25,
    "ptsd": 0.15,
    "adhd": 0.08,
    "bipolar": 0.05,
    "personality_disorder": 0.05,
    "psychosis": 0.03,
    "other": 0.03,
}
MEDICINES = (
    "sertraline",
    "citalopram",
    "quetiapine",
    "gabapentin",
    "pregabalin",
    "zolpidem",
    "efavirenz",
    "rifampicin",
    "fluconazole",
    "ondansetron",
    "clarithromycin",
    "ibuprofen",
    "levothyroxine",
)
DOSE_MG = {"methadone": (30, 160), "buprenorphine": (4, 32), "naltrexone": (50, 50)}
YEAR_START = date(2026, 1, 1)


def _pick(rng: random.Random, weights: dict[str, float]) -> str:
    return rng.choices(list(weights), weights=list(weights.values()))[0]


def _known(rng: random.Random, rate: float = 0.88) -> bool:
    """Was this question answered? (most are, at a clinic's intake)"""
    return rng.random() < rate


def _ask(rng: random.Random, out: dict[str, Any], key: str, rate: float, weights: dict[str, float]) -> None:
    """Answered with probability ``rate``, then one of ``weights``."""
    if _known(rng, rate):
        out[key] = _pick(rng, weights)


class _Story:
    """One patient, built section by section; each section reads what came before."""

    def __init__(self, rng: random.Random, n: int, seed: int) -> None:
        self.rng = rng
        self.jurisdiction = _pick(rng, JURISDICTION_MIX)
        self.stage = _pick(rng, STAGES)
        self.age = self._age()
        self.sex = _pick(rng, {"male": 0.62, "female": 0.355, "intersex": 0.005, "unknown": 0.02})
        self.fentanyl_supply = {"US": 0.75, "CA": 0.7, "UK": 0.08, "DE": 0.05}[self.jurisdiction]
        self.intake: dict[str, Any] = {
            "assessment_date": (YEAR_START + timedelta(days=rng.randrange(365))).isoformat(),
            "patient": {"id": f"synth-{seed}-{n:06d}", "age": self.age},
        }
        if rng.random() < 0.95:  # missing means the default, US
            self.intake["jurisdiction"] = self.jurisdiction
        else:
            self.jurisdiction = "US"

    def _age(self) -> int:
        r = self.rng.random()
        if r < 0.03:
            return self.rng.randint(14, 17)
        if r < 0.94:
            return max(18, min(64, round(self.rng.gauss(37, 10))))
        return self.rng.randint(65, 82)

    # -- sections ------------------------------------------------------------------------------

    def patient(self) -> None:
        p, rng = self.intake["patient"], self.rng
        if not _known(rng, 0.97):
            return  # sex not recorded: nor is pregnancy
        p["sex_at_birth"] = self.sex
        if self.sex in ("female", "intersex") and 12 <= self.age <= 55 and _known(rng, 0.85):
            p["pregnant"] = rng.random() < 0.08
            if p["pregnant"] and _known(rng, 0.85):
                p["gestational_weeks"] = rng.randint(4, 40)
        elif self.sex == "male" and rng.random() < 0.3:
            p["pregnant"] = False

    def top(self) -> None:
        rng = self.rng
        if _known(rng, 0.98):
            self.intake["stage"] = self.stage
        readiness = {
            "active_use": {
                "precontemplation": 0.15,
                "contemplation": 0.3,
                "preparation": 0.4,
                "action": 0.15,
            },
            "in_withdrawal": {"contemplation": 0.15, "preparation": 0.45, "action": 0.4},
            "post_withdrawal": {"preparation": 0.3, "action": 0.6, "maintenance": 0.1},
            "in_treatment": {"action": 0.5, "maintenance": 0.5},
            "remission": {"maintenance": 0.9, "action": 0.1},
            "relapse": {"contemplation": 0.3, "preparation": 0.4, "action": 0.3},
        }[self.stage]
        if _known(rng, 0.85):
            self.intake["readiness"] = _pick(rng, readiness)

    def treatment(self) -> None:
        rng = self.rng
        on_moud_rate = {"in_treatment": 0.9, "remission": 0.55, "relapse": 0.3}.get(self.stage, 0.05)
        self.moud: str | None = None
        if rng.random() < on_moud_rate:
            self.moud = _pick(rng, {"methadone": 0.45, "buprenorphine": 0.45, "naltrexone": 0.10})
        ct: dict[str, Any] = {}
        if self.moud:
            ct["moud"] = self.moud
            lo, hi = DOSE_MG[self.moud]
            if _known(rng, 0.8):
                ct["dose_mg"] = float(rng.randrange(lo, hi + 1, 2 if hi > lo else 1))
                if self.moud == "naltrexone" and rng.random() < 0.6:
                    ct["dose_mg"] = 380.0  # monthly extended-release injection
            months = round(rng.expovariate(1 / 14), 1)
            if _known(rng, 0.8):
                ct["months_on_moud"] = months
            if _known(rng, 0.75):
                ct["stable"] = (
                    self.stage in ("in_treatment", "remission") and months >= 3 and rng.random() < 0.7
                )
        elif _known(rng, 0.6):
            ct["moud"] = None  # asked, and on no medication now
        if ct:
            self.intake["current_treatment"] = ct

    def substances(self) -> None:
        rng = self.rng
        su: dict[str, Any] = {}
        fentanyl = rng.random() < self.fentanyl_supply
        opioids = ["fentanyl"] if fentanyl else []
        if not fentanyl or rng.random() < 0.3:
            opioids.append("heroin" if rng.random() < 0.75 else "prescription_opioids")
        if rng.random() < 0.08:
            opioids.append(rng.choice(["illicit_methadone", "illicit_buprenorphine", "other_opioid"]))
        self.opioids = sorted(set(opioids))
        if _known(rng, 0.95):
            su["opioids"] = self.opioids
        oral = self.opioids == ["prescription_opioids"]
        route = "oral" if oral else _pick(rng, {"injection": 0.4, "smoking": 0.35, "intranasal": 0.25})
        self.injects = route == "injection"
        if _known(rng, 0.9):
            su["route"] = route
        using = self.stage in ("active_use", "in_withdrawal", "relapse")
        if _known(rng, 0.85):
            su["frequency"] = (
                _pick(rng, {"daily": 0.85, "weekly": 0.1, "less_than_weekly": 0.05})
                if using
                else _pick(rng, {"weekly": 0.2, "less_than_weekly": 0.8})
            )
        hours = self._last_use_hours()
        if _known(rng, 0.85):
            su["last_use_hours"] = hours
        severe = self.stage != "active_use" or rng.random() > 0.06
        if _known(rng, 0.9):
            su["dsm5_criteria_met"] = rng.randint(4, 11) if severe else rng.randint(0, 3)
        dependent = (
            self.stage == "in_withdrawal"
            or (using and rng.random() < 0.9)
            or self.moud
            in (
                "methadone",
                "buprenorphine",
            )
        )
        if _known(rng, 0.85):
            su["physically_dependent"] = dependent
        cows = self._cows(hours)
        if cows is not None:
            su["cows_score"] = cows
        _ask(rng, su, "benzodiazepines", 0.95, {"none": 0.76, "prescribed": 0.1, "illicit": 0.14})
        _ask(rng, su, "alcohol", 0.95, {"none": 0.6, "moderate": 0.27, "heavy": 0.13})
        if _known(rng, 0.9):
            su["stimulants"] = rng.random() < 0.25
        if self.jurisdiction == "US" and fentanyl and _known(rng, 0.7):
            su["xylazine_exposure"] = rng.random() < 0.25
        self.sedatives = (
            su.get("benzodiazepines") in ("prescribed", "illicit") or su.get("alcohol") == "heavy"
        )
        self.intake["substance_use"] = su

    def _last_use_hours(self) -> float:
        rng = self.rng
        hours_by_stage = {
            "active_use": (1, 30),
            "in_withdrawal": (8, 96),
            "post_withdrawal": (96, 720),
            "relapse": (1, 72),
            "in_treatment": (24, 24 * 90),
            "remission": (24 * 90, 24 * 720),
        }
        lo, hi = hours_by_stage[self.stage]
        return round(rng.uniform(lo, hi), 1)

    def _cows(self, hours: float) -> int | None:
        """Scored in most withdrawal visits, rarely otherwise; plausible for the hours since use."""
        rng = self.rng
        if self.stage == "in_withdrawal":
            if not _known(rng, 0.9):
                return None
            peak = 24 <= hours <= 72 or ("fentanyl" in self.opioids and hours >= 12)
            return rng.randint(13, 30) if peak else rng.randint(6, 16)
        if self.stage in ("active_use", "relapse"):
            if not _known(rng, 0.45):
                return None
            return rng.randint(0, 4) if hours < 8 else rng.randint(2, 12)
        if not _known(rng, 0.25):
            return None
        return rng.randint(0, 4)

    def history(self) -> None:
        rng = self.rng
        h: dict[str, Any] = {}
        if _known(rng, 0.8):
            h["withdrawal_episodes"] = min(int(rng.expovariate(0.8)), 12)
        outpatient = min(int(rng.expovariate(0.9)), 8)
        if _known(rng, 0.85):
            h["outpatient_episodes"] = outpatient
        if _known(rng, 0.85):
            h["residential_episodes"] = min(int(rng.expovariate(2.0)), 5)
        if _known(rng, 0.7):
            h["relapses_after_outpatient"] = rng.randint(0, outpatient)
        if _known(rng, 0.8):
            prior = [m for m in ("methadone", "buprenorphine", "naltrexone") if rng.random() < 0.3]
            h["prior_moud"] = sorted(set(prior) | ({self.moud} if self.moud else set()))
        if _known(rng, 0.9):
            rate = 1.6 if "fentanyl" in self.opioids else 0.6
            h["overdoses_last_year"] = min(int(rng.expovariate(rate * 2)), 6)
        self.intake["history"] = h

    def mental_health(self) -> None:
        rng = self.rng
        mh: dict[str, Any] = {}
        conditions = sorted(c for c, p in CONDITIONS.items() if rng.random() < p)
        if _known(rng, 0.9):
            mh["conditions"] = conditions
        if _known(rng, 0.9):
            mh["suicidal_ideation"] = _pick(
                rng, {"none": 0.82, "passive": 0.1, "active_no_plan": 0.06, "active_with_plan": 0.02}
            )
        if _known(rng, 0.85):
            mh["recent_suicide_attempt"] = rng.random() < 0.03
        if conditions and _known(rng, 0.8):
            mh["in_psychiatric_care"] = rng.random() < 0.4
        self.intake["mental_health"] = mh

    def medical(self) -> None:
        rng = self.rng
        md: dict[str, Any] = {}
        if self.moud == "methadone" and _known(rng, 0.7) or rng.random() < 0.2:
            band = rng.random()
            md["qtc_ms"] = (
                rng.randint(380, 449)
                if band < 0.88
                else rng.randint(450, 500)
                if band < 0.97
                else (rng.randint(501, 560))
            )
        if _known(rng, 0.8):
            md["hepatic_impairment"] = _pick(
                rng, {"none": 0.78, "mild": 0.13, "moderate": 0.06, "severe": 0.03}
            )
        if _known(rng, 0.75):
            md["hiv"] = rng.random() < (0.06 if self.injects else 0.02)
        if _known(rng, 0.75):
            md["hcv"] = rng.random() < (0.35 if self.injects else 0.06)
        pain = rng.random() < 0.2
        if _known(rng, 0.85):
            md["chronic_pain"] = pain
        if _known(rng, 0.85):
            md["prescribed_opioid_analgesics"] = rng.random() < (0.3 if pain else 0.04)
        if _known(rng, 0.8):
            md["upcoming_surgery"] = rng.random() < 0.02
        if self.sedatives and _known(rng, 0.8):
            md["withdrawal_seizure_history"] = rng.random() < 0.15
        elif _known(rng, 0.5):
            md["withdrawal_seizure_history"] = False
        if _known(rng, 0.7):
            md["interacting_medications"] = rng.sample(MEDICINES, rng.choice((0, 0, 0, 1, 1, 2)))
        self.intake["medical"] = md

    def social(self) -> None:
        rng = self.rng
        so: dict[str, Any] = {}
        working = 18 <= self.age < 67 and rng.random() < 0.5
        if _known(rng, 0.8):
            so["can_leave_work"] = not working or rng.random() < 0.3
        if _known(rng, 0.85):
            so["caregiver"] = rng.random() < 0.25
        if _known(rng, 0.8):
            so["privacy_concern"] = rng.random() < 0.1
        housing = _pick(rng, {"stable": 0.6, "unstable": 0.25, "homeless": 0.15})
        if _known(rng, 0.9):
            so["housing"] = housing
        if _known(rng, 0.75):
            so["home_supports_recovery"] = housing == "stable" and rng.random() < 0.7
        if _known(rng, 0.8):
            so["support_system"] = _pick(rng, {"none": 0.2, "limited": 0.45, "strong": 0.35})
        legal = _pick(rng, {"none": 0.75, "probation": 0.12, "parole": 0.06, "pending_charges": 0.07})
        if _known(rng, 0.85):
            so["legal"] = legal
        released = legal in ("probation", "parole") or rng.random() < 0.04
        if released and _known(rng, 0.7):
            so["days_since_release"] = min(int(rng.expovariate(1 / 60)), 3650)
        self.intake["social"] = so

    def preferences(self) -> None:
        rng = self.rng
        pr: dict[str, Any] = {}
        if _known(rng, 0.85):
            if self.moud and rng.random() < 0.85:
                pr["medication"] = self.moud
            else:
                pr["medication"] = _pick(
                    rng,
                    {
                        "buprenorphine": 0.35,
                        "methadone": 0.2,
                        "naltrexone": 0.08,
                        "no_medication": 0.12,
                        "no_preference": 0.25,
                    },
                )
        _ask(rng, pr, "setting", 0.8, {"outpatient": 0.65, "residential": 0.12, "no_preference": 0.23})
        _ask(rng, pr, "goal", 0.8, {"abstinence": 0.55, "reduction": 0.25, "undecided": 0.2})
        if _known(rng, 0.8):
            pr["declines_counselling"] = rng.random() < 0.1
        language = {"US": {"en": 0.85, "es": 0.15}, "DE": {"de": 0.9, "en": 0.1}}.get(
            self.jurisdiction, {"en": 1}
        )
        if _known(rng, 0.9):
            pr["language"] = _pick(rng, language)
        self.intake["preferences"] = pr

    def sparse(self) -> dict[str, Any]:
        """A first contact: little more than age, stage and substances."""
        keep = {"assessment_date", "patient", "jurisdiction", "stage", "substance_use"}
        out = {k: v for k, v in self.intake.items() if k in keep}
        out["patient"] = {k: v for k, v in out["patient"].items() if k in ("id", "age")}
        if "substance_use" in out:
            out["substance_use"] = {
                k: v for k, v in out["substance_use"].items() if k in ("opioids", "route")
            }
        return out


def synth_intake(rng: random.Random, n: int = 0, seed: int = 0) -> dict[str, Any]:
    """One coherent intake (JSON data) from ``rng``; ``n`` and ``seed`` name it (patient.id)."""
    story = _Story(rng, n, seed)
    story.patient()
    story.top()
    story.treatment()
    story.substances()
    story.history()
    story.mental_health()
    story.medical()
    story.social()
    story.preferences()
    return story.sparse() if rng.random() < 0.06 else story.intake


def synth_dicts(n: int, seed: int = 1) -> Iterator[dict[str, Any]]:
    """``n`` intakes as JSON data, numbered from 1; the same seed gives the same intakes."""
    rng = random.Random(seed)
    for i in range(1, n + 1):
        yield synth_intake(rng, i, seed)


def synth_intakes(n: int, seed: int = 1) -> Iterator[Intake]:
    """``n`` validated intakes (a generator bug raises IntakeError, never a silent skip)."""
    for data in synth_dicts(n, seed):
        yield parse_intake_obj(data)
