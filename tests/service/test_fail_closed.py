"""If the audit row cannot be written, the request fails (generic 500) and nothing is stored."""

from __future__ import annotations

import json

from carepath.api.audit import verify_chain
from tests.service.fakes import SwitchableAuditSink
from tests.service.helpers import make_users

CANARY = "CANARY-audit-7f3a91"


def test_a_broken_audit_sink_fails_every_patient_data_request(serve_app, example_intake):
    sink = SwitchableAuditSink(message=f"disk full near {CANARY}")
    with serve_app(audit_sink=sink) as srv:
        users = make_users(srv.runtime.db)
        alice = users.clinician
        with srv.client() as c:
            ok = c.post("/v1/plans", content=json.dumps(example_intake), headers=alice.headers)
            assert ok.status_code == 201
            pid = ok.json()["plan_id"]

            sink.broken = True
            intake = {**example_intake, "patient": {**example_intake["patient"], "name": CANARY}}
            responses = [
                c.post("/v1/plans", content=json.dumps(intake), headers=alice.headers),
                c.post(
                    "/v1/plans", content=json.dumps(intake), headers={**alice.headers, "Idempotency-Key": "k"}
                ),
                c.post(f"/v1/plans/{pid}/reevaluate", content=json.dumps(intake), headers=alice.headers),
                c.get(f"/v1/plans/{pid}", headers=alice.headers),
                c.get(f"/v1/plans/{pid}/report.html", headers=alice.headers),
                c.get(f"/v1/plans/{pid}/report.pdf", headers=alice.headers),
                c.get("/v1/plans", headers=alice.headers),
                c.post(
                    f"/v1/plans/{pid}/overrides",
                    json={"code": "hr.naloxone", "action": "edit", "reason": CANARY},
                    headers=alice.headers,
                ),
                c.get(f"/v1/plans/{pid}"),  # unauthenticated attempts are audited too
                c.post("/v1/plans", content=json.dumps({"patient": {"name": CANARY}}), headers=alice.headers),
            ]
            for r in responses:
                assert r.status_code == 500, (r.request.url, r.status_code)
                assert r.json()["error"] == "internal_error"
                assert CANARY not in r.text and "disk full" not in r.text
            # no patient data comes back on a failed read either
            assert "phases" not in responses[3].text

            sink.broken = False
            listed = c.get("/v1/plans", headers=alice.headers).json()["items"]
            assert [i["plan_id"] for i in listed] == [pid]  # nothing stored while the audit failed
            assert c.get(f"/v1/plans/{pid}", headers=alice.headers).json()["record"]["overrides"] == []
        with srv.runtime.db.transaction(readonly=True) as tx:
            assert tx.count_plans() == 1
        assert sink.failures >= len(responses)
        assert verify_chain(srv.runtime.db).ok


def test_rules_and_health_do_not_depend_on_the_audit(serve_app):
    sink = SwitchableAuditSink()
    sink.broken = True
    with serve_app(audit_sink=sink) as srv:
        users = make_users(srv.runtime.db)
        with srv.client() as c:
            assert c.get("/health").status_code == 200
            assert c.get("/v1/rules", headers=users.admin.headers).status_code == 200
