"""docs/interop.md's mapping tables are generated from the value sets, so they never drift.

``CAREPATH_UPDATE_DOCS=1`` rewrites the block between the markers.
"""

from __future__ import annotations

import os

from carepath.api.chart import FIELD_SOURCES
from carepath.api.terminology import chart_sources, chart_valuesets, outputs
from tests.conftest import ROOT

DOC = ROOT / "docs" / "interop.md"
START = "<!-- tables: generated from api/valuesets by tests/interop/test_docs.py (CAREPATH_UPDATE_DOCS=1) -->"
END = "<!-- /tables -->"
SYSTEMS = {
    "http://snomed.info/sct": "SNOMED CT",
    "http://hl7.org/fhir/sid/icd-10-cm": "ICD-10-CM",
    "http://www.nlm.nih.gov/research/umls/rxnorm": "RxNorm",
    "http://loinc.org": "LOINC",
}


def _status(s: str) -> str:
    return "C" if s == "confirmed" else "U"


def _entry(e) -> str:
    return e.code or (f"{e.prefix}*" if e.prefix else f"/{e.pattern}/")


def _chart_tables() -> list[str]:
    out: list[str] = []
    for group in ("conditions", "medications", "observations"):
        out += [
            "",
            f"#### Chart {group} -> intake",
            "",
            "| value set | fills | codes | source |",
            "| --- | --- | --- | --- |",
        ]
        for name, vs in chart_valuesets()[group].items():
            codes = [
                f"{SYSTEMS.get(e.system, 'local')} {_entry(e)} ({_status(e.status)})" for e in vs.include
            ]
            if vs.exclude:
                codes.append("not " + ", ".join(str(e.code or e.prefix) for e in vs.exclude))
            if name == "interacting":
                codes.append("names: the drugs of engine/derive.py's interaction table")
            elif vs.names and group != "conditions":
                codes.append("names: " + ", ".join(vs.names[:6]) + (" ..." if len(vs.names) > 6 else ""))
            src = chart_sources()[vs.source]
            out.append(
                f"| `{name}` | {vs.purpose.replace('|', '/')} | {'; '.join(codes)} "
                f"| [{vs.source}]({src.url}) |"
            )
    return out


def _field_table() -> list[str]:
    out = ["", "#### Intake field <- chart data", "", "| intake field | read from |", "| --- | --- |"]
    return out + [f"| `{k}` | {v} |" for k, v in FIELD_SOURCES.items()]


def _output_tables() -> list[str]:
    o = outputs()
    out = [
        "",
        "#### Codes carepath writes",
        "",
        "| carepath code | becomes | standard codes |",
        "| --- | --- | --- |",
    ]
    use = {
        "medication": "MedicationRequest proposal",
        "service": "ServiceRequest proposal",
        "none": "CarePlan activity",
    }
    for code, spec in o["recommendations"].items():
        codes = "; ".join(
            f"{SYSTEMS[c['system']]} {c['code']} {c['display']} ({_status(c['status'])})"
            for c in spec["codings"]
        )
        out.append(f"| `{code}` | {use[spec['kind']]} | {codes or 'none: the carepath code only'} |")
    out += ["", "| plan.diagnosis.icd10_cm | SNOMED CT sent with it |", "| --- | --- |"]
    out += [
        f"| {icd} {s['display']} | {s['snomed']} {s['snomed_display']} ({_status(s['status'])}) |"
        for icd, s in o["diagnoses"].items()
    ]
    return out


def tables() -> str:
    return "\n".join([START, *_chart_tables(), *_field_table(), *_output_tables(), "", END])


def test_mapping_tables_in_the_docs_match_the_value_sets():
    text = DOC.read_text(encoding="utf-8")
    start, end = text.index(START), text.index(END) + len(END)
    if os.environ.get("CAREPATH_UPDATE_DOCS"):
        text = text[:start] + tables() + text[end:]
        DOC.write_text(text, encoding="utf-8")
        end = text.index(END) + len(END)
    assert text[start:end] == tables(), (
        "run with CAREPATH_UPDATE_DOCS=1 to regenerate docs/interop.md's tables"
    )
