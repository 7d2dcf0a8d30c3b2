"""The JSON API against a real server on loopback (uvicorn), on SQLite and on PostgreSQL."""

from __future__ import annotations

import copy
import json
from concurrent.futures import ThreadPoolExecutor

import pytest

from carepath.api.audit import verify_chain
from carepath.api.middleware import SECURITY_HEADERS


def _post(client, account, intake, key=None, path="/v1/plans"):
    headers = dict(account.headers)
    if key:
        headers["Idempotency-Key"] = key
    return client.post(path, content=json.dumps(intake), headers=headers)


def test_create_read_list_and_overrides(server, example_intake):
    alice = server.users.clinician
    with server.client() as c:
        r = _post(c, alice, example_intake)
        assert r.status_code == 201, r.text
        plan = r.json()
        pid = plan["plan_id"]
        assert r.headers["location"] == f"/v1/plans/{pid}"
        assert plan["record"]["version"] == 1 and plan["record"]["previous_id"] is None
        assert plan["ruleset"]["sha256"] == server.runtime.engine.pack.sha256
        assert plan["level_of_care"]["code"].startswith("loc.")
        assert "intake" not in plan["record"]  # the API never returns the intake

        got = c.get(f"/v1/plans/{pid}", headers=alice.headers).json()
        assert {k: v for k, v in got.items() if k != "record"} == {
            k: v for k, v in plan.items() if k != "record"
        }

        listed = c.get("/v1/plans", headers=alice.headers).json()
        assert [i["plan_id"] for i in listed["items"]] == [pid] and listed["next_cursor"] is None
        level = plan["level_of_care"]["code"]
        assert c.get(f"/v1/plans?level_of_care={level}", headers=alice.headers).json()["items"]
        assert not c.get("/v1/plans?level_of_care=loc.zzz", headers=alice.headers).json()["items"]
        assert c.get("/v1/plans?code=hr.naloxone&kind=recommend", headers=alice.headers).json()["items"]

        item = plan["phases"][0]["items"][0]
        body = {
            "code": item["code"],
            "action": "override",
            "reason": "Discussed; patient declines.",
            "phase": plan["phases"][0]["phase"],
        }
        o = c.post(f"/v1/plans/{pid}/overrides", json=body, headers=alice.headers)
        assert o.status_code == 201, o.text
        assert o.json()["rule_ids"] == sorted(set(item["rule_ids"]))
        again = c.get(f"/v1/plans/{pid}", headers=alice.headers).json()
        assert [x["code"] for x in again["record"]["overrides"]] == [item["code"]]
        assert again["phases"] == plan["phases"]  # the plan itself never changes

        summary = c.get("/v1/overrides/summary", headers=server.users.reviewer.headers).json()
        assert summary["total_overrides"] >= 1
        assert {r["rule_id"] for r in summary["rules"]} == set(item["rule_ids"])

        bad = c.post(
            f"/v1/plans/{pid}/overrides", json={**body, "code": "moud.unknown_code"}, headers=alice.headers
        )
        assert bad.status_code == 422 and bad.json()["errors"][0]["field"] == "body.code"
    assert verify_chain(server.runtime.db).ok


def test_rules_catalogue_and_health(server):
    with server.client() as c:
        health = c.get("/health").json()
        assert health["status"] == "ok" and health["database"] == "ok"
        rules = c.get("/v1/rules", headers=server.users.admin.headers).json()
    pack = server.runtime.engine.pack
    assert rules["sha256"] == pack.sha256 == health["ruleset"]["sha256"]
    assert [r["id"] for r in rules["rules"]] == [r.id for r in pack.rules]
    assert all(
        r["citations"] and all(c["title"] and c["locator"] for c in r["citations"]) for r in rules["rules"]
    )


def test_idempotency_key_replays_and_conflicts(server, example_intake):
    alice = server.users.clinician
    with server.client() as c:
        first = _post(c, alice, example_intake, key="visit-42")
        replay = _post(c, alice, example_intake, key="visit-42")
        assert first.status_code == replay.status_code == 201
        assert replay.headers["idempotent-replayed"] == "true"
        assert replay.json()["plan_id"] == first.json()["plan_id"]
        # the same intake with fields reordered is the same request
        reordered = dict(reversed(list(example_intake.items())))
        assert _post(c, alice, reordered, key="visit-42").json()["plan_id"] == first.json()["plan_id"]
        changed = copy.deepcopy(example_intake)
        changed["patient"]["age"] = 35
        conflict = _post(c, alice, changed, key="visit-42")
        assert conflict.status_code == 409 and conflict.json()["error"] == "idempotency_key_reused"
        # keys are per user: another clinician's same key is a different request
        other = _post(c, server.users.other_clinician, example_intake, key="visit-42")
        assert other.status_code == 201 and other.json()["plan_id"] != first.json()["plan_id"]
        assert (
            c.post(
                "/v1/plans", content=b"{}", headers={**alice.headers, "Idempotency-Key": "a b"}
            ).status_code
            == 422
        )
    with server.runtime.db.transaction(readonly=True) as tx:
        assert tx.count_plans(author_id=alice.user_id) == 1


def test_concurrent_retries_with_one_key_store_one_plan(server, example_intake):
    alice = server.users.clinician
    with server.client() as c, ThreadPoolExecutor(8) as pool:
        results = list(pool.map(lambda _: _post(c, alice, example_intake, key="burst-1"), range(16)))
    assert {r.status_code for r in results} == {201}
    assert len({r.json()["plan_id"] for r in results}) == 1
    with server.runtime.db.transaction(readonly=True) as tx:
        assert tx.count_plans(author_id=alice.user_id) == 1


