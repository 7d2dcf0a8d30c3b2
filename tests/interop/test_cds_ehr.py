"""Playing the EHR against a real carepath server on loopback, with a loopback FHIR server.

Discovery; patient-view with full prefetch, with ``null`` prefetch (served from the allow-listed
FHIR server with the hook's bearer token), with a forbidden FHIR server (412, and no request
leaves); the EHR's signed JWT (bad signature, expired, replayed, wrong audience, untrusted
issuer, HMAC, 'none', foreign jku: 401); data about another patient (400); a patient without OUD
(no cards); feedback posted and reported per rule (API and command line); CORS; the card's link
to the pre-filled form. Every response is checked against the CDS Hooks card schema and every
suggested resource with fhir.resources (R4B). Request/response pairs are kept in
tests/interop/pairs/ (``CAREPATH_UPDATE_PAIRS=1`` rewrites them).
"""

from __future__ import annotations

import copy
import json
import os
import re
import secrets
import subprocess
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import jsonschema
import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import ec

from carepath.api.cds import PREFETCH, SERVICE_ID
from carepath.api.fhir import questionnaire_response, validate_resource
from carepath.api.settings import CdsClient
from tests.conftest import FIXED_TIME, ROOT
from tests.interop import fhir_server
from tests.interop.fhir_server import TOKEN, resources
from tests.service.helpers import ThreadServer, make_users

HERE = Path(__file__).resolve().parent
PAIRS = HERE / "pairs"
SCHEMA = json.loads((HERE / "schemas" / "cds-hooks-2.0-response.schema.json").read_text())
ISS = "https://ehr.hospital.example/cds-client"
ISS_JWKS_URL_CLIENT = "https://ehr2.hospital.example"
KID = "ehr-key-1"
ORIGIN = "https://ehr.hospital.example"
NOW = int(FIXED_TIME.timestamp())
PREGNANT, METHADONE, BUP, NO_OUD = (
    "pat-fentanyl-pregnant",
    "pat-methadone-qtc",
    "pat-bup-stable",
    "pat-no-oud",
)
UPDATE = bool(os.environ.get("CAREPATH_UPDATE_PAIRS"))


# ---------------------------------------------------------------- keys, JWKS server, carepath server


def _jwk(key: ec.EllipticCurvePrivateKey, kid: str) -> dict[str, Any]:
    public = json.loads(jwt.algorithms.ECAlgorithm.to_jwk(key.public_key()))
    return {**public, "kid": kid, "use": "sig", "alg": "ES384"}


EHR_KEY = ec.generate_private_key(ec.SECP384R1())
OTHER_KEY = ec.generate_private_key(ec.SECP384R1())
EHR2_KEY = ec.generate_private_key(ec.SECP384R1())


@pytest.fixture(scope="module")
def jwks_server():
    """The second EHR's JWK Set on loopback (fetched by carepath only from its configured URL)."""
    body = json.dumps({"keys": [_jwk(EHR2_KEY, "ehr2-key")]}).encode()
    hits: list[str] = []

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *a: Any) -> None:
            pass

        def do_GET(self) -> None:  # noqa: N802
            hits.append(self.path)
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.end_headers()
            self.wfile.write(body)

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    httpd.url = f"http://127.0.0.1:{httpd.server_address[1]}/jwks.json"  # type: ignore[attr-defined]
    httpd.hits = hits  # type: ignore[attr-defined]
    yield httpd
    httpd.shutdown()
    httpd.server_close()


@pytest.fixture(scope="module")
def fhir():
    yield from fhir_server.serve(PREGNANT, METHADONE, BUP, NO_OUD)


@pytest.fixture(scope="module")
def canary_fhir():
    """A FHIR server that is NOT on the allow-list: it must never receive a request."""
    yield from fhir_server.serve(PREGNANT)


@pytest.fixture(scope="module")
def srv(tmp_path_factory, engine, fhir, jwks_server):
    from carepath.api.app import create_app
    from carepath.api.settings import Settings

    base = tmp_path_factory.mktemp("cds-ehr")
    settings = Settings(
        data_dir=base / "data",
        database_url=f"sqlite:///{base / 'carepath.sqlite3'}",
        secret_key=secrets.token_hex(32),
        cds_clients=(
            CdsClient(issuer=ISS, organisation="clinic-a", jwks={"keys": [_jwk(EHR_KEY, KID)]}),
            CdsClient(issuer=ISS_JWKS_URL_CLIENT, organisation="clinic-b", jwks_url=jwks_server.url),
        ),
        cds_fhir_servers=(fhir.url,),
        cds_allowed_origins=(ORIGIN,),
        cds_smart_launch_url="https://carepath.example/smart/launch",
    )
    with ThreadServer(create_app(settings, engine=engine, clock=lambda: FIXED_TIME)) as server:
        server.users = make_users(server.runtime.db)
        server.db_path = base / "carepath.sqlite3"
        yield server


