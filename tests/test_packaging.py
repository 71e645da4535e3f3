"""Every file the package needs at run time ships in the wheel: a file its package-data misses works
from a checkout and is gone once installed (as a favicon once was)."""

from __future__ import annotations

import fnmatch
import tomllib
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def test_every_data_file_under_edgeemo_is_package_data() -> None:
    setuptools = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]
    patterns = setuptools["package-data"]
    missed = []
    for path in (REPO / "edgeemo").rglob("*"):
        if not path.is_file() or path.suffix in (".py", ".pyc"):
            continue
        rel = path.relative_to(REPO / "edgeemo")
        # the innermost package holding the file, and the file's path inside it
        owners = [(".".join(("edgeemo", *rel.parts[:i])), Path(*rel.parts[i:])) for i in range(len(rel.parts) - 1, -1, -1)]
        owned = [(pkg, inner) for pkg, inner in owners if pkg in setuptools["packages"] or pkg == "edgeemo"]
        pkg, inner = owned[0]
        if not any(fnmatch.fnmatch(inner.as_posix(), pattern) for pattern in patterns.get(pkg, [])):
            missed.append(f"{rel} (package {pkg})")
    assert not missed, f"not in [tool.setuptools.package-data]: {missed}"
