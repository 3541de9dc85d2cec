"""The code blocks of the README and of the documentation site, for the tests that run them.

A block is a fenced code block: in the README a plain one (```` ```python ````), on the site
MyST's ``{code-block}`` directive with a ``:caption:`` saying where it goes (a file name,
"Shell", "python manage.py shell"). Each test module that runs blocks finds its own with
:func:`block`; ``tests/integration/test_docs.py`` holds the map from every block to the test
that runs it, and fails when a block is added that nothing runs.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
DOCS = REPO / "docs"
SETTINGS_REFERENCE = REPO / "hephaestus_django" / "docs" / "settings.md"
"""Shipped in the package (the checks' hints print its path); the site includes it."""

FENCE = re.compile(
    r"^(?P<fence>`{3,})(?P<info>[^\n`]*)\n(?P<body>.*?)^(?P=fence)[ \t]*$", re.MULTILINE | re.DOTALL
)
OPTION = re.compile(r"^:(?P<name>[\w-]+):[ \t]*(?P<value>.*)$")
CODE_DIRECTIVES = {"code-block", "code", "sourcecode"}


@dataclass(frozen=True)
class Block:
    """One code block: where it is, its language, its caption and its text."""

    page: str  # relative to the repository, e.g. "docs/tutorial.md"
    line: int
    lang: str
    caption: str | None
    code: str

    def __str__(self) -> str:
        return f"{self.page}:{self.line} ({self.lang}, {self.caption!r})"


def site_pages() -> list[Path]:
    """Every Markdown page the site is built from, the included settings reference too."""
    pages = [path for path in DOCS.rglob("*.md") if "_build" not in path.parts]
    return [*sorted(pages), SETTINGS_REFERENCE]


def blocks(path: Path) -> list[Block]:
    """The code blocks of one Markdown file, in order. Directives other than code blocks
    (``{toctree}``, ``{eval-rst}``, ``{include}``) are not code and are left out."""
    text = path.read_text()
    page = path.relative_to(REPO).as_posix()
    found = []
    for match in FENCE.finditer(text):
        info = match["info"].strip()
        body = match["body"]
        caption = None
        directive = re.fullmatch(r"\{([\w-]+)\}\s*(.*)", info)
        if directive:
            if directive[1] not in CODE_DIRECTIVES:
                continue
            lang = directive[2].strip()
            lines = body.split("\n")
            while lines and (option := OPTION.match(lines[0])):
                if option["name"] == "caption":
                    caption = option["value"].strip()
                lines.pop(0)
            if lines and not lines[0].strip():
                lines.pop(0)
            body = "\n".join(lines)
        else:
            lang = info
        line = text.count("\n", 0, match.start()) + 1
        found.append(Block(page, line, lang, caption, body))
    return found


def site_blocks() -> list[Block]:
    return [found for page in site_pages() for found in blocks(page)]


def block(page: str, fragment: str) -> str:
    """The text of the one block of ``page`` (``"docs/tutorial.md"``, ``"README.md"``) that
    contains ``fragment``."""
    matching = [found.code for found in blocks(REPO / page) if fragment in found.code]
    assert len(matching) == 1, f"{len(matching)} blocks of {page} contain {fragment!r}"
    return matching[0]


def find_block(page: str, fragment: str) -> Block:
    (found,) = [found for found in blocks(REPO / page) if fragment in found.code]
    return found


def unclaimed(found: list[Block], claims: dict[tuple[str, str], str]) -> list[str]:
    """Problems with ``claims`` (``(page, fragment) -> the test that runs the block``): a block
    that no fragment, or several, claim; a fragment that claims no block."""
    problems = []
    for each in found:
        claimers = [key for key in claims if key[0] == each.page and key[1] in each.code]
        if len(claimers) != 1:
            problems.append(f"{each} is claimed by {len(claimers)} fragments:\n{each.code}")
    for page, fragment in claims:
        matching = [each for each in found if each.page == page and fragment in each.code]
        if len(matching) != 1:
            problems.append(f"{page}: fragment {fragment!r} matches {len(matching)} blocks")
    return problems
