"""Memory stays flat: 20,000 durable evaluations on one runner (bench/engine.py --soak does
100,000 full evaluations). The bound is generous on purpose; there is no timing assert."""

from __future__ import annotations

import os
import random
import resource

import pytest

from carepath.engine import RulePack, parse_intake_obj
from carepath.engine._durable import DurableRunner
from carepath.engine.derive import derive
from tests.factories import random_intake

WARM_UP = 2_000
EVALUATIONS = 20_000
ALLOWED_GROWTH_MB = 20


def rss_mb() -> float:
    """Resident set size now (Linux /proc), else the peak from getrusage."""
    try:
        with open("/proc/self/statm", encoding="ascii") as statm:
            return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20
    except OSError:
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


@pytest.mark.slow
def test_rss_is_flat_over_20000_durable_evaluations(pack: RulePack) -> None:
    rng = random.Random(3)
    facts = [derive(parse_intake_obj(random_intake(rng))) for _ in range(250)]
    runner = DurableRunner(pack)
    for i in range(WARM_UP):
        runner.run(facts[i % len(facts)])
    before = rss_mb()
    for i in range(EVALUATIONS):
        runner.run(facts[i % len(facts)])
    growth = rss_mb() - before
    assert growth < ALLOWED_GROWTH_MB, f"RSS grew {growth:.1f} MB over {EVALUATIONS} evaluations"
