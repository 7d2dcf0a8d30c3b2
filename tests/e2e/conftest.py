"""End-to-end fixtures: a REAL server (`carepath serve` in a subprocess, temp SQLite, a user made
with `carepath users add`) on 127.0.0.1, driven by Debian's Chromium through Playwright.

Playwright's own browser download is never used (no `playwright install`): the browser is
/usr/bin/chromium from the `chromium` Debian package (.ci/apt.txt). Without it these tests
skip on a developer machine and FAIL when CI is set.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

ROOT = Path(__file__).resolve().parents[2]
CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
EMAIL = "dr.e2e@clinic-e2e.example"
PASSWORD = "e2e correct horse battery"
STARTUP_LIMIT_S = 90.0  # a limit on waiting, never an assertion about speed
PDF_TIMEOUT_MS = 180_000  # a limit on waiting for a PDF on a loaded 2-core host, not a speed assertion
SCREENSHOTS = ROOT / "docs" / "screenshots"


def _need(condition: bool, why: str) -> None:
    if condition:
        return
    if os.environ.get("CI"):
        pytest.fail(f"{why} (required under CI: see .ci/apt.txt and pyproject [dev])")
    pytest.skip(why)


def _carepath() -> list[str]:
    script = Path(sys.executable).with_name("carepath")
    if script.exists():
        return [str(script)]
    found = shutil.which("carepath")
    return [found] if found else [sys.executable, "-m", "carepath.api"]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class LiveServer:
    url: str
    data_dir: Path
    proc: subprocess.Popen[bytes]
    log: Path

    def logs(self) -> str:
        return self.log.read_text(errors="replace")


@pytest.fixture(scope="session")
def live_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    base = tmp_path_factory.mktemp("e2e-server")
    data = base / "data"
    env = {
        k: v for k, v in os.environ.items() if not k.startswith("CAREPATH_") and k not in ("DATABASE_URL",)
    }
    env |= {"CAREPATH_DATA_DIR": str(data), "PYTHONUNBUFFERED": "1", "CAREPATH_QUEUE_TIMEOUT_S": "60"}
    upgrade = subprocess.run(  # the only command that creates the database
        [*_carepath(), "db", "upgrade"], text=True, capture_output=True, cwd=ROOT, env=env, timeout=120
    )
    assert upgrade.returncode == 0, upgrade.stderr
    add = subprocess.run(
        [*_carepath(), "users", "add", "--org", "clinic-e2e", "--email", EMAIL, "--role", "clinician"]
        + ["--password-stdin"],
        input=PASSWORD + "\n",
        text=True,
        capture_output=True,
        cwd=ROOT,
        env=env,
        timeout=120,
    )
    assert add.returncode == 0, add.stderr
    port = _free_port()
    log = base / "server.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            [*_carepath(), "serve", "--host", "127.0.0.1", "--port", str(port)],
            cwd=ROOT,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )
    server = LiveServer(f"http://127.0.0.1:{port}", data, proc, log)
    try:
        deadline = time.monotonic() + STARTUP_LIMIT_S
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"server exited early:\n{server.logs()[-3000:]}")
            try:
                if httpx.get(server.url + "/health", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError("server did not become ready")
            time.sleep(0.1)
        yield server
    finally:
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(30)


@pytest.fixture(scope="package")  # torn down after tests/e2e: its loop would break later asyncio.run()
def browser() -> Iterator[object]:
    _need(CHROMIUM.exists(), f"{CHROMIUM} is missing (Debian package 'chromium')")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        _need(False, "the Python package 'playwright' is not installed")
        raise
    with sync_playwright() as pw:
        b = pw.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS, headless=True)
        try:
            yield b
        finally:
            b.close()


@pytest.fixture
def screenshot_dir(tmp_path: Path) -> Path:
    """docs/screenshots when CAREPATH_UPDATE_SCREENSHOTS=1 (to refresh the committed ones), else tmp."""
    if os.environ.get("CAREPATH_UPDATE_SCREENSHOTS") == "1":
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        return SCREENSHOTS
    return tmp_path


def sign_in(page: object, server: LiveServer, next_path: str = "/") -> None:
    """Go to a page, get sent to the sign-in page, sign in, land back on the page."""
    page.goto(server.url + next_path)  # type: ignore[attr-defined]
    assert "/login" in page.url  # type: ignore[attr-defined]
    page.fill("#email", EMAIL)  # type: ignore[attr-defined]
    page.fill("#password", PASSWORD)  # type: ignore[attr-defined]
    page.click("button[type=submit]")  # type: ignore[attr-defined]
    page.wait_for_url(server.url + next_path)  # type: ignore[attr-defined]


@pytest.fixture
def page(browser, live_server):
    """A signed-in clinician's page at 1280 x 900."""
    context = browser.new_context(viewport={"width": 1280, "height": 900}, locale="en-GB")
    p = context.new_page()
    p.set_default_timeout(30_000)
    sign_in(p, live_server)
    yield p
    context.close()
