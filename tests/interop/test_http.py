"""FHIR, CDS Hooks and web-form routes over HTTP, against a real server on loopback (httpx).

The browser-driven journey is in tests/e2e; here: authentication, roles, organisations, CSRF,
audit rows, status codes and no echo of submitted values.
"""

from __future__ import annotations

import json
import re
import secrets
from contextlib import closing

import httpx
import pytest
from fhir.resources.R4B.bundle import Bundle

from carepath.api.fhir import questionnaire_response
from carepath.api.intake_fields import form_values
from tests.conftest import ROOT
from tests.service.helpers import PASSWORD, ThreadServer, make_users

CANARY = "CANARY-HTTP-6601"
EXAMPLE = json.loads((ROOT / "examples" / "intake-fentanyl.json").read_text())


@pytest.fixture(scope="module")
def srv(tmp_path_factory, engine):
    from carepath.api.app import create_app
    from carepath.api.settings import Settings

    base = tmp_path_factory.mktemp("interop-http")
    settings = Settings(
        data_dir=base / "data",
        database_url=f"sqlite:///{base / 'carepath.sqlite3'}",
        secret_key=secrets.token_hex(32),
        queue_timeout_s=60,  # no time-based shedding on a loaded test host
        cookie_secure=False,
        rate_anonymous_per_ip=5000.0,
    )
    with ThreadServer(create_app(settings, engine=engine)) as server:
        server.users = make_users(server.runtime.db)
        yield server


def audit(srv, action: str) -> list:
    with srv.runtime.db.transaction(readonly=True) as tx:
        return [e for e in tx.audit_entries() if e.action == action]


def hook_body(intake: dict | None) -> dict:
    body = {"hookInstance": "6b0c7e4c", "hook": "patient-view", "context": {"patientId": "p-1"}}
    if intake is not None:
        body["prefetch"] = {"intake": questionnaire_response(intake)}
    return body


def session(srv, account) -> tuple[httpx.Client, str]:
    """A browser-like client signed in through the form; returns it and its CSRF token."""
    client = srv.client(follow_redirects=False)
    page = client.get("/login")
    token = re.search(r'name="csrf_token" value="([^"]+)"', page.text).group(1)
    r = client.post("/login", data={"email": account.email, "password": PASSWORD, "csrf_token": token})
    assert r.status_code == 303
    found = re.search(r'name="csrf_token" value="([^"]+)"', client.get("/").text)
    return client, found.group(1) if found else ""


# ---------------------------------------------------------------- CDS Hooks


def test_cds_discovery_is_public(srv):
    r = httpx.get(srv.url + "/cds-services")
    assert r.status_code == 200
    (svc,) = r.json()["services"]
    assert svc["id"] == "carepath-oud-pathway" and svc["hook"] == "patient-view"


def test_cds_call_needs_a_valid_token_and_a_reading_role(srv):
    url = srv.url + "/cds-services/carepath-oud-pathway"
    body = hook_body(EXAMPLE)
    assert httpx.post(url, json=body).status_code == 401
    assert httpx.post(url, json=body, headers={"Authorization": "Bearer cpt_nope"}).status_code == 401
    assert httpx.post(url, json=body, headers=srv.users.admin.headers).status_code == 403
    r = httpx.post(url, json=body, headers=srv.users.clinician.headers, timeout=60)
    assert r.status_code == 200
    cards = r.json()["cards"]
    assert any(c["summary"].startswith("Draft OUD plan: ") for c in cards)
    assert all(c["source"]["label"].startswith("carepath ") for c in cards)
    outcomes = [e.outcome for e in audit(srv, "cds.evaluate")]
    assert "ok" in outcomes and "unauthenticated" in outcomes and "denied" in outcomes


def test_cds_unknown_service_is_404(srv):
    r = httpx.post(
        srv.url + "/cds-services/other", json=hook_body(EXAMPLE), headers=srv.users.clinician.headers
    )
    assert r.status_code == 404


