"""Shared fixtures: one rule pack and one engine per session (building durable is costly)."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest

from engine import Engine, load_rulepack

ROOT = Path(__file__).resolve().parent.parent
FIXED_TIME = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)


@pytest.fixture(scope="session")
def pack():
    return load_rulepack()


@pytest.fixture(scope="session")
def engine(pack):
    return Engine(pack, "durable")


@pytest.fixture(scope="session")
def reference(pack):
    return Engine(pack, "reference")
