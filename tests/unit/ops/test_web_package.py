"""The web client's files ship in the wheel: each one the server names exists and is covered by
the package data that setuptools puts in the wheel."""

from __future__ import annotations

import tomllib
from fnmatch import fnmatch
from pathlib import Path

import ops.web

ROOT = Path(__file__).resolve().parents[3]
WEB = Path(ops.web.__file__).parent


def test_every_file_the_client_serves_is_package_data() -> None:
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())
    package_data = config["tool"]["setuptools"]["package-data"]
    patterns = [*package_data.get("ops.web", []), *package_data.get("*", [])]
    served = set(ops.web._ASSETS)
    assert served == {"index.html", "app.js", "app.css"}
    on_disk = {path.name for path in WEB.iterdir() if path.suffix not in {".py", ".pyc"}}
    on_disk.discard("__pycache__")
    assert on_disk == served
    for name in served:
        assert any(fnmatch(name, pattern) for pattern in patterns), name
