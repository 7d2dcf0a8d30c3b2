"""Fakes with observable state (no mocks): audit sinks and engines that fail on demand."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from carepath.api.audit import AuditEvent, ChainedAuditSink
from carepath.api.db import Tx
from carepath.api.records import AuditEntry


class SwitchableAuditSink:
    """The real chained sink until ``broken`` is set; then every append raises."""

    def __init__(self, message: str = "audit storage unavailable") -> None:
        self.inner = ChainedAuditSink()
        self.broken = False
        self.message = message
        self.attempts: list[AuditEvent] = []
        self.failures = 0

    def append(self, tx: Tx, event: AuditEvent) -> AuditEntry:
        self.attempts.append(event)
        if self.broken:
            self.failures += 1
            raise OSError(self.message)
        return self.inner.append(tx, event)


class ExplodingEngine:
    """Stands in for the rules engine; raises an unexpected error quoting the input."""

    def __init__(self, real: Any, message: str) -> None:
        self.pack = real.pack
        self.message = message
        self.calls = 0

    def evaluate(self, intake: Any, generated_at: datetime) -> Any:
        self.calls += 1
        raise ValueError(f"{self.message} {intake.model_dump_json()}")
