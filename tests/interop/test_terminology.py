"""The terminology mapping is data a terminologist can review: every value set and code has a
source and a status, codes are well-formed for their system, and a site file can extend it."""

from __future__ import annotations

import re
import subprocess
import sys
import textwrap

from carepath.api.terminology import chart_sources, chart_valuesets, outputs
from tests.conftest import ROOT

FORMATS = {
    "http://snomed.info/sct": re.compile(r"^\d{6,18}$"),
    "http://hl7.org/fhir/sid/icd-10-cm": re.compile(r"^[A-Z]\d[0-9A-Z](\.[0-9A-Z]{1,4})?$"),
    "http://www.nlm.nih.gov/research/umls/rxnorm": re.compile(r"^\d{1,8}$"),
    "http://loinc.org": re.compile(r"^\d{1,7}-\d$"),
}


def test_every_value_set_and_code_has_a_source_and_a_status():
    sources = chart_sources()
    for group, sets in chart_valuesets().items():
        for name, vs in sets.items():
            assert vs.source in sources, (group, name)
            assert vs.title and (vs.purpose or group == "answers"), (group, name)
            for entry in (*vs.include, *vs.exclude):
                assert entry.status in ("confirmed", "unverified")
                assert entry.source in sources and entry.display
                fmt = FORMATS.get(entry.system)
                if fmt and entry.code:
                    assert fmt.match(entry.code), (name, entry.code)
                if fmt and entry.prefix:
                    assert fmt.match(entry.prefix) or re.match(
                        r"^[A-Z]\d[0-9A-Z](\.\d{0,3})?$", entry.prefix
                    ), entry.prefix


def test_sources_have_urls_and_cdc_value_sets_are_cited_where_used():
    sources = chart_sources()
    assert all(s.url.startswith(("http://", "https://")) for s in sources.values())
    assert chart_valuesets()["conditions"]["opioid_use_disorder"].source == "cdc-oud"
    assert sources["cdc-oud"].url == "http://fhir.org/guides/cdc/opioid-cds/ValueSet/opioid-misuse-disorders"


def test_outward_codes_are_sourced_and_the_naloxone_order_is_an_rxnorm_product():
    out = outputs()
    for code, spec in out["recommendations"].items():
        assert spec["kind"] in ("medication", "service", "none"), code
        for c in spec["codings"]:
            assert FORMATS[c["system"]].match(c["code"]) and c["status"] in ("confirmed", "unverified")
    nal = out["naloxone_order"]["coding"]
    assert (nal["system"], nal["code"], nal["status"]) == (
        "http://www.nlm.nih.gov/research/umls/rxnorm",
        "1725059",
        "confirmed",
    )
    for icd, spec in out["diagnoses"].items():
        assert icd.startswith("F11.") and FORMATS["http://snomed.info/sct"].match(spec["snomed"])
    assert all(r["display"] for r in out["override_reasons"]["codes"])


def test_a_site_file_adds_local_codes(tmp_path):
    extra = tmp_path / "site.yaml"
    extra.write_text(
        textwrap.dedent(
            """
            systems: {epic-flowsheet: "urn:oid:1.2.840.114350.1.13.0.1.7.2.707679"}
            observations:
              cows_total:
                include:
                  - {system: epic-flowsheet, code: "7719", display: "COWS total (flowsheet row)",
                     status: confirmed, source: carepath}
            """
        )
    )
    script = (
        "from carepath.api.terminology import chart_valuesets\n"
        "vs = chart_valuesets()['observations']['cows_total']\n"
        "oid = 'urn:oid:1.2.840.114350.1.13.0.1.7.2.707679'\n"
        "m = vs.match({'coding': [{'system': oid, 'code': '7719'}]})\n"
        "print(m.how, len(vs.include))\n"
    )
    run = subprocess.run(
        [sys.executable, "-c", script],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env={"CAREPATH_TERMINOLOGY_EXTRA": str(extra), "PATH": ""},
        timeout=60,
    )
    assert run.returncode == 0, run.stderr
    assert run.stdout.split() == ["code", "2"]
