"""HTML -> PDF with WeasyPrint: the only importer of WeasyPrint.

What is the same for every render is made once per thread and reused: the font configuration
(fontconfig and Pango's font map) and the parsed report stylesheet (``_Kit``). The HTML of a
PDF is rendered without its inline stylesheet and gets the parsed one. A thread gets its own
kit because WeasyPrint's font objects are not documented as thread-safe (the service renders
in a thread pool).

The renderer fetches nothing from the network or the file system: its URL fetcher serves
packaged assets (``carepath-asset:<path>`` under reports/static/) and refuses every other URL,
including file:, http(s):, data: and relative ones. Fonts come from the system (fontconfig,
Debian fonts-dejavu-core); the page declares no @font-face. PDF metadata carries the fixed
document title and no patient data.
"""

from __future__ import annotations

import asyncio
import threading
from dataclasses import dataclass
from importlib import resources
from typing import Any

from weasyprint import CSS, HTML
from weasyprint.text.fonts import FontConfiguration
from weasyprint.urls import URLFetcher, URLFetcherResponse

from carepath.engine import CarePlan, Intake, RulePack
from carepath.reports.record import Recorded
from carepath.reports.render import render_html, stylesheet

__all__ = ["ASSET_SCHEME", "AssetOnlyFetcher", "RefusedURL", "html_to_pdf", "render_pdf", "render_pdf_async"]

ASSET_SCHEME = "carepath-asset:"
_MIME = {".css": "text/css", ".svg": "image/svg+xml", ".png": "image/png"}


class RefusedURL(ValueError):
    """The report tried to load something that is not a packaged asset."""


class AssetOnlyFetcher(URLFetcher):  # type: ignore[misc]
    """Serves reports/static/* for ``carepath-asset:`` URLs; refuses everything else."""

    def __init__(self) -> None:
        super().__init__(allowed_protocols=(), allow_redirects=False)
        self.refused = 0

    def fetch(self, url: str, headers: Any = None) -> URLFetcherResponse:
        if not url.startswith(ASSET_SCHEME):
            self.refused += 1
            raise RefusedURL("only packaged report assets may be loaded")
        return URLFetcherResponse(url, _asset(url.removeprefix(ASSET_SCHEME)), {"Content-Type": _mime(url)})

    def open(self, *args: Any, **kwargs: Any) -> Any:  # never the urllib opener
        raise RefusedURL("network access is disabled")


def _asset(path: str) -> bytes:
    parts = [p for p in path.split("/") if p]
    if not parts or any(p in (".", "..") or "\\" in p or ":" in p for p in parts):
        raise RefusedURL("bad asset path")
    node = resources.files("carepath.reports").joinpath("static", *parts)
    if not node.is_file():
        raise RefusedURL("no such packaged asset")
    return node.read_bytes()


def _mime(url: str) -> str:
    return next((m for ext, m in _MIME.items() if url.endswith(ext)), "application/octet-stream")


@dataclass(frozen=True)
class _Kit:
    fonts: FontConfiguration
    css: CSS


_local = threading.local()


def _kit() -> _Kit:
    kit: _Kit | None = getattr(_local, "kit", None)
    if kit is None:
        fonts = FontConfiguration()
        kit = _local.kit = _Kit(fonts, CSS(string=stylesheet(), font_config=fonts))
    return kit


def html_to_pdf(html: str, fetcher: AssetOnlyFetcher | None = None, *, reuse: bool = True) -> bytes:
    """Any HTML to PDF through the asset-only fetcher. ``reuse`` adds the cached report
    stylesheet and fonts (for HTML rendered with ``embed_css=False``); without it nothing is
    cached (the benchmark's baseline)."""
    document = HTML(string=html, base_url=None, url_fetcher=fetcher or AssetOnlyFetcher())
    options: dict[str, Any] = {"uncompressed_pdf": False, "pdf_identifier": b"carepath-care-plan-draft"}
    if reuse:
        kit = _kit()
        options |= {"font_config": kit.fonts, "stylesheets": [kit.css]}
    pdf: bytes = document.write_pdf(**options)
    return pdf


def render_pdf(
    plan: CarePlan,
    audience: str = "clinician",
    language: str | None = None,
    *,
    pack: RulePack | None = None,
    patient: Any = None,
    intake: Intake | None = None,
    recorded: Recorded | None = None,
    appendix: bool = True,
) -> bytes:
    html = render_html(
        plan,
        audience=audience,
        language=language,
        pack=pack,
        patient=patient,
        intake=intake,
        recorded=recorded,
        appendix=appendix,
        embed_css=False,
    )
    return html_to_pdf(html)


async def render_pdf_async(plan: CarePlan, *args: Any, **kwargs: Any) -> bytes:
    """For the web service: ``render_pdf`` in a worker thread so the event loop keeps serving."""
    return await asyncio.to_thread(render_pdf, plan, *args, **kwargs)


render_pdf_async.__wrapped__ = render_pdf  # type: ignore[attr-defined]  # inspect.signature: render_pdf's parameters
