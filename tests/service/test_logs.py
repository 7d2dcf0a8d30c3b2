"""Logs: no patient name in ANY log line, not even spelled out as glyph names by WeasyPrint or
fontTools at DEBUG (they are held at WARNING); an access line per request also with
``carepath serve --workers 2`` (each worker configures its own logging)."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time

import httpx

from tests.service.helpers import (
    ROOT,
    TEST_RATES,
    ProcessServer,
    free_port,
    make_users,
    run_cli,
    sqlite_db_in,
)

CANARY = "Quillon Xyzzyvark"


def _letters(text: str) -> str:
    return re.sub(r"[^A-Za-z]", "", text).lower()


def test_a_patient_name_appears_in_no_log_line_even_as_glyphs(tmp_path, example_intake):
    data = tmp_path / "data"
    db = sqlite_db_in(data)
    users = make_users(db)
    db.dispose()
    intake = {**example_intake, "patient": {**example_intake["patient"], "name": CANARY}}
    with (
        ProcessServer(data, env={"CAREPATH_LOG_LEVEL": "DEBUG"}) as srv,
        httpx.Client(base_url=srv.url, timeout=120) as c,
    ):
        pid = c.post("/v1/plans", content=json.dumps(intake), headers=users.clinician.headers).json()[
            "plan_id"
        ]
        for q in ("", "?audience=patient"):
            r = c.get(f"/v1/plans/{pid}/report.pdf{q}", headers=users.clinician.headers)
            assert r.status_code == 200 and r.content.startswith(b"%PDF")
        assert c.get(f"/v1/plans/{pid}/report.html", headers=users.clinician.headers).status_code == 200
    logs = srv.logs()
    assert "carepath.access" in logs  # the server did log (DEBUG), so silence is not the reason
    wanted = _letters(CANARY)
    for line in logs.splitlines():
        assert wanted not in _letters(line), f"patient name in a log line: {line[:200]}"
        assert " fontTools" not in line and " weasyprint" not in line, line[:200]


def test_every_worker_writes_the_access_log(tmp_path):
    data = tmp_path / "data"
    assert run_cli("db", "upgrade", data_dir=data).returncode == 0
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("CAREPATH_") and k != "DATABASE_URL"}
    env |= {"CAREPATH_DATA_DIR": str(data), "PYTHONUNBUFFERED": "1", **TEST_RATES}
    err = tmp_path / "serve.err"
    with open(err, "wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "api", "serve", "--port", str(port), "--workers", "2"],
            cwd=ROOT,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        deadline = time.monotonic() + 90
        while True:
            try:
                if httpx.get(f"http://127.0.0.1:{port}/health", timeout=5).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert time.monotonic() < deadline and proc.poll() is None, err.read_text()[-2000:]
            time.sleep(0.3)
        for _ in range(20):
            httpx.get(f"http://127.0.0.1:{port}/health/live", timeout=10, headers={"Connection": "close"})
        time.sleep(1)
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(60)
    lines = [
        ln for ln in err.read_text().splitlines() if "carepath.access" in ln and "/health/live 200" in ln
    ]
    assert len(lines) >= 20, err.read_text()[-2000:]
