"""Terminology as data: the value sets that read a chart, and the standard codes carepath writes.

The codes live in ``api/valuesets/chart.yaml`` (chart -> intake) and ``api/valuesets/outputs.yaml``
(plan -> FHIR / CDS Hooks), each value set with its source and each code with its status
(``confirmed`` = read in the cited source; ``unverified`` = to be checked by a terminologist).
This module only loads and matches them; it knows no intake field and no HTTP.

    chart_valuesets()          {group: {name: ValueSet}}  (conditions, medications, observations, answers)
    outputs()                  the outward mapping (diagnoses, recommendations, cards, override reasons)
    ValueSet.match(concept)    a CodeableConcept (dict) -> Match (how it matched) or None
    SYSTEMS                    short names -> code system URIs

``CAREPATH_TERMINOLOGY_EXTRA`` (a YAML file with chart.yaml's shape) adds a site's local codes,
e.g. the flowsheet row an EHR uses for the COWS total: its entries are appended to the value
sets of the same name.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any, Literal

import yaml

from carepath.engine.rulepack import YAML_LOADER

__all__ = [
    "SYSTEMS",
    "ValueSet",
    "Entry",
    "Match",
    "Source",
    "chart_valuesets",
    "chart_sources",
    "outputs",
    "system_uri",
    "TerminologyError",
    "VALUESETS_DIR",
    "EXTRA_ENV",
]

VALUESETS_DIR = Path(__file__).resolve().parent / "valuesets"
EXTRA_ENV = "CAREPATH_TERMINOLOGY_EXTRA"
Status = Literal["confirmed", "unverified"]
_WORD = re.compile(r"[a-z0-9]+")


class TerminologyError(ValueError):
    """The mapping files are malformed (a defect: raised at load, never per request)."""


@dataclass(frozen=True)
class Source:
    key: str
    title: str
    url: str


@dataclass(frozen=True)
class Entry:
    system: str  # URI
    display: str
    status: Status
    source: str
    code: str | None = None
    prefix: str | None = None
    pattern: str | None = None

    def matches(self, system: str | None, code: str | None) -> bool:
        if not code or system != self.system:
            return False
        if self.code is not None:
            return _norm(code, system) == _norm(self.code, system)
        if self.prefix is not None:
            return _norm(code, system).startswith(_norm(self.prefix, system))
        return self.pattern is not None and re.search(self.pattern, code.strip().upper()) is not None

    @property
    def label(self) -> str:
        return self.code or self.prefix or self.pattern or ""


@dataclass(frozen=True)
class Match:
    valueset: str
    how: Literal["code", "name"]
    system: str | None
    code: str | None
    display: str
    """What matched: the chart's own display (or text), else the code's display in the value set."""
    term: str
    """The value set's own word for it: the entry's display (code match) or the name matched."""


@dataclass(frozen=True)
class ValueSet:
    name: str
    title: str
    purpose: str
    source: str
    include: tuple[Entry, ...]
    exclude: tuple[Entry, ...] = ()
    names: tuple[str, ...] = field(default=())

    def match(self, concept: Any) -> Match | None:
        """A CodeableConcept (or a bare Coding) -> how it belongs to this value set, if it does."""
        if not isinstance(concept, Mapping):
            return None
        codings = [c for c in _codings(concept) if isinstance(c, Mapping)]
        for c in codings:
            system, code = c.get("system"), c.get("code")
            if not isinstance(system, str) or not isinstance(code, str):
                continue
            if any(e.matches(system, code) for e in self.exclude):
                return None
            if any(e.matches(system, code) for e in self.include):
                entry = next(e for e in self.include if e.matches(system, code))
                return Match(
                    self.name, "code", system, code, _display(concept, c) or entry.display, entry.display
                )
        words = _texts(concept, codings)
        for name in self.names:
            if any(_has_words(text, name) for text in words):
                return Match(self.name, "name", None, None, _display(concept, None) or name, name)
        return None


def _norm(code: str, system: str) -> str:
    code = code.strip().upper()
    return code.replace(".", "") if system == SYSTEMS["icd10cm"] else code


def _codings(concept: Mapping[str, Any]) -> list[Any]:
    if "coding" in concept and isinstance(concept["coding"], list):
        return list(concept["coding"])
    return [concept] if "code" in concept else []


def _display(concept: Mapping[str, Any], coding: Mapping[str, Any] | None) -> str:
    for text in (
        coding.get("display") if coding else None,
        concept.get("text"),
        *(c.get("display") for c in _codings(concept) if isinstance(c, Mapping)),
    ):
        if isinstance(text, str) and text.strip():
            return text.strip()[:120]
    return ""


def _texts(concept: Mapping[str, Any], codings: Iterable[Mapping[str, Any]]) -> list[str]:
    texts = [concept.get("text")] + [c.get("display") for c in codings]
    return [t.lower() for t in texts if isinstance(t, str)]


def _has_words(text: str, name: str) -> bool:
    """Whole-word match: 'methadone' in 'methadone hcl 10 mg', not 'oxycodone' in 'noxycodonex'."""
    want = _WORD.findall(name.lower())
    have = _WORD.findall(text)
    n = len(want)
    return n > 0 and any(have[i : i + n] == want for i in range(len(have) - n + 1))


# ---------------------------------------------------------------- loading


SYSTEMS: dict[str, str] = {}


def system_uri(short: str) -> str:
    return SYSTEMS.get(short, short)


def _read(path: Path) -> dict[str, Any]:
    try:
        data = yaml.load(path.read_text(encoding="utf-8"), Loader=YAML_LOADER)
    except (OSError, yaml.YAMLError) as exc:
        raise TerminologyError(f"{path.name}: cannot be read ({type(exc).__name__})") from None
    if not isinstance(data, dict):
        raise TerminologyError(f"{path.name}: must be a mapping")
    return data


def _entry(raw: Any, default_source: str, where: str, sources: Mapping[str, Source]) -> Entry:
    if not isinstance(raw, Mapping):
        raise TerminologyError(f"{where}: each entry must be a mapping")
    kinds = [k for k in ("code", "prefix", "pattern") if raw.get(k) is not None]
    if len(kinds) != 1:
        raise TerminologyError(f"{where}: give exactly one of code, prefix, pattern")
    status = raw.get("status")
    if status not in ("confirmed", "unverified"):
        raise TerminologyError(f"{where}: status must be confirmed or unverified")
    source = str(raw.get("source") or default_source)
    if source not in sources:
        raise TerminologyError(f"{where}: unknown source '{source}'")
    display = raw.get("display")
    if not isinstance(display, str) or not display:
        raise TerminologyError(f"{where}: display is required")
    if raw.get("pattern") is not None:
        re.compile(str(raw["pattern"]))
    return Entry(
        system=system_uri(str(raw.get("system"))),
        display=display,
        status=status,
        source=source,
        code=str(raw["code"]) if raw.get("code") is not None else None,
        prefix=str(raw["prefix"]) if raw.get("prefix") is not None else None,
        pattern=str(raw["pattern"]) if raw.get("pattern") is not None else None,
    )


def _valueset(
    name: str, raw: Any, group: str, sources: Mapping[str, Source], names: Iterable[str]
) -> ValueSet:
    where = f"{group}.{name}"
    if not isinstance(raw, Mapping):
        raise TerminologyError(f"{where}: must be a mapping")
    source = str(raw.get("source") or "")
    if source not in sources:
        raise TerminologyError(f"{where}: unknown or missing source '{source}'")
    include = tuple(_entry(e, source, where, sources) for e in raw.get("include") or ())
    exclude = tuple(_entry(e, source, where, sources) for e in raw.get("exclude") or ())
    if not include:
        raise TerminologyError(f"{where}: include at least one code")
    all_names = [str(n).lower() for n in raw.get("names") or ()] + [n.lower() for n in names]
    return ValueSet(
        name=name,
        title=str(raw.get("title") or name),
        purpose=str(raw.get("purpose") or ""),
        source=source,
        include=include,
        exclude=exclude,
        names=tuple(dict.fromkeys(all_names)),
    )


def _engine_drug_names() -> list[str]:
    """The ingredient names engine/derive.py's interaction table knows (names with '_' as spaces)."""
    from carepath.engine.derive import KNOWN_DRUGS

    return sorted(n.replace("_", " ") for n in KNOWN_DRUGS)


