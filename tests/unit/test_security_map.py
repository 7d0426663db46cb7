"""README's ASVS map names code and tests that exist: a renamed test must not leave it lying."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
# `path`, `path::test`, or `::test` (another test of the file named last).
NAMED = re.compile(r"`((?:tests|commands|domain|ops)/[\w/.]+)(?:::(\w+))?`|`::(\w+)`")


def test_every_test_and_file_the_security_map_names_exists() -> None:
    text = (ROOT / "README.md").read_text()
    section = text[text.index("### Security: the OWASP ASVS") :]
    section = section[: section.index("\n## ")]
    named, last = 0, ""
    for match in re.finditer(
        r"`((?:tests|commands|domain|ops)/[\w/.]+)(?:::(\w+))?`|`::(\w+)`", section
    ):
        path, test, more = match.groups()
        last = path or last
        assert (ROOT / last).exists(), last
        if test or more:
            assert f"def {test or more}(" in (ROOT / last).read_text(), (last, test or more)
        named += 1
    assert named >= 20
