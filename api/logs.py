"""Logging for the service: one line per event, the request id on each, never patient data.

What is logged: startup facts, one access line per request (method, the route TEMPLATE such
as ``/v1/plans/{plan_id}``, status, duration, user id, request id; never the raw path, query
string, headers or body) and failures by exception CLASS only (messages may quote data).
"""

from __future__ import annotations

import contextvars
import logging
import sys

__all__ = ["configure_logging", "request_id_var", "access_log"]

QUIET = (
    "weasyprint",
    "fontTools",
    "fontTools.subset",
    "fontTools.ttLib",
    "PIL",
    "pydyf",
    "cssselect2",
    "tinycss2",
)
"""Third-party loggers kept at WARNING or above whatever CAREPATH_LOG_LEVEL says: WeasyPrint
and fontTools log the glyphs of every report at INFO/DEBUG, i.e. the patient's name."""

request_id_var: contextvars.ContextVar[str] = contextvars.ContextVar("carepath_request_id", default="-")
access_log = logging.getLogger("carepath.access")


class _RequestIdFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        record.request_id = request_id_var.get()
        return True


def configure_logging(level: str = "INFO") -> None:
    """Idempotent: replaces carepath's own handler on the root logger."""
    root = logging.getLogger()
    for h in list(root.handlers):
        if getattr(h, "_carepath", False):
            root.removeHandler(h)
    handler = logging.StreamHandler(sys.stderr)
    handler._carepath = True  # type: ignore[attr-defined]
    handler.addFilter(_RequestIdFilter())
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s [%(request_id)s] %(message)s"))
    root.addHandler(handler)
    root.setLevel(level.upper())
    # uvicorn's own access log would print raw paths with query strings: it stays off.
    logging.getLogger("uvicorn.access").disabled = True
    for name in ("sqlalchemy", "alembic", "multipart", "httpx", "httpcore", *QUIET):
        logging.getLogger(name).setLevel(max(logging.WARNING, root.level))
    # durable logs its own copy of an action's exception WITH its message (which may quote facts)
    logging.getLogger("durable").setLevel(logging.CRITICAL)