def test_reevaluation_makes_a_linked_version(server, example_intake):
    alice = server.users.clinician
    with server.client() as c:
        v1 = _post(c, alice, example_intake).json()
        corrected = copy.deepcopy(example_intake)
        corrected["substance_use"]["cows_score"] = 14
        r = _post(c, alice, corrected, path=f"/v1/plans/{v1['plan_id']}/reevaluate")
        assert r.status_code == 201, r.text
        v2 = r.json()
        assert v2["record"]["version"] == 2 and v2["record"]["previous_id"] == v1["plan_id"]
        assert v2["record"]["root_id"] == v1["plan_id"] and v2["intake_sha256"] != v1["intake_sha256"]
        old = c.get(f"/v1/plans/{v1['plan_id']}", headers=alice.headers).json()
        assert old["record"]["next_id"] == v2["plan_id"]
        assert old["generated_at"] == v1["generated_at"] and old["phases"] == v1["phases"]  # immutable
        # only the latest version can be re-evaluated
        stale = c.post(f"/v1/plans/{v1['plan_id']}/reevaluate", headers=alice.headers)
        assert stale.status_code == 409 and stale.json()["latest_id"] == v2["plan_id"]
        # no body: the stored intake again, under the rules loaded now
        v3 = c.post(f"/v1/plans/{v2['plan_id']}/reevaluate", headers=alice.headers).json()
        assert v3["record"]["version"] == 3 and v3["intake_sha256"] == v2["intake_sha256"]
        listed = c.get("/v1/plans", headers=alice.headers).json()["items"]
        assert [i["plan_id"] for i in listed] == [v3["plan_id"]]  # superseded versions hidden
        every = c.get("/v1/plans?include_superseded=true", headers=alice.headers).json()["items"]
        assert len(every) == 3


def test_pagination_walks_every_plan_once(server, example_intake):
    alice = server.users.clinician
    with server.client() as c:
        made = {_post(c, alice, example_intake).json()["plan_id"] for _ in range(5)}
        seen, cursor = [], None
        while True:
            q = "/v1/plans?limit=2" + (f"&cursor={cursor}" if cursor else "")
            page = c.get(q, headers=alice.headers).json()
            seen += [i["plan_id"] for i in page["items"]]
            cursor = page["next_cursor"]
            if not cursor:
                break
        assert sorted(seen) == sorted(made)
        bad = c.get("/v1/plans?cursor=garbage", headers=alice.headers)
        assert bad.status_code == 422 and bad.json()["errors"][0]["field"] == "query.cursor"


def test_invalid_intake_is_422_field_by_field_and_nothing_is_stored(server, example_intake):
    alice = server.users.clinician
    bad = copy.deepcopy(example_intake)
    bad["patient"]["age"] = 7
    bad["substance_use"]["cows_score"] = "high"
    with server.client() as c:
        r = _post(c, alice, bad)
        assert r.status_code == 422
        fields = {e["field"] for e in r.json()["errors"]}
        assert fields == {"patient.age", "substance_use.cows_score"}
        assert c.post("/v1/plans", content=b"not json", headers=alice.headers).status_code == 422
        assert c.post("/v1/plans", content=b"", headers=alice.headers).status_code == 422
        huge = c.post("/v1/plans", content=b"[" + b"1," * 200_000 + b"1]", headers=alice.headers)
        assert huge.status_code == 422 and "too large" in huge.json()["errors"][0]["message"]
    with server.runtime.db.transaction(readonly=True) as tx:
        assert tx.count_plans() == 0
        outcomes = [e.outcome for e in tx.audit_entries()]
    assert outcomes.count("invalid") == 4


@pytest.mark.parametrize("path", ["/health", "/login", "/v1/plans/nope"])
def test_security_headers_on_every_response(sqlite_server, path):
    with sqlite_server.client() as c:
        r = c.get(path)
    for name, value in SECURITY_HEADERS.items():
        assert r.headers[name] == value
    assert r.headers["content-security-policy"].startswith("default-src 'self'")
    assert len(r.headers["x-request-id"]) >= 8


def test_reports_render_or_say_503(sqlite_server, example_intake):
    alice = sqlite_server.users.clinician
    with sqlite_server.client() as c:
        pid = _post(c, alice, example_intake).json()["plan_id"]
        html = c.get(f"/v1/plans/{pid}/report.html", headers=alice.headers)
        patient = c.get(f"/v1/plans/{pid}/report.html?audience=patient&language=es", headers=alice.headers)
        pdf = c.get(f"/v1/plans/{pid}/report.pdf", headers=alice.headers)
    for r in (html, patient, pdf):
        assert r.status_code in (200, 503), r.text[:300]
        if r.status_code == 503:
            assert r.json()["error"] == "reports_unavailable"
    if html.status_code == 200:
        assert html.headers["content-type"].startswith("text/html")
        assert "style-src 'self'" in html.headers["content-security-policy"]
    if pdf.status_code == 200:
        assert pdf.content.startswith(b"%PDF") and pdf.headers["content-type"] == "application/pdf"


def test_openapi_documents_the_api(sqlite_server):
    with sqlite_server.client() as c:
        assert c.get("/openapi.json").status_code == 401
        doc = c.get("/openapi.json", headers=sqlite_server.users.reviewer.headers).json()
    schemes = doc["components"]["securitySchemes"]
    assert {s["type"] for s in schemes.values()} >= {"http", "apiKey"}
    create = doc["paths"]["/v1/plans"]["post"]
    assert create["requestBody"]["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/Intake"
    }
    assert "Intake" in doc["components"]["schemas"] and "StoredPlan" in doc["components"]["schemas"]
    assert create["responses"]["422"]["content"]["application/json"]["schema"]["$ref"].endswith(
        "ValidationErrorBody"
    )
    assert create["security"]
