"""Printable reports (issue 3). Placeholder until the report renderer lands."""

from __future__ import annotations

from typing import Any

__all__ = ["render_html"]


def render_html(plan: Any, audience: str = "clinician", language: str | None = None) -> str:
    raise NotImplementedError("HTML reports are not available in this build")
