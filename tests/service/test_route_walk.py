"""Every route requires authentication except the public ones named here: walk the route
table of the real app and call each (method, path) without credentials."""

from __future__ import annotations

import pytest
from fastapi.routing import APIRoute

from api.app import create_app

PUBLIC = {
    ("GET", "/health"),
    ("GET", "/cds-services"),  # CDS Hooks discovery (contract §4): public by design
    ("GET", "/login"),  # the sign-in page itself
}

# Routes this app must have. The second service helper's routes are reserved here: when they
# land they are walked like every other route (and the xfail below starts passing).
EXPECTED = {
    ("GET", "/health"),
    ("GET", "/login"),
    ("POST", "/login"),
    ("POST", "/logout"),
    ("GET", "/openapi.json"),
    ("GET", "/v1/rules"),
    ("POST", "/v1/plans"),
    ("GET", "/v1/plans"),
    ("GET", "/v1/plans/{plan_id}"),
    ("POST", "/v1/plans/{plan_id}/reevaluate"),
    ("GET", "/v1/plans/{plan_id}/report.html"),
    ("GET", "/v1/plans/{plan_id}/report.pdf"),
    ("POST", "/v1/plans/{plan_id}/overrides"),
    ("GET", "/v1/overrides/summary"),
}
RESERVED = {
    ("GET", "/"),  # the clinician web form
    ("GET", "/v1/plans/{plan_id}/fhir"),
    ("GET", "/cds-services"),
    ("POST", "/cds-services/{service_id}"),
}


def route_table(app) -> set[tuple[str, str]]:
    table = set()
    for route in app.routes:
        assert isinstance(route, APIRoute), f"unexpected non-API route {route!r}: walk it too"
        for method in route.methods - {"HEAD", "OPTIONS"}:
            table.add((method, route.path))
    return table


def test_the_route_table_has_every_expected_route():
    table = route_table(create_app())
    assert EXPECTED <= table


@pytest.mark.xfail(reason="reserved for the web form / FHIR / CDS Hooks helper; not built yet", strict=False)
def test_reserved_routes_exist():
    table = route_table(create_app())
    assert RESERVED <= {(m, p.replace("{id}", "{service_id}")) for m, p in table}


def _concrete(path: str) -> str:
    return path.replace("{plan_id}", "pl_AAAAAAAAAAAAAAAAAAAAAA").replace("{service_id}", "opioid-oud")


def test_every_route_but_the_public_ones_refuses_anonymous_callers(sqlite_server):
    table = route_table(sqlite_server.app)
    checked = 0
    with sqlite_server.client() as client:
        for method, path in sorted(table):
            for headers in ({}, {"Authorization": "Bearer cpt_not-a-real-token"}, {"Authorization": "Basic eDp5"}):
                if (method, path) in PUBLIC:
                    continue
                r = client.request(method, _concrete(path), headers=headers, content=b"{}")
                assert r.status_code in (401, 403), (method, path, headers, r.status_code)
                checked += 1
    assert checked >= 3 * (len(EXPECTED) - 2)


def test_public_routes_answer_without_credentials(sqlite_server):
    table = route_table(sqlite_server.app)
    with sqlite_server.client() as client:
        for method, path in PUBLIC & table:
            assert client.request(method, path).status_code == 200, path