def test_cds_missing_prefetch_is_412_and_invalid_intake_422_without_echo(srv):
    url = srv.url + "/cds-services/carepath-oud-pathway"
    headers = srv.users.reviewer.headers
    r = httpx.post(url, json=hook_body(None), headers=headers)
    assert r.status_code == 412 and "Patient" in r.json()["message"]
    bad = {**EXAMPLE, "patient": {"age": 8, "name": CANARY}}
    r = httpx.post(url, json=hook_body(bad), headers=headers)
    assert r.status_code == 422
    assert {"field": "patient.age", "message": "must be at least 12"} in r.json()["errors"]
    assert CANARY not in r.text
    r = httpx.post(url, content=b'{"hook": "' + CANARY.encode() + b'"', headers=headers)
    assert r.status_code == 400 and CANARY not in r.text
    assert "invalid" in [e.outcome for e in audit(srv, "cds.evaluate")]


# ---------------------------------------------------------------- GET /v1/plans/{id}/fhir


def test_fhir_route_returns_a_valid_bundle_to_the_right_organisation_only(srv):
    u = srv.users
    intake = {**EXAMPLE, "patient": {**EXAMPLE["patient"], "name": CANARY, "id": CANARY + "-MRN"}}
    created = httpx.post(srv.url + "/v1/plans", json=intake, headers=u.clinician.headers, timeout=60)
    assert created.status_code == 201, created.text
    url = f"{srv.url}/v1/plans/{created.json()['plan_id']}/fhir"
    r = httpx.get(url, headers=u.reviewer.headers)
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("application/fhir+json")
    Bundle.model_validate(r.json())
    assert CANARY not in r.text
    assert r.json()["entry"][0]["resource"]["identifier"][0]["value"] == created.json()["plan_id"]
    assert httpx.get(url).status_code == 401
    assert httpx.get(url, headers=u.admin.headers).status_code == 403
    assert httpx.get(url, headers=u.other_clinician.headers).status_code == 404
    assert "ok" in [e.outcome for e in audit(srv, "plan.fhir")]


# ---------------------------------------------------------------- web form


def test_form_requires_a_session_browsers_are_sent_to_sign_in(srv):
    r = httpx.get(srv.url + "/", headers={"Accept": "text/html"})
    assert r.status_code == 303 and r.headers["location"] == "/login?next=/"
    assert httpx.get(srv.url + "/").status_code == 401
    assert httpx.post(srv.url + "/", data={"patient.age": "30"}).status_code == 401
    assert httpx.get(srv.url + "/static/carepath.css").status_code == 200
    assert httpx.get(srv.url + "/static/secret.key").status_code == 404


def test_reviewers_cannot_use_the_form(srv):
    client, _ = session(srv, srv.users.reviewer)
    with closing(client):
        assert client.get("/").status_code == 403
        plan = httpx.post(
            srv.url + "/v1/plans", json=EXAMPLE, headers=srv.users.clinician.headers, timeout=60
        )
        page = client.get(f"/plans/{plan.json()['plan_id']}")
        assert page.status_code == 200  # reviewers read plans, but record no overrides
        assert "Record an edit or override" not in page.text and "Correct intake" not in page.text


def test_form_submit_stores_through_the_service_with_audit_and_csrf(srv):
    client, csrf = session(srv, srv.users.clinician)
    with closing(client):
        data = {**form_values(EXAMPLE), "csrf_token": [csrf]}
        before = len(audit(srv, "plan.create"))
        assert client.post("/", data={k: v for k, v in data.items() if k != "csrf_token"}).status_code == 403
        r = client.post("/", data=data)
        assert r.status_code == 303, r.text[:500]
        plan_id = r.headers["location"].rsplit("/", 1)[1]
        assert [e.outcome for e in audit(srv, "plan.create")][before:] == ["denied", "ok"]
        page = client.get(f"/plans/{plan_id}")
        assert page.status_code == 200
        assert "default-src 'self'" in page.headers["content-security-policy"]
        assert "<script" not in page.text
        for link in (f"/v1/plans/{plan_id}/report.pdf", f"/v1/plans/{plan_id}/report.html?audience=patient"):
            assert f'href="{link}"' in page.text
        other, _ = session(srv, srv.users.other_clinician)
        with closing(other):
            assert other.get(f"/plans/{plan_id}").status_code == 404


