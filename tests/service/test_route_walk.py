"""Every route requires authentication except the public ones named here: walk the route
table of the real app (api.app.route_table) and call each (method, path) without
credentials, with a bad token and with a non-bearer scheme."""

from __future__ import annotations

from carepath.api.app import create_app, route_table

# The only routes anyone may call without signing in, each with its reason.
PUBLIC = {
    ("GET", "/health"): "readiness for load balancers; no patient data",
    ("GET", "/health/live"): "liveness: the process answers; no checks, no data",
    ("GET", "/cds-services"): "CDS Hooks discovery (contract §4)",
    ("GET", "/login"): "the sign-in page itself",
    ("GET", "/static/{name}"): "the stylesheet, needed by the sign-in page; no patient data",
}

# Routes this app must have: the API, the web form, FHIR and CDS Hooks (contract §4).
EXPECTED = {
    ("GET", "/health"),
    ("GET", "/login"),
    ("POST", "/login"),
    ("POST", "/logout"),
    ("GET", "/session"),
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
    ("GET", "/"),
    ("GET", "/v1/plans/{plan_id}/fhir"),
    ("GET", "/cds-services"),
    ("POST", "/cds-services/{service_id}"),
    ("GET", "/plans"),
    ("POST", "/plans"),
    ("POST", "/v1/plans/search"),
    ("GET", "/v1/plans/{plan_id}/decisions"),
    ("POST", "/v1/plans/{plan_id}/sign"),
    ("POST", "/v1/plans/{plan_id}/comments"),
    ("POST", "/plans/{plan_id}/sign"),
    ("POST", "/plans/{plan_id}/comments"),
    ("POST", "/plans/{plan_id}/missing"),
    ("POST", "/plans/{plan_id}/amend"),
    ("POST", "/cds-services/{service_id}/feedback"),
    ("GET", "/v1/cds/feedback/summary"),
    ("GET", "/fhir/Questionnaire/carepath-intake"),
    ("POST", "/fhir/QuestionnaireResponse"),
    ("GET", "/v1/rules/fhir"),
}
BAD_CREDENTIALS = (
    {},
    {"Authorization": "Bearer cpt_not-a-real-token"},
    {"Authorization": "Basic eDp5"},
    {"Cookie": "carepath_session=not-a-session"},
)


def _table(app) -> set[tuple[str, str]]:
    return {(r.method, r.path) for r in route_table(app)}


def _concrete(path: str) -> str:
    return (
        path.replace("{plan_id}", "pl_AAAAAAAAAAAAAAAAAAAAAA")
        .replace("{service_id}", "carepath-oud")
        .replace("{name}", "carepath.css")
    )


def test_the_route_table_has_every_expected_route():
    table = _table(create_app())
    assert table >= EXPECTED
    assert not any(method == "MOUNT" for method, _ in table), "mounts are not walked: make them routes"


def test_every_route_but_the_public_ones_refuses_anonymous_callers(sqlite_server):
    table = _table(sqlite_server.app)
    walked = 0
    with sqlite_server.client() as client:
        for method, path in sorted(table - set(PUBLIC)):
            for headers in BAD_CREDENTIALS:
                r = client.request(method, _concrete(path), headers=headers, content=b"{}")
                assert r.status_code in (401, 403), (method, path, headers, r.status_code)
                walked += 1
    assert walked == len(BAD_CREDENTIALS) * len(table - set(PUBLIC))
    assert len(table - set(PUBLIC)) >= len(EXPECTED) - 2


def test_public_routes_answer_without_credentials(sqlite_server):
    table = _table(sqlite_server.app)
    with sqlite_server.client() as client:
        for method, path in set(PUBLIC) & table:
            assert client.request(method, _concrete(path)).status_code == 200, path