def _token(
    srv,
    *,
    key=EHR_KEY,
    kid=KID,
    iss=ISS,
    aud: str | None = None,
    iat=NOW,
    exp=NOW + 240,
    jti=None,
    alg="ES384",
    extra_headers=None,
) -> str:
    claims = {
        "iss": iss,
        "aud": aud or f"{srv.url}/cds-services/{SERVICE_ID}",
        "iat": iat,
        "exp": exp,
        "jti": jti or secrets.token_hex(12),
    }
    headers = {"kid": kid, "typ": "JWT", **(extra_headers or {})}
    return jwt.encode(claims, key, algorithm=alg, headers=headers)


def _auth(srv, **kw: Any) -> dict[str, str]:
    return {"Authorization": f"Bearer {_token(srv, **kw)}"}


# ---------------------------------------------------------------- hook requests


def _searchset(items: list[dict[str, Any]]) -> dict[str, Any]:
    return {"resourceType": "Bundle", "type": "searchset", "entry": [{"resource": r} for r in items]}


def full_prefetch(name: str) -> dict[str, Any]:
    """What an EHR sends for every prefetch template (null where it has no data)."""
    res = resources(name)
    by = lambda *kinds: [r for r in res if r["resourceType"] in kinds]  # noqa: E731
    loinc = {c.split("|")[1] for c in PREFETCH["observations"].split("code=")[1].split("&")[0].split(",")}
    observations = [o for o in by("Observation") if any(c["code"] in loinc for c in o["code"]["coding"])]
    surveys = [o for o in by("Observation") if o["category"][0]["coding"][0]["code"] == "survey"]
    statements = by("MedicationStatement")
    return {
        "patient": by("Patient")[0],
        "conditions": _searchset(by("Condition")),
        "medicationRequests": _searchset([m for m in by("MedicationRequest") if m["status"] == "active"]),
        "medicationStatements": _searchset(statements) if statements else None,
        "observations": _searchset(observations) if observations else None,
        "assessments": _searchset(surveys) if surveys else None,
        "encounters": _searchset(by("Encounter")) if by("Encounter") else None,
        "intake": None,
    }


def hook(
    patient_id: str, prefetch: Any = "absent", *, fhir_url: str | None = None, token: str | None = TOKEN
) -> dict[str, Any]:
    body: dict[str, Any] = {
        "hookInstance": f"hi-{secrets.token_hex(6)}",
        "hook": "patient-view",
        "context": {"userId": "Practitioner/dr-ortiz", "patientId": patient_id, "encounterId": "enc-today"},
    }
    if fhir_url:
        body["fhirServer"] = fhir_url
        if token:
            body["fhirAuthorization"] = {
                "access_token": token,
                "token_type": "Bearer",
                "expires_in": 300,
                "scope": "patient/*.read",
                "subject": "carepath",
            }
    if prefetch != "absent":
        body["prefetch"] = prefetch
    return body


def call(srv, body: dict[str, Any], headers: dict[str, str] | None = None) -> httpx.Response:
    headers = headers if headers is not None else _auth(srv)
    return httpx.post(f"{srv.url}/cds-services/{SERVICE_ID}", json=body, headers=headers, timeout=60)


def check_cards(body: dict[str, Any]) -> list[dict[str, Any]]:
    jsonschema.validate(body, SCHEMA)
    for card in body["cards"]:
        assert len(card["summary"]) < 140 and not card["summary"].endswith("\u2026"), card["summary"]
        for s in card.get("suggestions", []):
            for action in s["actions"]:
                validate_resource(action["resource"])
    return body["cards"]


def _codes(cards: list[dict[str, Any]]) -> list[str]:
    return [c["source"]["topic"]["code"] for c in cards]


def _normalise(text: str, srv) -> str:
    text = text.replace(srv.url, "http://carepath.test")
    text = re.sub(
        r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}",
        "00000000-0000-0000-0000-000000000000",
        text,
    )
    text = re.sub(r"prefill=[A-Za-z0-9_-]+", "prefill=TOKEN", text)
    text = re.sub(r'\\"prefill\\":\\"[A-Za-z0-9_-]+\\"', '\\"prefill\\":\\"TOKEN\\"', text)
    text = re.sub(r'"request_id": ?"[0-9a-f]{32}"', '"request_id": "REQUEST-ID"', text)
    return re.sub(r"hi-[0-9a-f]{12}", "hi-000000000000", text)


