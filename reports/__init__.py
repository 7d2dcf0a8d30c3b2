"""Printable reports (issue 3): the clinician care-plan draft and the patient summary.

Public door::

    render_html(plan, audience="clinician"|"patient", language=None, *, pack=None, patient=None) -> str
    reports.pdf.render_pdf(...)        -> bytes  (WeasyPrint; imported lazily, it is heavy)
    reports.pdf.render_pdf_async(...)  -> bytes  (same, in a worker thread: for the web service)

``reports.render`` is the only importer of Jinja2 and ``reports.pdf`` the only importer of
WeasyPrint. ``patient`` is {id, name, age, sex_at_birth} (or ``patient_from_intake(intake)``):
the plan carries no identifiers. ``language`` picks the patient summary's catalogue (en, es,
de; default en); the clinician draft is English.
"""

from __future__ import annotations

from carepath.reports.patient import Patient, patient_from_intake
from carepath.reports.render import AUDIENCES, DOCUMENT_TITLE, render_html

__all__ = ["AUDIENCES", "DOCUMENT_TITLE", "Patient", "patient_from_intake", "render_html"]
