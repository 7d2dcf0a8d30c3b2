"""Does requirements.lock still match pyproject.toml? Exit 1 with the reason if not.

Two checks: the lock's ``inputs-sha256`` header is the digest of pyproject's dependency lists
(any added, removed or re-bounded dependency changes it), and every dependency is pinned in the
lock at a version its bounds allow. ``--digest`` prints the digest (used by .ci/lock).
Runs on any Python 3.11+ that has pip (a venv does): tomllib, and pip's vendored ``packaging``.
"""

from __future__ import annotations

import hashlib
import json
import re
import sys
import tomllib
from pathlib import Path

try:
    from packaging.requirements import Requirement
    from packaging.utils import canonicalize_name
except ImportError:  # a bare interpreter: pip always carries a copy
    from pip._vendor.packaging.requirements import Requirement  # type: ignore[no-redef]
    from pip._vendor.packaging.utils import canonicalize_name  # type: ignore[no-redef]

ROOT = Path(__file__).resolve().parent.parent
LOCK = ROOT / "requirements.lock"
FIX = "run `bash .ci/lock` and commit requirements.lock"


def inputs() -> dict[str, list[str]]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    return {
        "requires-python": [project["requires-python"]],
        "dependencies": sorted(project["dependencies"]),
        "dev": sorted(project.get("optional-dependencies", {}).get("dev", [])),
    }


def digest() -> str:
    return hashlib.sha256(json.dumps(inputs(), sort_keys=True).encode()).hexdigest()


def pins(text: str) -> dict[str, list[str]]:
    """name -> pinned versions (a universal lock may pin one name twice, under markers)."""
    found: dict[str, list[str]] = {}
    for line in text.splitlines():
        m = re.match(r"^([A-Za-z0-9][A-Za-z0-9._-]*)(?:\[[^\]]*\])?==([^\s;\\]+)", line)
        if m:
            found.setdefault(canonicalize_name(m.group(1)), []).append(m.group(2))
    return found


def problems() -> list[str]:
    if not LOCK.is_file():
        return ["requirements.lock is missing"]
    text = LOCK.read_text(encoding="utf-8")
    out = []
    m = re.search(r"^# inputs-sha256: ([0-9a-f]{64})$", text, re.M)
    if not m or m.group(1) != digest():
        out.append("pyproject.toml's dependencies changed since requirements.lock was generated")
    locked = pins(text)
    deps = inputs()
    for spec in deps["dependencies"] + deps["dev"]:
        req = Requirement(spec)
        name = canonicalize_name(req.name)
        if name not in locked:
            out.append(f"{req.name} is in pyproject.toml but not pinned in requirements.lock")
        elif not any(req.specifier.contains(v, prereleases=True) for v in locked[name]):
            pinned = ", ".join(locked[name])
            out.append(f"{req.name} is pinned at {pinned}, outside pyproject's '{req.specifier}'")
    return out


def main() -> int:
    if sys.argv[1:] == ["--digest"]:
        print(digest())
        return 0
    found = problems()
    if found:
        print("requirements.lock does not match pyproject.toml:", file=sys.stderr)
        for p in found:
            print(f"  - {p}", file=sys.stderr)
        print(f"To fix: {FIX}.", file=sys.stderr)
        return 1
    print(f"requirements.lock matches pyproject.toml ({len(pins(LOCK.read_text()))} pinned packages)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
