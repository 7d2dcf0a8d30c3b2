"""Authorization matrix: every authenticated route x {no credentials, bad token, wrong role,
other organisation, right user}; only the right user gets through.

Each route has a row: which account is right, which role is wrong (None only where every role
may call it, with the reason), and what "other organisation" means for it (404 for a plan of
another organisation; for lists and summaries, the other organisation's data is invisible).
A route without a row fails the test: add a row when you add a route.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

import pytest

from carepath.api.app import route_table
from carepath.api.audit import verify_chain
from tests.service.test_route_walk import PUBLIC

NOT_IN_MATRIX = {
    ("POST", "/login"): "the sign-in step itself (its CSRF and wrong-password cases: test_sessions.py)",
    ("POST", "/v1/tokens"): "minting needs a browser session, never a token (test_tokens_http.py)",
    ("DELETE", "/v1/tokens/{token_id}"): "revoking needs a token id of the caller (test_tokens_http.py)",
    ("POST", "/v1/consents/{consent_id}/revoke"): "needs a consent id of the caller (test_part2.py)",
    ("POST", "/v1/disclosures"): "needs a plan with a patient id; other orgs' plans are 422 (test_part2.py)",
}
PASSED_AUTHZ = None  # "ok" marker: any status but 401/403/404 (e.g. a form re-shown with errors)


@dataclass
class Row:
    right: str  # attribute of Users
    wrong: str | None  # an account whose role may not call this route; None: every role may
    other_org: str | None  # "404" | "invisible" | None (no organisation data involved)
    ok: set[int] | None = field(default_factory=lambda: {200})
    body: str | None = None  # "intake" | "override" | "hook" | "form" | None
    fresh_plan: bool = False  # the call changes the plan's state (re-evaluation): own target
    why_no_wrong: str = ""


ROWS: dict[tuple[str, str], Row] = {
    ("POST", "/v1/plans"): Row("clinician", "reviewer", None, {201}, body="intake"),
    ("GET", "/v1/plans"): Row("clinician", "admin", "invisible"),
    ("GET", "/v1/plans/{plan_id}"): Row("clinician", "admin", "404"),
    ("POST", "/v1/plans/{plan_id}/reevaluate"): Row("clinician", "reviewer", "404", {201}, fresh_plan=True),
    ("GET", "/v1/plans/{plan_id}/report.html"): Row("reviewer", "admin", "404", {200, 503}),
    ("GET", "/v1/plans/{plan_id}/report.pdf"): Row("clinician", "admin", "404", {200, 503}),
    ("POST", "/v1/plans/{plan_id}/overrides"): Row("clinician", "reviewer", "404", {201}, body="override"),
    ("GET", "/v1/overrides/summary"): Row("reviewer", "clinician", "invisible"),
    ("GET", "/v1/rules"): Row("admin", None, None, why_no_wrong="every role may read the rule catalogue"),
    ("GET", "/openapi.json"): Row(
        "reviewer", None, None, why_no_wrong="every role may read the API description"
    ),
    ("GET", "/session"): Row("admin", None, None, why_no_wrong="every role may ask who they are"),
    ("POST", "/logout"): Row("clinician", None, None, {303}, why_no_wrong="every role may sign out"),
    # the FHIR adapter, CDS Hooks and the web form
    ("GET", "/v1/plans/{plan_id}/fhir"): Row("reviewer", "admin", "404"),
    ("POST", "/cds-services/{service_id}"): Row("clinician", "admin", None, PASSED_AUTHZ, body="hook"),
    ("POST", "/cds-services/{service_id}/feedback"): Row(
        "clinician", "admin", None, PASSED_AUTHZ, body="hook"
    ),
    ("GET", "/v1/cds/feedback/summary"): Row("reviewer", "clinician", None),
    ("GET", "/fhir/Questionnaire/carepath-intake"): Row(
        "admin", None, None, why_no_wrong="every role may read the intake Questionnaire (no patient data)"
    ),
    ("POST", "/fhir/QuestionnaireResponse"): Row("clinician", "reviewer", None, PASSED_AUTHZ, body="hook"),
    ("GET", "/v1/rules/fhir"): Row("admin", None, None, why_no_wrong="every role may read the rule pack"),
    ("GET", "/"): Row("clinician", "reviewer", None),
    ("POST", "/"): Row("clinician", "reviewer", None, PASSED_AUTHZ, body="form"),
    ("GET", "/plans/{plan_id}"): Row("clinician", "admin", "404"),
    ("POST", "/plans/{plan_id}/overrides"): Row("clinician", "reviewer", "404", PASSED_AUTHZ, body="form"),
    ("GET", "/plans/{plan_id}/edit"): Row("clinician", "reviewer", "404"),
    # issue 8: decisions of record, sign-off, comments, the worklist
    ("POST", "/v1/plans/search"): Row("clinician", "admin", "invisible", body="search"),
    ("GET", "/v1/plans/{plan_id}/decisions"): Row("reviewer", "admin", "404"),
    ("POST", "/v1/plans/{plan_id}/sign"): Row("clinician", "reviewer", "404", body="sign"),
    ("POST", "/v1/plans/{plan_id}/comments"): Row("reviewer", "admin", "404", {201}, body="comment"),
    ("GET", "/plans"): Row("clinician", "admin", "invisible"),
    ("POST", "/plans"): Row("reviewer", "admin", "invisible", body="form"),
    ("POST", "/plans/{plan_id}/sign"): Row("clinician", "reviewer", "404", PASSED_AUTHZ, body="form"),
    ("POST", "/plans/{plan_id}/comments"): Row("reviewer", "admin", "404", PASSED_AUTHZ, body="form"),
    ("POST", "/plans/{plan_id}/missing"): Row(
        "clinician", "reviewer", "404", PASSED_AUTHZ, body="form", fresh_plan=True
    ),
    ("POST", "/plans/{plan_id}/amend"): Row(
        "clinician", "reviewer", "404", PASSED_AUTHZ, body="form", fresh_plan=True
    ),
    ("POST", "/plans/{plan_id}/edit"): Row(
        "clinician", "reviewer", "404", PASSED_AUTHZ, body="form", fresh_plan=True
    ),
    # hardening: tokens over HTTP, 42 CFR Part 2 consent and accounting
    # (no plan data in these answers; the organisation boundary of each: test_tokens_http, test_part2)
    ("GET", "/v1/tokens"): Row("reviewer", None, None, why_no_wrong="every role lists its own tokens"),
    ("POST", "/v1/consents"): Row("clinician", "reviewer", None, {201}, body="consent"),
    ("POST", "/v1/consents/search"): Row("reviewer", "admin", None, body="patient"),
    ("POST", "/v1/accounting"): Row("reviewer", "admin", None, body="patient"),
}
OTHER = {"clinician": "other_clinician", "reviewer": "other_reviewer", "admin": "other_reviewer"}


def _authenticated_routes(app) -> set[tuple[str, str]]:
    table = {(r.method, r.path) for r in route_table(app)}
    return table - set(PUBLIC) - set(NOT_IN_MATRIX)


def test_every_authenticated_route_has_a_row(shared_server):
    routes = _authenticated_routes(shared_server.app)
    assert routes - set(ROWS) == set(), "add a matrix row for each new route"
    for key, row in ROWS.items():
        assert row.wrong is not None or row.why_no_wrong, key


def _request(client, method: str, path: str, headers: dict[str, str], body: Any) -> Any:
    if isinstance(body, dict) and body.get("_form"):
        return client.request(method, path, headers=headers, data=body["_form"])
    content = json.dumps(body).encode() if body is not None else None
    return client.request(method, path, headers={**headers, "Accept": "application/json"}, content=content)


def _is_success(row: Row, status: int) -> bool:
    if row.ok is None:
        return status not in (401, 403, 404)
    return status in row.ok


@pytest.mark.parametrize("route", sorted(ROWS), ids=lambda r: f"{r[0]} {r[1]}")
def test_only_the_right_user_gets_through(shared_server, example_intake, route):
    method, path = route
    assert route in _authenticated_routes(shared_server.app), f"{method} {path} is not served"
    row = ROWS[route]
    users = shared_server.users
    with shared_server.client() as c:
        plan = c.post("/v1/plans", content=json.dumps(example_intake), headers=users.clinician.headers).json()
        item = plan["phases"][0]["items"][0]
        override = {"code": item["code"], "action": "edit", "reason": "matrix test"}
        c.post(f"/v1/plans/{plan['plan_id']}/overrides", json=override, headers=users.clinician.headers)
        bodies = {
            "intake": example_intake,
            "override": override,
            "hook": {},
            "form": {"_form": {"reason": "matrix", "code": item["code"], "action": "edit"}},
            "consent": {"patient_id": "mrn-matrix", "recipient": "Dr Matrix", "purpose": "treatment"},
            "patient": {"patient_id": "mrn-matrix"},
            "search": {},
            "sign": {"name": "Dr Matrix", "attest": True},
            "comment": {"text": "matrix comment"},
            None: None,
        }

        def call(account_headers: dict[str, str]) -> Any:
            target = plan["plan_id"]
            if row.fresh_plan:
                fresh = c.post(
                    "/v1/plans", content=json.dumps(example_intake), headers=users.clinician.headers
                )
                target = fresh.json()["plan_id"]
            concrete = path.replace("{plan_id}", target).replace("{service_id}", "carepath-oud-pathway")
            return _request(c, method, concrete, account_headers, bodies[row.body])

        # 1. no credentials, 2. a bad token
        assert call({}).status_code == 401
        assert call({"Authorization": "Bearer cpt_forged-token-000000000000000"}).status_code == 401
        # 3. a role that may not do this
        if row.wrong is not None:
            assert call(getattr(users, row.wrong).headers).status_code == 403
        # 4. the right role in another organisation
        other = getattr(users, OTHER[row.right])
        r = call(other.headers)
        if row.other_org == "404":
            assert r.status_code == 404, r.text[:200]
            assert r.json()["error"] == "not_found"  # not 403: existence is not revealed
        elif row.other_org == "invisible":
            assert r.status_code == 200
            assert plan["plan_id"] not in r.text and item["rule_ids"][0] not in r.text
        # 5. the right user
        right = call(getattr(users, row.right).headers)
        assert _is_success(row, right.status_code), (right.status_code, right.text[:300])
        if row.other_org == "invisible":
            assert plan["plan_id"] in right.text or item["rule_ids"][0] in right.text
    assert verify_chain(shared_server.runtime.db).ok


def test_refusals_are_audited(shared_server, example_intake):
    users = shared_server.users
    with shared_server.client() as c:
        pid = c.post("/v1/plans", content=json.dumps(example_intake), headers=users.clinician.headers).json()[
            "plan_id"
        ]
        c.get(f"/v1/plans/{pid}")
        c.get(f"/v1/plans/{pid}", headers=users.admin.headers)
        c.get(f"/v1/plans/{pid}", headers=users.other_clinician.headers)
        c.get("/v1/plans/pl_doesnotexistdoesnotexi", headers=users.clinician.headers)
    shared_server.runtime.hardening.flush_noise(force=True)  # anonymous attempts: row or summary
    with shared_server.runtime.db.transaction(readonly=True) as tx:
        entries = list(tx.audit_entries())
    rows = [(e.action, e.outcome, e.actor_id, e.plan_id) for e in entries]
    summarised = [
        e for e in entries if e.action == "audit.anonymous_summary" and "action=plan.read" in (e.detail or "")
    ]
    assert ("plan.read", "unauthenticated", None, pid) in rows or summarised
    assert ("plan.read", "denied", users.admin.user_id, pid) in rows
    assert ("plan.read", "other_org", users.other_clinician.user_id, pid) in rows
    assert ("plan.read", "not_found", users.clinician.user_id, "pl_doesnotexistdoesnotexi") in rows
