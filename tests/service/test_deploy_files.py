"""deploy/: the container image and compose file cannot be built here (no container engine),
so these checks keep them in step with the code: every package folder the wheel maps is copied
into the image, the image runs `carepath serve`, and the compose file's replicas share one
PostgreSQL database and one secret key."""

from __future__ import annotations

import re
import tomllib

import yaml

from tests.service.helpers import ROOT

DEPLOY = ROOT / "deploy"


def test_the_image_copies_every_package_folder_and_runs_the_server():
    text = (DEPLOY / "Dockerfile").read_text()
    mapped = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["package-dir"]
    copied = set(re.findall(r"^COPY (\w+) \1$", text, flags=re.M))
    assert set(mapped.values()) <= copied, set(mapped.values()) - copied
    assert re.search(r'^CMD \["carepath", "serve", "--host", "0.0.0.0"', text, flags=re.M)
    assert "USER carepath" in text and "HEALTHCHECK" in text and "/health" in text
    ignore = (DEPLOY / "Dockerfile.dockerignore").read_text().split()
    assert all(f"!{folder}/" in ignore for folder in mapped.values())


def test_compose_runs_two_replicas_on_one_database_with_one_secret():
    compose = yaml.safe_load((DEPLOY / "compose.yaml").read_text())
    services = compose["services"]
    replicas = [s for name, s in services.items() if name.startswith("carepath")]
    assert len(replicas) == 2
    for svc in replicas:
        env = svc["environment"]
        assert (
            env["CAREPATH_DATABASE_URL"].startswith("postgresql://")
            and "@postgres:" in env["CAREPATH_DATABASE_URL"]
        )
        assert env["CAREPATH_SECRET_KEY"].startswith("${CAREPATH_SECRET_KEY:?")
        assert svc["depends_on"]["postgres"]["condition"] == "service_healthy"
    assert "healthcheck" in services["postgres"]
    assert (ROOT / ".gitignore").read_text().count("deploy/.env") == 1
