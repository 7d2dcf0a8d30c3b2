"""Fetching what a hook's prefetch left out, from the EHR's FHIR server (CDS Hooks 2.0 "FHIR Resource
Access"), and only from a server on the allow-list.

    server_allowed(fhir_server, allowed)    exact base-URL match (https unless the entry says http)
    fill_template(template, context)        a prefetch template -> a relative FHIR URL, or None
    fetch(fhir_server, token, queries)      the queries, in parallel -> {key: resource or None}

Requests carry the hook's ``fhirAuthorization`` bearer token and nothing else from the request;
redirects are not followed; every answer is size- and time-limited; a searchset's ``next``
pages are followed only on the same server. Nothing here logs a URL, a token or a body.
"""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import httpx

__all__ = ["server_allowed", "fill_template", "fetch", "FetchResult", "MAX_BYTES", "MAX_PAGES", "FHIR_ID"]

MAX_BYTES = 5 * 1024 * 1024
MAX_PAGES = 5
FHIR_ID = re.compile(r"^[A-Za-z0-9\-.]{1,64}$")
_TOKEN = re.compile(r"\{\{\s*context\.([A-Za-z]+)\s*\}\}")


@dataclass
class FetchResult:
    values: dict[str, Any] = field(default_factory=dict)
    """key -> the resource (a Bundle for searches) or None (the server has no such data)."""
    failed: dict[str, str] = field(default_factory=dict)
    """key -> why it could not be fetched (no patient data in the reason)."""
    requests: int = 0


def _base(url: str) -> str:
    return url.strip().rstrip("/")


def server_allowed(fhir_server: str | None, allowed: Iterable[str]) -> bool:
    """True only for a server whose base URL is on the allow-list, and https unless listed as http."""
    if not fhir_server:
        return False
    parts = urlsplit(_base(fhir_server))
    if parts.scheme not in ("https", "http") or not parts.netloc or parts.query or parts.fragment:
        return False
    return any(_base(entry) == _base(fhir_server) for entry in allowed)


def fill_template(template: str, context: Mapping[str, Any]) -> str | None:
    """Replace ``{{context.x}}`` tokens; None when a token has no safe value (a FHIR id)."""
    missing = False

    def value(m: re.Match[str]) -> str:
        nonlocal missing
        v = context.get(m.group(1))
        if not isinstance(v, str) or not FHIR_ID.match(v):
            missing = True
            return ""
        return v

    filled = _TOKEN.sub(value, template)
    return None if missing or "{{" in filled else filled


async def _get_json(client: httpx.AsyncClient, url: str, token: str) -> tuple[int, Any]:
    headers = {"Accept": "application/fhir+json", "Authorization": f"Bearer {token}"}
    async with client.stream("GET", url, headers=headers) as response:
        body = b""
        async for chunk in response.aiter_bytes():
            body += chunk
            if len(body) > MAX_BYTES:
                raise ValueError("too large")
        status = response.status_code
    return status, (json.loads(body) if status == 200 else None)


async def _one(
    client: httpx.AsyncClient, base: str, relative: str, token: str, result: FetchResult, key: str
) -> None:
    url = f"{base}/{relative.lstrip('/')}"
    try:
        result.requests += 1
        status, data = await _get_json(client, url, token)
        if status == 404 and "?" not in relative:
            result.values[key] = None  # a read of a resource that does not exist: no data
            return
        if status != 200 or not isinstance(data, Mapping):
            result.failed[key] = f"the FHIR server answered HTTP {status}"
            return
        pages = 1
        entries = list(data.get("entry") or []) if data.get("resourceType") == "Bundle" else None
        nxt = _next(data)
        while entries is not None and nxt and pages < MAX_PAGES:
            if not nxt.startswith(base + "/"):
                break  # never follow a link to another server
            result.requests += 1
            status, page = await _get_json(client, nxt, token)
            if status != 200 or not isinstance(page, Mapping):
                break
            entries += list(page.get("entry") or [])
            nxt, pages = _next(page), pages + 1
        if entries is not None:
            data = {**data, "entry": entries}
            data.pop("link", None)
        result.values[key] = data
    except (httpx.HTTPError, ValueError):
        result.failed[key] = "the FHIR server could not be read"


def _next(bundle: Mapping[str, Any]) -> str | None:
    for link in bundle.get("link") or ():
        if isinstance(link, Mapping) and link.get("relation") == "next" and isinstance(link.get("url"), str):
            return str(link["url"])
    return None


async def fetch(
    fhir_server: str,
    access_token: str,
    queries: Mapping[str, str],
    *,
    timeout_s: float = 5.0,
    transport: httpx.AsyncBaseTransport | None = None,
) -> FetchResult:
    """Run the relative FHIR ``queries`` ({key: 'Condition?patient=...'}) against the server."""
    result = FetchResult()
    if not queries:
        return result
    base = _base(fhir_server)
    limits = httpx.Limits(max_connections=6)
    async with httpx.AsyncClient(
        timeout=timeout_s, follow_redirects=False, limits=limits, transport=transport
    ) as client:
        await asyncio.gather(*(_one(client, base, q, access_token, result, k) for k, q in queries.items()))
    return result
