"""Who may do what: one table, used by the route dependencies and by the service alike.

- clinician: writes and reads their organisation's plans, records decisions, signs plans.
- reviewer: reads their organisation's plans, comments on them, reads the override summary
  (clinical governance); never signs.
- admin: manages accounts (command line) and reads the override summary; no access to
  patient data (separation of duties).

Actions in ``AUDITED`` touch patient data: every attempt, allowed or not, gets an audit row.
"""

from __future__ import annotations

from carepath.api.records import ROLES, Role

__all__ = ["PERMISSIONS", "AUDITED", "allowed"]

_READERS: frozenset[Role] = frozenset({"clinician", "reviewer"})
_WRITERS: frozenset[Role] = frozenset({"clinician"})
_ANYONE: frozenset[Role] = frozenset(ROLES)

PERMISSIONS: dict[str, frozenset[Role]] = {
    "plan.create": _WRITERS,
    "plan.reevaluate": _WRITERS,
    "plan.override": _WRITERS,
    "plan.read": _READERS,
    "plan.report_html": _READERS,
    "plan.report_pdf": _READERS,
    "plan.list": _READERS,
    "plan.fhir": _READERS,
    "cds.evaluate": _READERS,  # CDS Hooks call: reads the chart; stores the cards shown (no patient data)
    # and, for the "open the form" link, the chart read as a sealed prefill that expires
    "overrides.summary": frozenset({"reviewer", "admin"}),
    "rules.read": _ANYONE,
    "openapi.read": _ANYONE,
    "auth.logout": _ANYONE,
    "session.read": _ANYONE,
    "form.use": _WRITERS,
    # hardening (issue 10): own API tokens; 42 CFR Part 2 consent and accounting of disclosures
    "token.list": _ANYONE,
    "token.create": _ANYONE,
    "token.revoke": _ANYONE,
    "consent.write": _WRITERS,
    "consent.read": _READERS,
    "disclosure.write": _WRITERS,
    "accounting.read": _READERS,
    "plan.sign": _WRITERS,  # only clinicians sign
    "plan.comment": _READERS,  # reviewers comment (and clinicians)
    "cds.feedback": _READERS,  # CDS Hooks feedback by token (EHRs send it with their JWT)
    "knowledge.read": _ANYONE,  # the rule pack as FHIR knowledge artifacts (no patient data)
    "fhir.questionnaire": _ANYONE,  # the intake Questionnaire (no patient data)
}

AUDITED: frozenset[str] = frozenset(
    {
        "plan.create",
        "plan.reevaluate",
        "plan.override",
        "plan.read",
        "plan.report_html",
        "plan.report_pdf",
        "plan.list",
        "plan.fhir",
        "cds.evaluate",
        "cds.feedback",
        "cds.prefill",
        "auth.login",
        "auth.logout",
        "token.list",
        "token.create",
        "token.revoke",
        "consent.write",
        "consent.read",
        "disclosure.write",
        "accounting.read",
        "plan.sign",
        "plan.comment",
    }
)


def allowed(action: str, role: str) -> bool:
    """Unknown actions are refused (fail closed)."""
    return role in PERMISSIONS.get(action, frozenset())