def pair(name: str, request: dict[str, Any], response: httpx.Response, srv) -> None:
    """Keep the request/response pair (in-NN-... / out-NN-...); check the stored one still fits."""
    inp, out = PAIRS / f"in-{name}.json", PAIRS / f"out-{name}.json"
    got = json.loads(_normalise(response.text, srv))
    if UPDATE or not out.exists():
        PAIRS.mkdir(exist_ok=True)
        inp.write_text(_normalise(json.dumps(request, indent=1), srv) + "\n")
        out.write_text(json.dumps({"status": response.status_code, "body": got}, indent=1) + "\n")
    stored = json.loads(out.read_text())
    assert stored["status"] == response.status_code
    if "cards" in got:
        jsonschema.validate(stored["body"], SCHEMA)
        assert _codes(stored["body"]["cards"]) == _codes(got["cards"]), (
            "regenerate with CAREPATH_UPDATE_PAIRS=1"
        )


def audit(srv, action: str) -> list[str]:
    with srv.runtime.db.transaction(readonly=True) as tx:
        return [e.outcome for e in tx.audit_entries() if e.action == action]


# ---------------------------------------------------------------- discovery


def test_discovery_lists_prefetch_templates_for_the_chart(srv):
    r = httpx.get(f"{srv.url}/cds-services")
    assert r.status_code == 200
    (svc,) = r.json()["services"]
    assert svc["id"] == SERVICE_ID and svc["hook"] == "patient-view"
    p = svc["prefetch"]
    assert p["patient"] == "Patient/{{context.patientId}}"
    for key, kind in [
        ("conditions", "Condition?"),
        ("medicationRequests", "MedicationRequest?"),
        ("medicationStatements", "MedicationStatement?"),
        ("observations", "Observation?"),
        ("encounters", "Encounter?"),
        ("intake", "QuestionnaireResponse?"),
    ]:
        assert p[key].startswith(kind) and "patient={{context.patientId}}" in p[key]
    assert "http://loinc.org|8636-3" in p["observations"]
    assert "questionnaire=https://carepath.example/fhir/Questionnaire/carepath-intake" in p["intake"]


# ---------------------------------------------------------------- patient-view


def test_full_prefetch_reads_the_chart_and_answers_with_cards_to_act_on(srv, fhir):
    before = len(fhir.requests)
    body = hook(PREGNANT, full_prefetch(PREGNANT))
    r = call(srv, body)
    assert r.status_code == 200, r.text
    cards = check_cards(r.json())
    pair("01-patient-view-full-prefetch", body, r, srv)
    assert len(fhir.requests) == before  # everything was prefetched: nothing fetched
    codes = _codes(cards)
    assert "alert.pregnancy" in codes
    assert codes[-1] == "missing_information" and codes[-2].startswith("loc.")
    plan_card = cards[-2]
    assert plan_card["summary"].startswith("Draft OUD plan: ")
    orders = [a["resource"] for c in cards for s in c.get("suggestions", []) for a in s["actions"]]
    naloxone = [
        o
        for o in orders
        if o["resourceType"] == "MedicationRequest"
        and o["medicationCodeableConcept"]["coding"][0]["code"] == "1725059"
    ]
    assert len(naloxone) == 1 and naloxone[0]["subject"] == {
        "reference": f"Patient/{PREGNANT}"
    }  # one card only
    assert any(
        o["resourceType"] == "MedicationRequest"
        and o["medicationCodeableConcept"]["coding"][0]["code"] == "1819"
        for o in orders
    )
    assert (
        naloxone[0]["medicationCodeableConcept"]["coding"][0]["system"]
        == "http://www.nlm.nih.gov/research/umls/rxnorm"
    )
    assert naloxone[0]["status"] == "draft" and naloxone[0]["intent"] == "proposal"
    for card in cards:
        assert card["source"]["url"].endswith("/v1/rules/fhir")
        assert {c["code"] for c in card["overrideReasons"]} >= {"patient-declined", "already-addressed"}
        absolute = [link for link in card["links"] if link["type"] == "absolute"]
        assert absolute and "/?prefill=" in absolute[0]["url"]
        assert any(link["type"] == "smart" and "appContext" in link for link in card["links"])
        assert "Rivera" not in json.dumps(card) and "MRN-40017" not in json.dumps(card)
    missing = cards[-1]["detail"]
    assert "COWS score" in missing and "Pregnant" in missing  # what was read, with its evidence
    assert "82810-3" in missing and "T40.411A" in missing
    assert "ok" in audit(srv, "cds.evaluate")


