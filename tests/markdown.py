"""Reading the docs from tests: the docs tests of tests/ci and tests/infra both check sections of guides."""

from __future__ import annotations

import re


def section(text: str, heading: str) -> str:
    """The lines after `heading` up to the next heading of the same or a higher level (outside code)."""
    level = len(heading) - len(heading.lstrip("#"))
    lines = text.splitlines()
    start = lines.index(heading) + 1
    fenced = False
    for index in range(start, len(lines)):
        fenced ^= lines[index].startswith("```")
        if not fenced and re.match(rf"#{{1,{level}}} ", lines[index]):
            return "\n".join(lines[start:index])
    return "\n".join(lines[start:])
