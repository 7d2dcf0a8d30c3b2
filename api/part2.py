"""42 CFR Part 2 on what leaves carepath: security labels and the redisclosure notice.

Applied at the outermost point, the HTTP response, so whatever api.fhir and api.cds build is
labelled without either knowing about it:

- every FHIR response (``application/fhir+json``): ``meta.security`` of the resource, and of
  each resource in a Bundle, carries confidentiality ``R`` (restricted), the policy
  ``42CFRPart2``, the sensitivities ``SUD`` and ``ETH`` and the obligation ``NORDSCLCD`` (no
  redisclosure without consent directive), HL7 v3 codes (DS4P); the resource's ``meta``
  carries the notice of 42 CFR 2.32 in an extension;
- every CDS Hooks service response: each card's ``detail`` ends with the notice, and the
  labels travel in the card's ``extension`` (the CDS Hooks way to carry extra data).

The notice is the reviewed constant of ``reports/notices.py`` (the same text the PDF prints).
"""

from __future__ import annotations

import json
import re
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

__all__ = ["SECURITY_LABELS", "NOTICE_EXTENSION", "label_fhir", "label_cds", "Part2Middleware", "notice"]

ACT_CODE = "http://terminology.hl7.org/CodeSystem/v3-ActCode"
CONFIDENTIALITY = "http://terminology.hl7.org/CodeSystem/v3-Confidentiality"
SECURITY_LABELS: tuple[dict[str, str], ...] = (
    {"system": CONFIDENTIALITY, "code": "R", "display": "restricted"},
    {"system": ACT_CODE, "code": "42CFRPart2", "display": "42 CFR Part2"},
    {"system": ACT_CODE, "code": "SUD", "display": "substance use disorder information sensitivity"},
    {"system": ACT_CODE, "code": "ETH", "display": "substance abuse information sensitivity"},
    {"system": ACT_CODE, "code": "NORDSCLCD", "display": "no redisclosure without consent directive"},
)
NOTICE_EXTENSION = "https://carepath.example/fhir/StructureDefinition/part2-redisclosure-notice"
_CDS_SERVICE = re.compile(r"^/cds-services/[^/]+$")


def notice() -> str:
    from carepath.reports.notices import PART2_NOTICE

    return PART2_NOTICE


def _label_resource(resource: dict[str, Any], text: str) -> None:
    meta = resource.setdefault("meta", {})
    if not isinstance(meta, dict):
        return
    security = meta.setdefault("security", [])
    if isinstance(security, list):
        have = {(c.get("system"), c.get("code")) for c in security if isinstance(c, dict)}
        security.extend(dict(c) for c in SECURITY_LABELS if (c["system"], c["code"]) not in have)
    extensions = meta.setdefault("extension", [])
    if isinstance(extensions, list) and not any(
        isinstance(e, dict) and e.get("url") == NOTICE_EXTENSION for e in extensions
    ):
        extensions.append({"url": NOTICE_EXTENSION, "valueString": text})


def label_fhir(resource: dict[str, Any]) -> dict[str, Any]:
    """Labels a FHIR resource (and, for a Bundle, every entry's resource) in place."""
    text = notice()
    _label_resource(resource, text)
    if resource.get("resourceType") == "Bundle":
        for entry in resource.get("entry") or []:
            inner = entry.get("resource") if isinstance(entry, dict) else None
            if isinstance(inner, dict):
                _label_resource(inner, text)
    return resource


def label_cds(response: dict[str, Any]) -> dict[str, Any]:
    text = notice()
    for card in response.get("cards") or []:
        if not isinstance(card, dict):
            continue
        detail = card.get("detail") or ""
        if text not in detail:
            card["detail"] = (detail + "\n\n" if detail else "") + f"_{text}_"
        ext = card.setdefault("extension", {})
        if isinstance(ext, dict):
            ext["carepath-security-labels"] = [dict(c) for c in SECURITY_LABELS]
    return response


class Part2Middleware:
    """Buffers FHIR and CDS service responses (only those) and labels them."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        cds = scope.get("method") == "POST" and bool(_CDS_SERVICE.match(scope.get("path", "")))
        held: dict[str, Any] = {}

        async def send_labelled(message: Message) -> None:
            if message["type"] == "http.response.start":
                ctype = dict(message.get("headers", [])).get(b"content-type", b"").decode("latin-1")
                kind = _kind(ctype, cds, int(message["status"]))
                if kind is None:
                    await send(message)
                    return
                held.update(start=message, kind=kind, body=[])
                return
            if message["type"] == "http.response.body" and held:
                held["body"].append(message.get("body", b""))
                if message.get("more_body", False):
                    return
                await _send_labelled(send, held)
                held.clear()
                return
            await send(message)

        await self.app(scope, receive, send_labelled)


def _kind(ctype: str, cds: bool, status: int) -> str | None:
    if status != 200:
        return None
    base = ctype.split(";", 1)[0].strip().lower()
    if base == "application/fhir+json":
        return "fhir"
    if cds and base == "application/json":
        return "cds"
    return None


async def _send_labelled(send: Send, held: dict[str, Any]) -> None:
    raw = b"".join(held["body"])
    try:
        doc = json.loads(raw)
        doc = label_fhir(doc) if held["kind"] == "fhir" else label_cds(doc)
        raw = json.dumps(doc, ensure_ascii=False).encode()
    except (ValueError, AttributeError):
        pass  # not the JSON we label: sent as it came
    start = dict(held["start"])
    start["headers"] = [(k, v) for k, v in start.get("headers", []) if k.lower() != b"content-length"]
    start["headers"].append((b"content-length", str(len(raw)).encode()))
    await send(start)
    await send({"type": "http.response.body", "body": raw})