def test_null_prefetch_is_served_from_the_allow_listed_fhir_server(srv, fhir):
    before = len(fhir.requests)
    body = hook(PREGNANT, None, fhir_url=fhir.url)
    r = call(srv, body)
    assert r.status_code == 200, r.text
    cards = check_cards(r.json())
    pair("02-patient-view-null-prefetch-fetched", body, r, srv)
    asked = fhir.requests[before:]
    assert {s.path.split("/")[1] for s in asked} >= {
        "Patient",
        "Condition",
        "MedicationRequest",
        "Observation",
        "Encounter",
    }
    assert all(s.authorization == f"Bearer {TOKEN}" for s in asked)
    assert all(s.query.get("patient", [PREGNANT]) == [PREGNANT] for s in asked)
    full = check_cards(call(srv, hook(PREGNANT, full_prefetch(PREGNANT))).json())
    assert _codes(cards) == _codes(full)


def test_forbidden_fhir_server_gets_no_request_and_the_answer_is_412(srv, canary_fhir):
    body = hook(PREGNANT, None, fhir_url=canary_fhir.url)
    r = call(srv, body)
    assert r.status_code == 412
    assert "allow-list" in r.json()["message"]
    pair("03-patient-view-forbidden-fhir-server", body, r, srv)
    assert canary_fhir.requests == []
    assert call(srv, hook(PREGNANT)).status_code == 412  # no prefetch, no fhirServer
    assert "precondition_failed" in audit(srv, "cds.evaluate")


def test_missing_keys_only_are_fetched_and_null_means_no_data(srv, fhir):
    prefetch = full_prefetch(METHADONE)
    del prefetch["observations"]  # not sent: fetched
    prefetch["encounters"] = None  # no data: not fetched
    before = len(fhir.requests)
    r = call(srv, hook(METHADONE, prefetch, fhir_url=fhir.url))
    assert r.status_code == 200, r.text
    asked = [s.path for s in fhir.requests[before:]]
    assert asked == ["/Observation"]
    codes = _codes(check_cards(r.json()))
    assert "alert.qtc_prolonged" in codes  # the QTc came from the fetched observations


def test_patient_without_oud_gets_no_cards(srv):
    body = hook(NO_OUD, full_prefetch(NO_OUD))
    r = call(srv, body)
    assert r.status_code == 200 and r.json() == {"cards": []}
    pair("04-patient-view-no-oud", body, r, srv)
    assert "not_relevant" in audit(srv, "cds.evaluate")


def test_data_about_another_patient_is_refused(srv):
    body = hook(METHADONE, full_prefetch(PREGNANT))
    r = call(srv, body)
    assert r.status_code == 400 and r.json()["error"] == "patient_mismatch"
    pair("05-patient-view-mismatched-patient", body, r, srv)
    prefetch = full_prefetch(METHADONE)
    prefetch["conditions"] = _searchset(
        full_prefetch(PREGNANT)["conditions"]["entry"][0:1]
        and [full_prefetch(PREGNANT)["conditions"]["entry"][0]["resource"]]
    )
    assert call(srv, hook(METHADONE, prefetch)).status_code == 400
    qr = questionnaire_response(
        {"assessment_date": "2026-01-01", "patient": {"age": 40}},
        subject={"reference": "Patient/someone-else"},
    )
    prefetch = full_prefetch(METHADONE) | {"intake": qr}
    assert call(srv, hook(METHADONE, prefetch)).status_code == 400
    assert "mismatch" in audit(srv, "cds.evaluate")


def test_questionnaire_response_wins_over_the_chart(srv):
    prefetch = full_prefetch(BUP)
    qr = questionnaire_response(
        {"assessment_date": "2026-01-01", "patient": {"age": 38}, "current_treatment": {"moud": "methadone"}},
        subject={"reference": f"Patient/{BUP}"},
        authored="2025-12-31T10:00:00Z",
    )
    prefetch["intake"] = _searchset([qr])
    r = call(srv, hook(BUP, prefetch))
    assert r.status_code == 200, r.text
    cards = check_cards(r.json())
    detail = cards[-1]["detail"] if cards[-1]["source"]["topic"]["code"] == "missing_information" else ""
    assert "questionnaire was used" in detail or all("buprenorphine 8 MG" not in c["summary"] for c in cards)