def test_invalid_form_is_422_with_field_errors_and_nothing_stored(srv):
    client, csrf = session(srv, srv.users.clinician)
    with closing(client):
        data = {**form_values(EXAMPLE), "csrf_token": [csrf]}
        data["patient.age"] = ["8"]
        data["substance_use.cows_score"] = ["lots"]
        data["patient.name"] = ['"><script>x()</script>' + CANARY]
        before = httpx.get(srv.url + "/v1/plans?limit=100", headers=srv.users.clinician.headers).json()
        r = client.post("/", data=data)
        assert r.status_code == 422
        assert re.search(r'id="err-patient-age">.*must be at least 12', r.text)
        assert re.search(r'id="err-substance_use-cows_score">.*must be a whole number', r.text)
        assert "<script>x()" not in r.text and "&lt;script&gt;x()" in r.text  # re-filled, escaped
        errors = re.findall(r'class="field-error"[^>]*>(.*?)</p>', r.text)
        assert errors and not any("lots" in e or CANARY in e or ">8<" in e for e in errors)
        after = httpx.get(srv.url + "/v1/plans?limit=100", headers=srv.users.clinician.headers).json()
        assert len(after["items"]) == len(before["items"])
        assert audit(srv, "plan.create")[-1].outcome == "invalid"


def test_override_from_the_plan_page(srv):
    client, csrf = session(srv, srv.users.clinician)
    with closing(client):
        r = client.post("/", data={**form_values(EXAMPLE), "csrf_token": [csrf]})
        plan_id = r.headers["location"].rsplit("/", 1)[1]
        override = {
            "csrf_token": csrf,
            "form_id": "loc",
            "code": "hr.naloxone",
            "section": "item",
            "phase": "harm_reduction",
            "action": "override",
            "replacement_kind": "consider",
            "reason": "",
        }
        r = client.post(f"/plans/{plan_id}/overrides", data=override)
        assert r.status_code == 422 and "Give the reason" in r.text
        r = client.post(
            f"/plans/{plan_id}/overrides", data={**override, "reason": "Kit given at the SSP <today>"}
        )
        assert r.status_code == 303 and "recorded=1" in r.headers["location"]
        page = client.get(f"/plans/{plan_id}")
        assert "Kit given at the SSP &lt;today&gt;" in page.text
        api = httpx.get(f"{srv.url}/v1/plans/{plan_id}", headers=srv.users.clinician.headers).json()
        assert api["record"]["overrides"][0]["reason"] == "Kit given at the SSP <today>"
        no_csrf = {k: v for k, v in override.items() if k != "csrf_token"}
        assert client.post(f"/plans/{plan_id}/overrides", data={**no_csrf, "reason": "x"}).status_code == 403


def test_correct_intake_makes_a_new_linked_version(srv):
    client, csrf = session(srv, srv.users.clinician)
    with closing(client):
        r = client.post("/", data={**form_values(EXAMPLE), "csrf_token": [csrf]})
        first = r.headers["location"].rsplit("/", 1)[1]
        edit = client.get(f"/plans/{first}/edit")
        assert edit.status_code == 200 and 'value="34"' in edit.text
        data = {
            **form_values({**EXAMPLE, "patient": {"age": 35, "sex_at_birth": "male"}}),
            "csrf_token": [csrf],
        }
        r = client.post(f"/plans/{first}/edit", data=data)
        assert r.status_code == 303
        second = r.headers["location"].rsplit("/", 1)[1]
        api = httpx.get(f"{srv.url}/v1/plans/{second}", headers=srv.users.clinician.headers).json()
        assert api["record"]["previous_id"] == first and api["record"]["version"] == 2


def test_double_submit_of_one_form_stores_one_plan(srv):
    client, csrf = session(srv, srv.users.clinician)
    with closing(client):
        form = client.get("/").text
        key = re.search(r'name="form_key" value="([^"]+)"', form).group(1)
        data = {**form_values(EXAMPLE), "csrf_token": [csrf], "form_key": [key]}
        first = client.post("/", data=data)
        second = client.post("/", data=data)
        assert first.status_code == second.status_code == 303
        assert first.headers["location"] == second.headers["location"]