@cache
def _chart() -> tuple[dict[str, dict[str, ValueSet]], dict[str, Source]]:
    data = _read(VALUESETS_DIR / "chart.yaml")
    extra_path = os.environ.get(EXTRA_ENV)
    extra = _read(Path(extra_path)) if extra_path else {}
    SYSTEMS.update({str(k): str(v) for k, v in (data.get("systems") or {}).items()})
    SYSTEMS.update({str(k): str(v) for k, v in (extra.get("systems") or {}).items()})
    raw_sources = {**(data.get("sources") or {}), **(extra.get("sources") or {})}
    sources = {
        str(k): Source(str(k), str(v.get("title") or k), str(v.get("url") or ""))
        for k, v in raw_sources.items()
    }
    out: dict[str, dict[str, ValueSet]] = {}
    for group in ("conditions", "medications", "observations", "answers"):
        sets = dict(data.get(group) or {})
        for name, more in (extra.get(group) or {}).items():
            base = dict(sets.get(name) or {"source": more.get("source"), "title": name})
            base["include"] = list(base.get("include") or []) + list(more.get("include") or [])
            base["names"] = list(base.get("names") or []) + list(more.get("names") or [])
            sets[name] = base
        out[group] = {
            name: _valueset(
                name,
                raw,
                group,
                sources,
                _engine_drug_names() if isinstance(raw, Mapping) and raw.get("names_from_engine") else (),
            )
            for name, raw in sets.items()
        }
    return out, sources


