"""The door to ``reports/`` (HTML and PDF). Looked up at call time, so the service switches
to real rendering as soon as the renderer is installed; until then ``ReportsUnavailable``
(HTTP 503). PDF rendering never runs on the event loop: it runs in the process's bounded
pool (api.pdf_pool), which answers 503 + Retry-After when full.
"""

from __future__ import annotations

import base64
import hashlib
import importlib
import inspect
import re
from typing import Any

from carepath.api.errors import ReportsUnavailable
from carepath.api.pdf_pool import default_pool
from carepath.engine import CarePlan, Intake, RulePack

__all__ = ["render_html_report", "render_pdf_report", "style_hashes"]

_STYLE = re.compile(r"<style[^>]*>(.*?)</style>", re.DOTALL | re.IGNORECASE)


def _patient(intake: Intake) -> Any:
    try:
        from carepath.reports.patient import patient_from_intake
    except ImportError:
        return intake.patient
    return patient_from_intake(intake)


def _kwargs(
    fn: Any, pack: RulePack, intake: Intake, audience: str, language: str | None, extra: dict[str, Any]
) -> dict[str, Any]:
    kwargs: dict[str, Any] = {"audience": audience, "language": language}
    params = inspect.signature(fn).parameters
    if "patient" in params:
        kwargs["patient"] = _patient(intake)
    if "pack" in params:
        kwargs["pack"] = pack
    if "intake" in params:
        kwargs["intake"] = intake
    kwargs |= {k: v for k, v in extra.items() if k in params}  # recorded (decisions, sign-off), appendix
    return kwargs


def render_html_report(
    plan: CarePlan, intake: Intake, pack: RulePack, audience: str, language: str | None, **extra: Any
) -> str:
    try:
        fn = importlib.import_module("carepath.reports").render_html
    except (ImportError, AttributeError):
        raise ReportsUnavailable() from None
    try:
        return str(fn(plan, **_kwargs(fn, pack, intake, audience, language, extra)))
    except NotImplementedError:
        raise ReportsUnavailable() from None


async def render_pdf_report(
    plan: CarePlan, intake: Intake, pack: RulePack, audience: str, language: str | None, **extra: Any
) -> bytes:
    try:
        pdf = importlib.import_module("carepath.reports.pdf")
    except ImportError:
        raise ReportsUnavailable() from None
    fn = getattr(pdf, "render_pdf", None)
    try:
        if fn is not None:  # in the bounded pool: 503 + Retry-After when it is full (api.pdf_pool)
            kwargs = _kwargs(fn, pack, intake, audience, language, extra)
            return bytes(await default_pool().run(lambda: fn(plan, **kwargs)))
    except NotImplementedError:
        raise ReportsUnavailable() from None
    raise ReportsUnavailable()


def style_hashes(html: str) -> list[str]:
    """CSP source expressions for the inline <style> blocks of a rendered report."""
    out = []
    for css in _STYLE.findall(html):
        digest = base64.b64encode(hashlib.sha256(css.encode()).digest()).decode()
        out.append(f"'sha256-{digest}'")
    return sorted(set(out))