# ---------------------------------------------------------------- JWT


@pytest.mark.parametrize(
    ("case", "make"),
    [
        ("no credentials", lambda srv: {}),
        ("signed with another key", lambda srv: _auth(srv, key=OTHER_KEY)),
        ("expired", lambda srv: _auth(srv, iat=NOW - 600, exp=NOW - 300)),
        ("lives too long", lambda srv: _auth(srv, exp=NOW + 3600)),
        ("wrong audience", lambda srv: _auth(srv, aud="https://other.example/cds-services/x")),
        ("untrusted issuer", lambda srv: _auth(srv, iss="https://evil.example")),
        ("HMAC", lambda srv: _auth(srv, key="secret-secret-secret-secret-32b!", alg="HS256")),
        ("alg none", lambda srv: _auth(srv, key=None, alg="none")),
        ("jku not the issuer's", lambda srv: _auth(srv, extra_headers={"jku": "https://evil.example/jwks"})),
        ("unknown kid", lambda srv: _auth(srv, kid="other-kid")),
    ],
)
def test_bad_jwts_are_401_with_the_reason(srv, case, make):
    r = call(srv, hook(PREGNANT, full_prefetch(PREGNANT)), headers=make(srv))
    assert r.status_code == 401, (case, r.text)
    assert "Rivera" not in r.text and "eyJ" not in r.text


def test_replayed_jwt_is_refused(srv):
    headers = _auth(srv, jti="replay-me-once")
    assert call(srv, hook(PREGNANT, full_prefetch(PREGNANT)), headers=headers).status_code == 200
    again = call(srv, hook(PREGNANT, full_prefetch(PREGNANT)), headers=headers)
    assert again.status_code == 401 and "replayed" in again.json()["message"]
    assert "unauthenticated" in audit(srv, "cds.evaluate")


def test_jwks_url_of_the_issuer_is_fetched_and_its_organisation_used(srv, jwks_server):
    headers = _auth(
        srv, key=EHR2_KEY, kid="ehr2-key", iss=ISS_JWKS_URL_CLIENT, extra_headers={"jku": jwks_server.url}
    )
    r = call(srv, hook(PREGNANT, full_prefetch(PREGNANT)), headers=headers)
    assert r.status_code == 200, r.text
    assert jwks_server.hits  # fetched from its configured URL
    with srv.runtime.db.transaction(readonly=True) as tx:
        org_b = tx.org_by_slug("clinic-b")
        card = tx.cds_card(r.json()["cards"][0]["uuid"], org_b.id)
    assert card is not None  # the card belongs to the second EHR's organisation


def test_carepath_api_tokens_still_work_and_roles_apply(srv):
    body = hook(PREGNANT, full_prefetch(PREGNANT))
    assert call(srv, body, headers=srv.users.clinician.headers).status_code == 200
    assert call(srv, body, headers=srv.users.admin.headers).status_code == 403


# ---------------------------------------------------------------- feedback


