"""A small FHIR server on loopback for the EHR tests: serves the patient bundles in tests/interop/fhir/.

Supports what carepath's prefetch templates ask for: ``GET /Patient/{id}`` and type searches
``/{Type}?patient={id}`` with ``status``, ``code`` (``system|code``, comma-separated), ``category``,
``_count`` and ``_sort`` (ignored). It records every request (path, query, Authorization header)
so a test can prove that nothing was asked, or that the hook's bearer token was used; it answers
401 to a request without the expected token. A fake with observable state, not a mock.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

BUNDLES = Path(__file__).resolve().parent / "fhir"
TOKEN = "fhir-access-token-for-carepath"


def load_bundle(name: str) -> dict[str, Any]:
    return json.loads((BUNDLES / f"{name}.json").read_text(encoding="utf-8"))


def resources(name: str) -> list[dict[str, Any]]:
    return [e["resource"] for e in load_bundle(name)["entry"]]


@dataclass
class Seen:
    path: str
    query: dict[str, list[str]]
    authorization: str | None


@dataclass
class FhirServer:
    url: str
    requests: list[Seen] = field(default_factory=list)


def _matches(resource: dict[str, Any], params: dict[str, list[str]]) -> bool:
    ref = (resource.get("subject") or resource.get("patient") or {}).get("reference", "")
    if "patient" in params and ref != f"Patient/{params['patient'][0]}":
        return False
    if "status" in params:
        status = resource.get("status") or ""
        if status not in params["status"][0].split(","):
            return False
    if "code" in params:
        wanted = {w for w in params["code"][0].split(",")}
        codes = {f"{c.get('system')}|{c.get('code')}" for c in (resource.get("code") or {}).get("coding", [])}
        codes |= {c.get("code") for c in (resource.get("code") or {}).get("coding", [])}
        if not wanted & codes:
            return False
    if "category" in params:
        cats = {c.get("code") for cat in resource.get("category") or [] for c in cat.get("coding", [])}
        if params["category"][0] not in cats:
            return False
    return True


def _handler(store: list[dict[str, Any]], server: FhirServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args: Any) -> None:  # quiet
            pass

        def _send(self, status: int, body: Any) -> None:
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/fhir+json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def do_GET(self) -> None:  # noqa: N802 - http.server's naming
            parts = urlsplit(self.path)
            query = parse_qs(parts.query)
            server.requests.append(Seen(parts.path, query, self.headers.get("Authorization")))
            if self.headers.get("Authorization") != f"Bearer {TOKEN}":
                self._send(
                    401,
                    {"resourceType": "OperationOutcome", "issue": [{"severity": "error", "code": "login"}]},
                )
                return
            segments = [s for s in parts.path.split("/") if s]
            if len(segments) == 2:
                kind, rid = segments
                found = [r for r in store if r["resourceType"] == kind and r.get("id") == rid]
                if found:
                    self._send(200, found[0])
                else:
                    self._send(
                        404,
                        {
                            "resourceType": "OperationOutcome",
                            "issue": [{"severity": "error", "code": "not-found"}],
                        },
                    )
                return
            if len(segments) == 1:
                kind = segments[0]
                hits = [r for r in store if r["resourceType"] == kind and _matches(r, query)]
                self._send(
                    200,
                    {
                        "resourceType": "Bundle",
                        "type": "searchset",
                        "total": len(hits),
                        "entry": [
                            {
                                "fullUrl": f"{server.url}/{kind}/{r['id']}",
                                "resource": r,
                                "search": {"mode": "match"},
                            }
                            for r in hits
                        ],
                    },
                )
                return
            self._send(
                400,
                {
                    "resourceType": "OperationOutcome",
                    "issue": [{"severity": "error", "code": "not-supported"}],
                },
            )

    return Handler


def serve(*bundle_names: str) -> Iterator[FhirServer]:
    """A generator for a pytest fixture: the server holding these bundles, shut down afterwards."""
    store = [r for name in bundle_names for r in resources(name)]
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), BaseHTTPRequestHandler)
    server = FhirServer(url=f"http://127.0.0.1:{httpd.server_address[1]}/fhir")
    httpd.RequestHandlerClass = _handler(store, server)
    # serve under /fhir: strip the prefix before dispatch
    original = httpd.RequestHandlerClass

    class Prefixed(original):  # type: ignore[misc, valid-type]
        def do_GET(self) -> None:  # noqa: N802
            if not self.path.startswith("/fhir/"):
                self.send_response(404)
                self.end_headers()
                return
            self.path = self.path[len("/fhir") :]
            super().do_GET()

    httpd.RequestHandlerClass = Prefixed
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join(10)
