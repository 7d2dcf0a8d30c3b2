"""Canary test: intakes carrying unique canary strings go through every route, valid and
invalid, against `carepath serve` in a subprocess at DEBUG log level; no canary may appear in
the server's stdout/stderr or in any JSON error response."""

from __future__ import annotations

import copy
import json
import secrets

import httpx

from carepath.api.app import route_table
from tests.service.helpers import ProcessServer, make_users, sqlite_db_in

TAG = secrets.token_hex(4)
NAME = f"Canaryname{TAG} Doe"
MRN = f"MRN-CANARY-{TAG}"
DRUG = f"canarymycin-{TAG}"
REASON = f"canary reason {TAG}"
CANARIES = (NAME, MRN, DRUG, REASON, f"Canaryname{TAG}", TAG)


def _with_canaries(intake: dict) -> dict:
    out = copy.deepcopy(intake)
    out["patient"].update({"name": NAME, "id": MRN})
    out.setdefault("medical", {})["interacting_medications"] = ["efavirenz", DRUG]
    return out


def _invalid_variants(good: dict) -> list[bytes]:
    variants: list[object] = []
    for path, value in [
        (("patient", "age"), NAME),
        (("patient", "sex_at_birth"), MRN),
        (("stage",), DRUG),
        (("medical", "interacting_medications"), [DRUG, 7, {"x": NAME}]),
        (("patient", "name"), NAME * 30),
        (("substance_use", "last_use_hours"), -1),
    ]:
        bad = copy.deepcopy(good)
        target = bad
        for key in path[:-1]:
            target = target.setdefault(key, {})
        target[path[-1]] = value
        variants.append(bad)
    unknown = copy.deepcopy(good)
    unknown["patient"][f"{NAME}"] = MRN  # an unknown field whose NAME is patient data
    variants.append(unknown)
    raw = [json.dumps(v).encode() for v in variants]
    raw.append(json.dumps(good).encode()[:-5])  # truncated JSON
    raw.append(("{" + f'"patient": {{"name": "{NAME}", "x": "' + "y" * 300_000 + '"}}').encode())  # too large
    return raw