def chart_valuesets() -> dict[str, dict[str, ValueSet]]:
    """{'conditions'|'medications'|'observations'|'answers': {name: ValueSet}} (loaded once)."""
    return _chart()[0]


def chart_sources() -> dict[str, Source]:
    return _chart()[1]


@cache
def outputs() -> dict[str, Any]:
    """The outward mapping (outputs.yaml), with short system names resolved to URIs."""
    chart_valuesets()  # systems and sources
    data = _read(VALUESETS_DIR / "outputs.yaml")
    sources = chart_sources()

    def coding(raw: Mapping[str, Any], where: str) -> dict[str, str]:
        if raw.get("status") not in ("confirmed", "unverified") or raw.get("source") not in sources:
            raise TerminologyError(f"outputs {where}: status and a known source are required")
        return {
            "system": system_uri(str(raw["system"])),
            "code": str(raw["code"]),
            "display": str(raw["display"]),
            "status": str(raw["status"]),
            "source": str(raw["source"]),
        }

    recs = {
        code: {
            "kind": str(spec.get("kind") or "none"),
            "codings": [coding(c, code) for c in spec.get("codings") or ()],
        }
        for code, spec in (data.get("recommendations") or {}).items()
    }
    diagnoses = {}
    for icd, spec in (data.get("diagnoses") or {}).items():
        if spec.get("source") not in sources:
            raise TerminologyError(f"outputs diagnoses.{icd}: unknown source")
        diagnoses[str(icd)] = dict(spec)
    naloxone = dict(data["naloxone_order"])
    naloxone["coding"] = coding(naloxone["coding"], "naloxone_order")
    return {
        "diagnoses": diagnoses,
        "recommendations": recs,
        "naloxone_order": naloxone,
        "cards": data["cards"],
        "override_reasons": data["override_reasons"],
    }
