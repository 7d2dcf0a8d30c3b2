"""Shared fixtures: one rule pack and one engine per session (building durable is costly)."""

from __future__ import annotations

import os
from datetime import UTC, datetime
from pathlib import Path

import pytest
from hypothesis import settings

from carepath.engine import Engine, load_rulepack

ROOT = Path(__file__).resolve().parent.parent
FIXED_TIME = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)

# Hypothesis: 200 examples per property locally; CI=1 (or HYPOTHESIS_PROFILE=ci) runs 1000,
# derandomized, on top of Hypothesis' own CI settings. No deadlines: no timed asserts.
settings.register_profile("default", max_examples=200, deadline=None)
settings.register_profile("ci", settings.get_profile("ci"), max_examples=1000, deadline=None)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE") or ("ci" if os.environ.get("CI") else "default"))


@pytest.fixture(scope="session")
def pack():
    return load_rulepack()


@pytest.fixture(scope="session")
def engine(pack):
    return Engine(pack, "durable")


@pytest.fixture(scope="session")
def reference(pack):
    return Engine(pack, "reference")


def pytest_collection_modifyitems(config, items):
    """`nightly` tests (the long fault profile, e.g. SIGKILL x200) run only when asked for:
    `pytest -m nightly` or CAREPATH_NIGHTLY=1. CI runs the short profile."""
    if os.environ.get("CAREPATH_NIGHTLY") == "1" or "nightly" in (config.getoption("markexpr") or ""):
        return
    skip = pytest.mark.skip(reason="nightly profile: run with -m nightly or CAREPATH_NIGHTLY=1")
    for item in items:
        if "nightly" in item.keywords:
            item.add_marker(skip)