def test_no_canary_in_logs_or_error_responses(tmp_path, example_intake):
    data = tmp_path / "data"
    db = sqlite_db_in(data)
    users = make_users(db)
    db.dispose()
    alice, rita, other = users.clinician, users.reviewer, users.other_clinician
    good = _with_canaries(example_intake)
    errors: list[httpx.Response] = []
    seen_routes: set[tuple[str, str]] = set()

    srv = ProcessServer(data, env={"CAREPATH_LOG_LEVEL": "DEBUG"})
    with srv, httpx.Client(base_url=srv.url, timeout=60) as c:

        def call(method: str, route: str, url: str, **kw) -> httpx.Response:
            seen_routes.add((method, route))
            r = c.request(method, url, **kw)
            if r.status_code >= 400:
                errors.append(r)
            return r

        plan = call(
            "POST",
            "/v1/plans",
            "/v1/plans",
            content=json.dumps(good),
            headers={**alice.headers, "Idempotency-Key": "canary-1"},
        )
        assert plan.status_code == 201, plan.text
        pid = plan.json()["plan_id"]
        for raw in _invalid_variants(good):
            assert (
                call("POST", "/v1/plans", "/v1/plans", content=raw, headers=alice.headers).status_code == 422
            )
            call(
                "POST",
                "/v1/plans/{plan_id}/reevaluate",
                f"/v1/plans/{pid}/reevaluate",
                content=raw,
                headers=alice.headers,
            )
        call(
            "POST",
            "/v1/plans",
            "/v1/plans",
            content=json.dumps({**good, "stage": "remission"}),
            headers={**alice.headers, "Idempotency-Key": "canary-1"},
        )  # 409: key reused
        changed = copy.deepcopy(good)
        changed["substance_use"]["cows_score"] = 14
        v2 = call(
            "POST",
            "/v1/plans/{plan_id}/reevaluate",
            f"/v1/plans/{pid}/reevaluate",
            content=json.dumps(changed),
            headers=alice.headers,
        )
        assert v2.status_code == 201
        call(
            "POST", "/v1/plans/{plan_id}/reevaluate", f"/v1/plans/{pid}/reevaluate", headers=alice.headers
        )  # 409
        v2id = v2.json()["plan_id"]
        for who in (alice, rita, other, None):
            headers = who.headers if who else {}
            call("GET", "/v1/plans/{plan_id}", f"/v1/plans/{v2id}", headers=headers)
            call("GET", "/v1/plans/{plan_id}/report.html", f"/v1/plans/{v2id}/report.html", headers=headers)
            call(
                "GET",
                "/v1/plans/{plan_id}/report.html",
                f"/v1/plans/{v2id}/report.html?audience=patient",
                headers=headers,
            )
            call("GET", "/v1/plans/{plan_id}/report.pdf", f"/v1/plans/{v2id}/report.pdf", headers=headers)
            call("GET", "/v1/plans/{plan_id}/fhir", f"/v1/plans/{v2id}/fhir", headers=headers)
            call("GET", "/v1/plans", "/v1/plans?include_superseded=true", headers=headers)
        item = v2.json()["phases"][0]["items"][0]
        for body in (
            {"code": item["code"], "action": "override", "reason": REASON, "replacement_text": NAME},
            {"code": DRUG, "action": "edit", "reason": REASON},
            {"code": item["code"], "action": MRN, "reason": REASON},
            {"code": item["code"], "action": "edit", "reason": REASON * 100},
            {"code": item["code"], "action": "edit", "reason": REASON, NAME: MRN},
            {"code": item["code"], "action": "decline", "reason": REASON},
            {"code": item["code"], "action": "modify", "dose": NAME, "reason": REASON},
            {"code": item["code"], "action": "decline"},
        ):
            call(
                "POST",
                "/v1/plans/{plan_id}/overrides",
                f"/v1/plans/{v2id}/overrides",
                json=body,
                headers=alice.headers,
            )
        call("GET", "/v1/plans/{plan_id}/decisions", f"/v1/plans/{v2id}/decisions", headers=alice.headers)
        call("POST", "/v1/plans/search", "/v1/plans/search", json={"patient": NAME}, headers=alice.headers)
        call(
            "POST",
            "/v1/plans/search",
            "/v1/plans/search",
            json={"patient": MRN, "x": NAME},
            headers=alice.headers,
        )
        call("GET", "/plans", "/plans", headers=alice.headers)
        call("POST", "/plans", "/plans", data={"patient": NAME}, headers=alice.headers)
        call(
            "POST",
            "/v1/plans/{plan_id}/comments",
            f"/v1/plans/{v2id}/comments",
            json={"text": REASON},
            headers=rita.headers,
        )
        call(
            "POST",
            "/plans/{plan_id}/comments",
            f"/plans/{v2id}/comments",
            data={"text": REASON},
            headers=rita.headers,
        )
        call(
            "POST",
            "/plans/{plan_id}/missing",
            f"/plans/{v2id}/missing",
            data={"field": "social.days_since_release", "answer": NAME},
            headers=alice.headers,
        )
        call(
            "POST",
            "/v1/plans/{plan_id}/sign",
            f"/v1/plans/{v2id}/sign",
            json={"name": NAME},
            headers=alice.headers,
        )
        call(
            "POST",
            "/plans/{plan_id}/sign",
            f"/plans/{v2id}/sign",
            data={"name": NAME, "credentials": MRN, "attest": "yes"},
            headers=alice.headers,
        )
        call("POST", "/plans/{plan_id}/amend", f"/plans/{v2id}/amend", headers=alice.headers)
        call("GET", "/v1/overrides/summary", "/v1/overrides/summary", headers=rita.headers)
        call("GET", "/v1/rules", "/v1/rules", headers=rita.headers)
        call("GET", "/health", "/health")
        call("GET", "/health/live", "/health/live")
        # hardening (issue 10): tokens, 42 CFR Part 2 consent, disclosures, accounting
        call("GET", "/v1/tokens", "/v1/tokens", headers=alice.headers)
        tok = call(
            "POST", "/v1/tokens", "/v1/tokens", json={"label": "canary", "days": 1}, headers=alice.headers
        )
        call("POST", "/v1/tokens", "/v1/tokens", json={"label": NAME, "days": MRN}, headers=alice.headers)
        token_id = (tok.json() or {}).get("token_id", 999999) if tok.status_code == 201 else 999999
        call("DELETE", "/v1/tokens/{token_id}", f"/v1/tokens/{token_id}", headers=alice.headers)
        consent = {"patient_id": MRN, "recipient": NAME, "purpose": "treatment"}
        made = call("POST", "/v1/consents", "/v1/consents", json=consent, headers=alice.headers)
        call("POST", "/v1/consents", "/v1/consents", json={**consent, "purpose": ""}, headers=alice.headers)
        search = "/v1/consents/search"
        call("POST", search, search, json={"patient_id": MRN}, headers=rita.headers)
        call("POST", search, search, json={"patient_id": MRN, NAME: MRN}, headers=rita.headers)
        consent_id = (made.json() or {}).get("consent_id", 999999) if made.status_code == 201 else 999999
        revoke = "/v1/consents/{consent_id}/revoke"
        call("POST", revoke, f"/v1/consents/{consent_id}/revoke", headers=alice.headers)
        disclosure = {"plan_id": v2id, "recipient": NAME, "purpose": "treatment"}
        call("POST", "/v1/disclosures", "/v1/disclosures", json=disclosure, headers=alice.headers)
        call(
            "POST",
            "/v1/disclosures",
            "/v1/disclosures",
            json={**disclosure, "plan_id": MRN},
            headers=alice.headers,
        )
        call("POST", "/v1/accounting", "/v1/accounting", json={"patient_id": MRN}, headers=rita.headers)
        call(
            "POST",
            "/v1/accounting",
            "/v1/accounting",
            json={"patient_id": MRN, "x": NAME},
            headers=rita.headers,
        )
        call(
            "POST",
            "/cds-services/{service_id}",
            "/cds-services/carepath-oud-pathway",
            json={"hook": "patient-view", "hookInstance": TAG, "prefetch": {"intake": good}},
            headers=alice.headers,
        )
        call(
            "POST",
            "/cds-services/{service_id}",
            "/cds-services/carepath-oud-pathway",
            json={"hook": "patient-view", "prefetch": {"intake": {**good, "stage": NAME}}},
            headers=alice.headers,
        )
        call("GET", "/cds-services", "/cds-services")
        from carepath.api.fhir import questionnaire_response

        ref = {"reference": "Patient/p-canary"}
        patient = {
            "resourceType": "Patient",
            "id": "p-canary",
            "name": [{"text": NAME}],
            "identifier": [{"value": MRN}],
            "birthDate": "1990-01-01",
        }
        icd = {"system": "http://hl7.org/fhir/sid/icd-10-cm", "code": "F11.20"}
        oud = {"resourceType": "Condition", "code": {"coding": [icd], "text": NAME}, "subject": ref}
        cds_r = call(
            "POST",
            "/cds-services/{service_id}",
            "/cds-services/carepath-oud-pathway",
            json={
                "hook": "patient-view",
                "hookInstance": TAG,
                "context": {"patientId": "p-canary"},
                "prefetch": {
                    "patient": patient,
                    "conditions": {"resourceType": "Bundle", "entry": [{"resource": oud}]},
                },
            },
            headers=alice.headers,
        )
        card = (cds_r.json().get("cards") or [{"uuid": "none"}])[0]["uuid"]
        feedback = "/cds-services/carepath-oud-pathway/feedback"
        overridden = {
            "card": card,
            "outcome": "overridden",
            "overrideReason": {"userComment": NAME},
            "outcomeTimestamp": "2026-01-01T00:00:00Z",
        }
        route = "/cds-services/{service_id}/feedback"
        call("POST", route, feedback, json={"feedback": [overridden]}, headers=alice.headers)
        call("POST", route, feedback, json={"feedback": [{"card": NAME}]}, headers=alice.headers)
        call("GET", "/v1/cds/feedback/summary", "/v1/cds/feedback/summary", headers=rita.headers)
        questionnaire = "/fhir/Questionnaire/carepath-intake"
        call("GET", questionnaire, questionnaire, headers=rita.headers)
        call("GET", "/v1/rules/fhir", "/v1/rules/fhir", headers=rita.headers)
        qr = questionnaire_response(good)
        qr_route = "/fhir/QuestionnaireResponse"
        call("POST", qr_route, qr_route, json=qr, headers=alice.headers)
        bad_qr = {**qr, "item": [{"linkId": NAME, "answer": [{"valueString": MRN}]}]}
        call("POST", qr_route, qr_route, json=bad_qr, headers=alice.headers)
        call("POST", "/login", "/login", data={"email": NAME, "password": MRN})
        call("GET", "/login", "/login")
        call("GET", "/session", "/session", headers=alice.headers)
        call("GET", "/openapi.json", "/openapi.json", headers=alice.headers)
        call("POST", "/logout", "/logout", headers=alice.headers)
        # the web form, as a bearer client (no CSRF needed): valid and invalid submissions
        form = {
            "patient.name": NAME,
            "patient.id": MRN,
            "patient.age": "34",
            "assessment_date": "2026-03-02",
            "medical.interacting_medications": DRUG,
        }
        call("GET", "/", "/", headers=alice.headers)
        call("POST", "/", "/", data=form, headers=alice.headers)
        call("POST", "/", "/", data={**form, "patient.age": NAME}, headers=alice.headers)
        call("GET", "/plans/{plan_id}", f"/plans/{v2id}", headers=alice.headers)
        call("GET", "/plans/{plan_id}/edit", f"/plans/{v2id}/edit", headers=alice.headers)
        call(
            "POST",
            "/plans/{plan_id}/overrides",
            f"/plans/{v2id}/overrides",
            data={"code": item["code"], "action": "edit", "reason": REASON},
            headers=alice.headers,
        )
        call(
            "POST",
            "/plans/{plan_id}/edit",
            f"/plans/{v2id}/edit",
            data={**form, "patient.age": MRN},
            headers=alice.headers,
        )
        call("GET", "/static/{name}", "/static/carepath.css")

    logs = srv.logs()
    assert "POST /v1/plans 201" in logs and "GET /v1/plans/{plan_id} 404" in logs  # logs were captured
    for canary in CANARIES:
        assert canary not in logs, f"canary {canary!r} leaked into the server log"
    json_errors = [r for r in errors if r.headers.get("content-type", "").startswith("application/json")]
    assert len(json_errors) >= 20
    for r in json_errors:
        for canary in CANARIES:
            assert canary not in r.text, (r.request.method, r.request.url.path, r.status_code)
    # HTML error pages (the form shown again with its errors) refill the clinician's own inputs
    # by design; they must not add the values to error messages:
    for r in errors:
        if r.headers.get("content-type", "").startswith("text/html"):
            assert f"{NAME} is" not in r.text and f"'{NAME}'" not in r.text

    walked = {(r.method, r.path) for r in route_table(srv_app())}
    assert walked <= seen_routes, f"routes the canary did not visit: {sorted(walked - seen_routes)}"


def srv_app():
    from carepath.api.app import create_app

    return create_app()
