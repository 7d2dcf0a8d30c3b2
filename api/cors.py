"""CORS for the CDS Hooks routes only (CDS Hooks 2.0 "Cross-Origin Resource Sharing").

Browser-based EHRs call ``/cds-services`` from their own origin. Only origins listed in
``Settings.cds_allowed_origins`` get CORS headers (no wildcard, no credentials: CDS calls carry
a bearer JWT, not cookies); every other path of the service stays same-origin. Built on
Starlette's CORSMiddleware, applied to the CDS paths alone.
"""

from __future__ import annotations

from collections.abc import Sequence

from starlette.middleware.cors import CORSMiddleware
from starlette.types import ASGIApp, Receive, Scope, Send

__all__ = ["CdsCorsMiddleware", "CDS_PREFIX"]

CDS_PREFIX = "/cds-services"


class CdsCorsMiddleware:
    def __init__(self, app: ASGIApp, allowed_origins: Sequence[str]) -> None:
        self.app = app
        self.cors = CORSMiddleware(
            app,
            allow_origins=list(allowed_origins),
            allow_methods=["GET", "POST", "OPTIONS"],
            allow_headers=["Authorization", "Content-Type"],
            allow_credentials=False,
            max_age=600,
        )
        self.enabled = bool(allowed_origins)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path = scope.get("path", "") if scope["type"] == "http" else ""
        if self.enabled and (path == CDS_PREFIX or path.startswith(CDS_PREFIX + "/")):
            await self.cors(scope, receive, send)
            return
        await self.app(scope, receive, send)
