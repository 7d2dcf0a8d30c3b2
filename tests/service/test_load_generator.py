"""bench/load.py, the open-loop load generator: it must count what it sends and what comes
back, measure latency from the scheduled time, and find the knee the way its docs say."""

from __future__ import annotations

import importlib.util
import sys
from collections import Counter

import pytest

from tests.service.helpers import ROOT


@pytest.fixture(scope="module")
def load():
    spec = importlib.util.spec_from_file_location("carepath_bench_load", ROOT / "bench" / "load.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def test_a_short_run_against_a_live_server_counts_every_request(load, shared_server, capsys):
    token = shared_server.users.clinician.token
    steps = load.main(
        ["--url", shared_server.url, "--token", token, "--rates", "8", "--duration", "1", "--warmup", "0"]
    )
    (step,) = steps
    assert step.sent == 8
    assert step.statuses == Counter({"201": 8})
    assert step.ok == 8 and len(step.ok_latencies_ms) == 8
    assert all(ms > 0 for ms in step.ok_latencies_ms)
    out = capsys.readouterr().out
    assert "offered/s" in out and "knee per config" in out


def test_unanswered_requests_are_timeouts_counted_from_the_due_time(load):
    """A server that accepts connections and never answers: every request is a timeout, and
    the generator still sends on schedule (open loop)."""
    import socket
    import threading

    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(64)
    held: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        listener.settimeout(0.1)
        while not stop.is_set():
            try:
                held.append(listener.accept()[0])
            except OSError:
                continue

    threading.Thread(target=accept, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{listener.getsockname()[1]}"
        target = load.Target(url, ("t",), "POST", "/v1/plans", b"{}")
        args = load.parse_args(["--url", url, "--token", "t", "--rates", "20", "--timeout", "0.5"])
        step = load._run(target, 20, 0.5, args)
    finally:
        stop.set()
        for s in held:
            s.close()
        listener.close()
    assert step.sent == 10
    assert step.statuses == Counter({"timeout": 10})
    assert step.ok == 0 and step.completed_per_s == 0


def test_the_knee_is_the_highest_step_within_the_slo(load):
    def step(rate: float, p99: float, ok: int, statuses: dict[str, int] | None = None):
        s = load.Step("x", rate, 1.0, sent=int(rate), ok=ok, elapsed_s=1.0)
        s.ok_latencies_ms = [p99] * ok
        s.statuses = Counter(statuses or {"201": ok})
        return s

    assert step(100, 50, 100).meets(100)
    assert not step(200, 150, 200).meets(100)  # too slow
    assert not step(200, 50, 150).meets(100)  # fell behind the offered rate
    assert not step(200, 50, 200, {"201": 200, "503": 3}).meets(100)  # shed some
    assert not step(200, 50, 200, {"201": 200, "timeout": 1}).meets(100)
