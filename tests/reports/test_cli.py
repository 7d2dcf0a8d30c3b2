"""carepath evaluate INTAKE --format html|pdf [--audience ...] -o FILE."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from carepath.api.cli import app
from tests.reports.helpers import pdf_pages, visible_text

INTAKE = {
    "assessment_date": "2026-03-02",
    "jurisdiction": "US",
    "patient": {"id": "MRN-CLI-1", "name": "Cli <b>Tester</b>", "age": 40, "sex_at_birth": "male"},
    "stage": "active_use",
    "substance_use": {"opioids": ["heroin"], "physically_dependent": True},
    "preferences": {"language": "es"},
}


@pytest.fixture()
def intake_file(tmp_path):
    path = tmp_path / "intake.json"
    path.write_text(json.dumps(INTAKE))
    return path


def _run(*args: str) -> None:
    result = CliRunner().invoke(app, ["evaluate", *args, "--generated-at", "2026-01-01T12:00:00+00:00"])
    assert result.exit_code == 0, result.output


def test_html_clinician_with_identifiers(intake_file, tmp_path):
    out = tmp_path / "r.html"
    _run(str(intake_file), "--format", "html", "-o", str(out))
    text = visible_text(out.read_text())
    assert "Cli <b>Tester</b>" in text and "MRN-CLI-1" in text and "Evidence appendix" in text


def test_html_patient_in_the_intake_language(intake_file, tmp_path):
    out = tmp_path / "p.html"
    _run(str(intake_file), "--format", "html", "--audience", "patient", "-o", str(out))
    assert "Su plan de atención" in visible_text(out.read_text())


@pytest.mark.parametrize("audience", ["clinician", "patient"])
def test_pdf(intake_file, tmp_path, audience):
    out = tmp_path / "r.pdf"
    _run(str(intake_file), "--format", "pdf", "--audience", audience, "-o", str(out))
    data = out.read_bytes()
    assert data.startswith(b"%PDF") and b"MRN-CLI-1" not in data[:2000]
    assert "MRN-CLI-1" in pdf_pages(data)[0]
