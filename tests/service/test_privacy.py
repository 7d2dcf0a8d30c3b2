"""No patient data in logs or error bodies, even when something breaks (in-process server;
the subprocess version with the server's own stdout/stderr is test_canary.py)."""

from __future__ import annotations

import json
import logging

import pytest

from tests.service.fakes import ExplodingEngine
from tests.service.helpers import make_users

CANARY = "CANARY-privacy-52c1d0"


@pytest.fixture
def captured():
    """Every log record of every server-side logger, formatted with its arguments (the test's
    own HTTP client, httpx/httpcore, logs the URLs it requests: that is not the server)."""
    records: list[str] = []

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            if record.name.startswith(("httpx", "httpcore")):
                return
            records.append(self.format(record))
            if record.exc_info:
                records.append(logging.Formatter().formatException(record.exc_info))

    handler = Keep(level=logging.DEBUG)
    root = logging.getLogger()
    old = root.level
    root.addHandler(handler)
    root.setLevel(logging.DEBUG)
    yield records
    root.removeHandler(handler)
    root.setLevel(old)


def test_an_unexpected_crash_is_a_generic_500_and_logs_only_the_class(
    serve_app, engine, example_intake, captured
):
    boom = ExplodingEngine(engine, f"exploded on {CANARY}")
    with serve_app(engine=boom) as srv:
        users = make_users(srv.runtime.db)
        intake = {**example_intake, "patient": {**example_intake["patient"], "name": CANARY, "id": CANARY}}
        with srv.client() as c:
            r = c.post("/v1/plans", content=json.dumps(intake), headers=users.clinician.headers)
    assert boom.calls == 1
    assert r.status_code == 500 and r.json()["error"] == "internal_error"
    assert CANARY not in r.text
    text = "\n".join(captured)
    assert "ValueError" in text  # the class is logged ...
    assert CANARY not in text  # ... never the message
    with srv.runtime.db.transaction(readonly=True) as tx:
        assert tx.count_plans() == 0
        assert [e.outcome for e in tx.audit_entries()][-1] == "error"


INVALID_BODIES = [
    # wrong types, enum values, unknown fields (keys and values), broken JSON, too large
    {"assessment_date": "2026-03-02", "patient": {"age": CANARY, "name": CANARY}},
    {"assessment_date": CANARY, "patient": {"age": 30}},
    {"assessment_date": "2026-03-02", "patient": {"age": 30}, "stage": CANARY},
    {"assessment_date": "2026-03-02", "patient": {"age": 30, f"{CANARY} name": CANARY}},
    {
        "assessment_date": "2026-03-02",
        "patient": {"age": 30},
        "medical": {"interacting_medications": [CANARY, 5]},
    },
    {"assessment_date": "2026-03-02", "patient": {"age": 30, "id": CANARY * 40}},
    f'{{"patient": {{"name": "{CANARY}"'.encode(),
    ('{"patient": {"name": "' + CANARY * 20000 + '"}}').encode(),
]


@pytest.mark.parametrize("body", INVALID_BODIES, ids=range(len(INVALID_BODIES)))
def test_422_names_fields_and_never_echoes_values(shared_server, body, captured):
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    with shared_server.client() as c:
        r = c.post("/v1/plans", content=raw, headers=shared_server.users.clinician.headers)
    assert r.status_code == 422
    errors = r.json()["errors"]
    assert errors and all(set(e) == {"field", "message"} for e in errors)
    assert CANARY not in r.text
    assert CANARY not in "\n".join(captured)


def test_invalid_overrides_and_queries_do_not_echo(shared_server, example_intake, captured):
    alice = shared_server.users.clinician
    with shared_server.client() as c:
        pid = c.post("/v1/plans", content=json.dumps(example_intake), headers=alice.headers).json()["plan_id"]
        bad = [
            c.post(
                f"/v1/plans/{pid}/overrides",
                json={"code": CANARY, "action": "edit", "reason": "x"},
                headers=alice.headers,
            ),
            c.post(
                f"/v1/plans/{pid}/overrides",
                json={"code": "hr.naloxone", "action": CANARY, "reason": "x"},
                headers=alice.headers,
            ),
            c.post(
                f"/v1/plans/{pid}/overrides",
                json={"code": "hr.naloxone", "action": "edit", "reason": CANARY * 200},
                headers=alice.headers,
            ),
            c.post(
                f"/v1/plans/{pid}/overrides",
                json={"code": "hr.naloxone", "action": "edit", "reason": "x", CANARY: 1},
                headers=alice.headers,
            ),
            c.post(f"/v1/plans/{pid}/overrides", content=f"[{CANARY}".encode(), headers=alice.headers),
            c.get(f"/v1/plans?level_of_care={CANARY}", headers=alice.headers),
            c.get(f"/v1/plans?created_from={CANARY}", headers=alice.headers),
            c.get(f"/v1/plans?cursor={CANARY}", headers=alice.headers),
            c.get(f"/v1/plans/{CANARY}", headers=alice.headers),
            c.get(f"/v1/plans/{pid}/report.html?audience={CANARY}", headers=alice.headers),
        ]
    for r in bad:
        assert r.status_code in (404, 422), (r.request.url, r.status_code)
        assert CANARY not in r.text
    assert CANARY not in "\n".join(captured)


def test_access_log_has_route_templates_not_paths_or_queries(shared_server, captured):
    alice = shared_server.users.clinician
    with shared_server.client() as c:
        c.get("/v1/plans/pl_AAAAAAAAAAAAAAAAAAAAAA?x=" + CANARY, headers=alice.headers)
        c.get("/v1/plans?code=hr.naloxone&note=" + CANARY, headers=alice.headers)
    access = [line for line in captured if "GET /v1/plans" in line]
    assert any("GET /v1/plans/{plan_id} 404" in line for line in access)
    assert any("GET /v1/plans 200" in line for line in access)
    assert CANARY not in "\n".join(captured)