def test_feedback_is_stored_per_card_and_reported_per_rule(srv):
    r = call(srv, hook(PREGNANT, full_prefetch(PREGNANT)))
    cards = r.json()["cards"]
    plan_card = next(c for c in cards if c["source"]["topic"]["code"] == "alert.high_overdose_risk")
    alert_card = next(c for c in cards if c["source"]["topic"]["code"] == "alert.pregnancy")
    naloxone = next(s for s in plan_card["suggestions"] if "aloxone" in s["label"])
    feedback = {
        "feedback": [
            {
                "card": plan_card["uuid"],
                "outcome": "accepted",
                "acceptedSuggestions": [{"id": naloxone["uuid"]}],
                "outcomeTimestamp": "2026-01-01T12:03:00Z",
            },
            {
                "card": alert_card["uuid"],
                "outcome": "overridden",
                "overrideReason": {
                    "reason": {
                        "system": "https://carepath.example/fhir/CodeSystem/cds-override-reason",
                        "code": "already-addressed",
                        "display": "Already addressed or in place",
                    },
                    "userComment": "Seen by OB today, Maria Rivera",
                },
                "outcomeTimestamp": "2026-01-01T12:04:00Z",
            },
            {
                "card": "00000000-0000-4000-8000-000000000000",
                "outcome": "overridden",
                "outcomeTimestamp": "2026-01-01T12:05:00Z",
            },
        ]
    }
    url = f"{srv.url}/cds-services/{SERVICE_ID}/feedback"
    fb = httpx.post(url, json=feedback, headers=_auth(srv, aud=url))
    assert fb.status_code == 200, fb.text
    assert fb.json() == {"stored": 2, "unknownCards": ["00000000-0000-4000-8000-000000000000"]}
    pair("06-feedback", feedback, fb, srv)
    bad = httpx.post(url, json={"feedback": [{"card": "x", "outcome": "maybe"}]}, headers=_auth(srv, aud=url))
    assert bad.status_code == 422 and "maybe" not in bad.text
    report = httpx.get(
        f"{srv.url}/v1/cds/feedback/summary?bucket=all", headers=srv.users.reviewer.headers
    ).json()
    rows = {row["rule_id"]: row for row in report["rules"]}
    alert_rules = [r for r in rows.values() if r["overridden"]]
    assert alert_rules and all(r["reasons"] == {"Already addressed or in place": 1} for r in alert_rules)
    assert rows["OUD-HR-001"]["accepted"] >= 1 and rows["OUD-HR-001"]["cards"] >= 1
    assert "Rivera" not in json.dumps(report)
    assert (
        httpx.get(f"{srv.url}/v1/cds/feedback/summary", headers=srv.users.clinician.headers).status_code
        == 403
    )
    other = httpx.get(f"{srv.url}/v1/cds/feedback/summary", headers=srv.users.other_reviewer.headers).json()
    assert all(r["overridden"] == 0 for r in other["rules"])  # clinic-b sees none of clinic-a's feedback
    env = {**os.environ, "DATABASE_URL": f"sqlite:///{srv.db_path}"}
    run = subprocess.run(
        [sys.executable, "-m", "carepath.api", "rules", "feedback", "--org", "clinic-a", "--bucket", "all"],
        capture_output=True,
        text=True,
        env=env,
        cwd=ROOT,
        timeout=120,
    )
    assert run.returncode == 0, run.stderr
    assert "OUD-HR-001" in run.stdout and "Already addressed or in place" in run.stdout


# ---------------------------------------------------------------- CORS and the pre-filled form


def test_cors_only_for_configured_ehr_origins(srv):
    pre = {
        "Origin": ORIGIN,
        "Access-Control-Request-Method": "POST",
        "Access-Control-Request-Headers": "authorization, content-type",
    }
    r = httpx.options(f"{srv.url}/cds-services/{SERVICE_ID}", headers=pre)
    assert r.status_code == 200 and r.headers["access-control-allow-origin"] == ORIGIN
    assert "authorization" in r.headers["access-control-allow-headers"].lower()
    evil = httpx.options(
        f"{srv.url}/cds-services/{SERVICE_ID}", headers={**pre, "Origin": "https://evil.example"}
    )
    assert "access-control-allow-origin" not in evil.headers
    d = httpx.get(f"{srv.url}/cds-services", headers={"Origin": ORIGIN})
    assert d.headers["access-control-allow-origin"] == ORIGIN
    plans = httpx.get(f"{srv.url}/v1/plans", headers={"Origin": ORIGIN, **srv.users.clinician.headers})
    assert "access-control-allow-origin" not in plans.headers  # only the CDS routes


def test_the_card_link_opens_the_form_prefilled_for_the_same_organisation(srv):
    cards = call(srv, hook(PREGNANT, full_prefetch(PREGNANT))).json()["cards"]
    link = cards[0]["links"][0]["url"]
    path = link[len(srv.url) :]
    page = httpx.get(srv.url + path, headers={**srv.users.clinician.headers, "Accept": "text/html"})
    assert page.status_code == 200
    assert 'value="29"' in page.text  # age from Patient.birthDate
    assert re.search(
        r'name="substance_use.cows_score"[^>]*value="9"|value="9"[^>]*name="substance_use.cows_score"',
        page.text,
    )
    other = httpx.get(srv.url + path, headers={**srv.users.other_clinician.headers, "Accept": "text/html"})
    assert 'value="29"' not in other.text and "expired or is not yours" in other.text
    assert "ok" in audit(srv, "cds.prefill") and "not_found" in audit(srv, "cds.prefill")


def test_requests_never_echo_patient_data_in_errors(srv):
    body = hook(PREGNANT, full_prefetch(PREGNANT))
    body["prefetch"]["patient"] = copy.deepcopy(body["prefetch"]["patient"]) | {
        "resourceType": "Practitioner"
    }
    r = call(srv, body)
    assert r.status_code == 400 and "Rivera" not in r.text
