"""Hostile input, table-driven: at least 20 cases per category, every one answered 4xx with a
message naming the field (never 500, never an echo of the input), the server healthy after.

Categories: nesting depth; NUL characters; lone UTF-16 surrogates and bad encodings; dates and
numbers out of range. The six 500s of the review are rows here (marked ``review``): JSON 1,000+
deep on the override and CDS endpoints, a questionnaire nested 200 deep, a lone surrogate in
``hookInstance``, ``created_to=9999-12-31``, NUL in an override reason (PostgreSQL: ``server``
runs the table on both backends).
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from tests.service.conftest import EXAMPLE

CANARY = "Zebedee Hostilewood"
INTAKE = json.loads(EXAMPLE.read_text())


def nested(depth: int, kind: str = "list") -> str:
    if kind == "list":
        return "[" * depth + "]" * depth
    return '{"a":' * depth + "1" + "}" * depth


def with_intake(**parts: Any) -> str:
    doc = json.loads(json.dumps(INTAKE))
    for path, value in parts.items():
        node = doc
        keys = path.split("__")
        for k in keys[:-1]:
            node = node.setdefault(k, {})
        node[keys[-1]] = value
    return json.dumps(doc)


def raw_json_with(field_path: str, escaped: str) -> str:
    """The example intake with a string field set to RAW JSON text (escapes kept as written)."""
    marker = "@@MARK@@"
    text = with_intake(**{field_path: marker})
    return text.replace(f'"{marker}"', f'"{escaped}"')


def cds_body(instance: Any = "9b0c1a2e-0000-4000-8000-000000000001", prefetch: Any = None) -> str:
    body = {
        "hook": "patient-view",
        "hookInstance": instance,
        "context": {"patientId": "p1", "userId": "Practitioner/1"},
        "prefetch": {
            "intake": prefetch if prefetch is not None else {"resourceType": "QuestionnaireResponse"}
        },
    }
    return json.dumps(body)


def deep_questionnaire(depth: int) -> dict[str, Any]:
    item: dict[str, Any] = {"linkId": "patient.age", "answer": [{"valueInteger": 30}]}
    for i in range(depth):
        item = {"linkId": f"group{i}", "item": [item]}
    return {"resourceType": "QuestionnaireResponse", "status": "completed", "item": [item]}


PLAN = "{plan}"  # replaced by a real plan id of the clinician


# (category, case id, method, path, body, content type, expected status, field named in the error)
CASES: list[tuple[str, str, str, str, str | None, str, int, str]] = []


def case(
    category: str,
    cid: str,
    method: str,
    path: str,
    body: str | None,
    status: int,
    field: str,
    ctype: str = "application/json",
) -> None:
    CASES.append((category, cid, method, path, body, ctype, status, field))


# -- nesting depth ----------------------------------------------------------------------------
for depth in (65, 200, 1_000, 5_000, 100_000):
    case("depth", f"plans-list-{depth}", "POST", "/v1/plans", nested(depth), 422, "body")
    case("depth", f"override-list-{depth}", "POST", f"/v1/plans/{PLAN}/overrides", nested(depth), 422, "body")
    case(
        "depth",
        f"cds-object-{depth}",
        "POST",
        "/cds-services/carepath-oud-pathway",
        nested(depth, "obj"),
        422,
        "body",
    )
for depth in (100, 1_500):
    case(
        "depth",
        f"reevaluate-{depth}",
        "POST",
        f"/v1/plans/{PLAN}/reevaluate",
        nested(depth, "obj"),
        422,
        "body",
    )
    case("depth", f"consent-{depth}", "POST", "/v1/consents", nested(depth), 422, "body")
case(
    "depth",
    "review-questionnaire-200",
    "POST",
    "/cds-services/carepath-oud-pathway",
    cds_body(prefetch=deep_questionnaire(200)),
    422,
    "body",
)
case(
    "depth",
    "questionnaire-40",
    "POST",
    "/cds-services/carepath-oud-pathway",
    cds_body(prefetch=deep_questionnaire(40)),
    422,
    "body",
)
case(
    "depth",
    "intake-field-deep",
    "POST",
    "/v1/plans",
    with_intake(patient__name=json.loads(nested(80))),
    422,
    "body",
)
case("depth", "disclosure-deep", "POST", "/v1/disclosures", nested(300, "obj"), 422, "body")

# -- NUL characters ------------------------------------------------------------------------------
NUL = "\\u0000"
for i, (where, path, body) in enumerate(
    [
        (
            "override-reason",
            f"/v1/plans/{PLAN}/overrides",
            '{"code":"hr.naloxone","action":"edit","reason":"' + CANARY + NUL + '"}',
        ),
        (
            "override-reason-only-nul",
            f"/v1/plans/{PLAN}/overrides",
            '{"code":"hr.naloxone","action":"edit","reason":"' + NUL + '"}',
        ),
        (
            "override-replacement",
            f"/v1/plans/{PLAN}/overrides",
            '{"code":"hr.naloxone","action":"edit","reason":"ok","replacement_text":"x' + NUL + 'y"}',
        ),
        (
            "override-code",
            f"/v1/plans/{PLAN}/overrides",
            '{"code":"hr.nalox' + NUL + 'one","action":"edit","reason":"r"}',
        ),
        ("intake-name", "/v1/plans", raw_json_with("patient__name", CANARY + NUL)),
        ("intake-id", "/v1/plans", raw_json_with("patient__id", "mrn" + NUL + "1")),
        ("intake-jurisdiction", "/v1/plans", raw_json_with("jurisdiction", "U" + NUL + "S")),
        ("intake-stage", "/v1/plans", raw_json_with("stage", NUL)),
        ("intake-language", "/v1/plans", raw_json_with("preferences__language", "e" + NUL)),
        ("reevaluate-name", f"/v1/plans/{PLAN}/reevaluate", raw_json_with("patient__name", NUL + CANARY)),
        ("cds-instance", "/cds-services/carepath-oud-pathway", cds_body("abc" + "\x00")),
        ("cds-patient", "/cds-services/carepath-oud-pathway", cds_body().replace('"p1"', '"p' + NUL + '1"')),
        (
            "consent-recipient",
            "/v1/consents",
            '{"patient_id":"m1","recipient":"Dr' + NUL + '","purpose":"treatment"}',
        ),
        (
            "consent-patient",
            "/v1/consents",
            '{"patient_id":"m' + NUL + '1","recipient":"Dr X","purpose":"treatment"}',
        ),
        ("accounting-patient", "/v1/accounting", '{"patient_id":"' + NUL + '"}'),
        ("consent-search", "/v1/consents/search", '{"patient_id":"a' + NUL + '"}'),
        (
            "disclosure-recipient",
            "/v1/disclosures",
            '{"plan_id":"pl_aaaaaaaaaaaaaaaaaaaaaa","recipient":"' + NUL + '","purpose":"t"}',
        ),
        ("key-with-nul", "/v1/plans", '{"pati' + NUL + 'ent":{"age":30},"assessment_date":"2026-01-01"}'),
        (
            "array-item",
            "/v1/plans",
            raw_json_with("substance_use__opioids", "x").replace('"x"', '["fentanyl","' + NUL + '"]'),
        ),
        ("token-label", "/v1/tokens", '{"label":"a' + NUL + 'b"}'),
    ]
):
    case("nul", f"{i:02d}-{where}", "POST", path, body, 422, "body")

# -- lone surrogates ---------------------------------------------------------------------------
SURROGATES = [
    "\\ud800",
    "\\udfff",
    "\\udc00",
    "\\udbff",
    "\\ud800x",
    "\\udc00\\ud800",
    "a\\ud83d",
    "\\ud83d!",
]
for i, s in enumerate(SURROGATES):
    case(
        "surrogate",
        f"cds-instance-{i}",
        "POST",
        "/cds-services/carepath-oud-pathway",
        cds_body().replace('"9b0c1a2e-0000-4000-8000-000000000001"', f'"{s}"'),
        422,
        "body",
    )
    case(
        "surrogate",
        f"override-reason-{i}",
        "POST",
        f"/v1/plans/{PLAN}/overrides",
        '{"code":"hr.naloxone","action":"edit","reason":"' + s + '"}',
        422,
        "body",
    )
for i, s in enumerate(SURROGATES[:4]):
    case("surrogate", f"intake-name-{i}", "POST", "/v1/plans", raw_json_with("patient__name", s), 422, "body")
case(
    "surrogate",
    "review-hookinstance",
    "POST",
    "/cds-services/carepath-oud-pathway",
    cds_body().replace('"9b0c1a2e-0000-4000-8000-000000000001"', '"\\ud800"'),
    422,
    "body",
)
case("surrogate", "query-invalid-utf8", "GET", "/v1/plans?cursor=%ED%A0%80", None, 400, "")
case("surrogate", "query-invalid-utf8-level", "GET", "/v1/plans?level_of_care=%FF%FE", None, 400, "")

# -- dates and numbers out of range --------------------------------------------------------------
for i, q in enumerate(
    [
        "created_to=9999-12-31",
        "created_from=9999-12-31",
        "created_from=0001-01-01",
        "created_to=0001-01-01",
        "created_to=3000-01-01",
        "created_from=1999-12-31",
        "created_to=99999-01-01",
        "created_to=2026-02-30",
        "created_to=2026-13-01",
        "created_from=-2026-01-01",
        "limit=0",
        "limit=101",
        "limit=99999999999999999999",
        "limit=-1",
        "limit=1e3",
        "cursor=" + "A" * 201,
        "include_superseded=maybe",
        "author=everyone",
        "kind=explode",
        "level_of_care=LOC.UPPER",
        "code=" + "a" * 70 + ".x",
    ]
):
    case("range", f"{i:02d}-{q[:24]}", "GET", f"/v1/plans?{q}", None, 422, "query")
case(
    "range", "review-created_to-9999", "GET", "/v1/plans?created_to=9999-12-31", None, 422, "query.created_to"
)
case(
    "range",
    "consent-expires-10000",
    "POST",
    "/v1/consents",
    '{"patient_id":"m1","recipient":"Dr X","purpose":"t","expires_on":"10000-01-01"}',
    422,
    "body.expires_on",
)
case("range", "token-days-huge", "POST", "/v1/tokens", '{"label":"x","days":99999999999999999999}', 403, "")


@pytest.fixture(scope="module")
def plan_id(shared_server, example_intake) -> str:
    with shared_server.client() as c:
        r = c.post(
            "/v1/plans", content=json.dumps(example_intake), headers=shared_server.users.clinician.headers
        )
    assert r.status_code == 201, r.text
    return str(r.json()["plan_id"])


def test_every_category_has_at_least_20_cases() -> None:
    counts: dict[str, int] = {}
    for category, *_ in CASES:
        counts[category] = counts.get(category, 0) + 1
    assert set(counts) == {"depth", "nul", "surrogate", "range"}
    assert all(n >= 20 for n in counts.values()), counts


@pytest.mark.parametrize(
    ("category", "cid", "method", "path", "body", "ctype", "status", "field"),
    CASES,
    ids=[f"{c[0]}:{c[1]}" for c in CASES],
)
def test_hostile_input_is_a_clear_4xx(
    shared_server, plan_id, category, cid, method, path, body, ctype, status, field
):
    headers = {**shared_server.users.clinician.headers, "Content-Type": ctype}
    with shared_server.client() as c:
        r = c.request(method, path.replace(PLAN, plan_id), content=body, headers=headers)
    assert r.status_code == status, (r.status_code, r.text[:300])
    assert r.status_code < 500
    text = r.text
    assert CANARY not in text and "\\u0000" not in text and "\\ud8" not in text
    assert "Traceback" not in text
    doc = r.json()
    if field:
        fields = [e["field"] for e in doc.get("errors", [])]
        assert any(f == field or f.startswith(field) for f in fields), doc
        assert all(e["message"] for e in doc["errors"])


def test_the_server_is_healthy_after_the_tables(shared_server) -> None:
    with shared_server.client() as c:
        assert c.get("/health").status_code == 200


def test_a_nul_in_a_form_field_is_refused(shared_server) -> None:
    with shared_server.client() as c:
        page = c.get("/login")
        assert page.status_code == 200
        r = c.post(
            "/login",
            content="email=a%00b%40x.example&password=x&csrf_token=t",
            headers={"Content-Type": "application/x-www-form-urlencoded"},
        )
    assert r.status_code == 422 and r.json()["errors"][0]["field"] == "form.email"
