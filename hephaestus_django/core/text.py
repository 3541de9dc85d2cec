"""Text PostgreSQL cannot hold: checked where a caller's string is about to reach SQL.

A NUL character (U+0000) cannot be in a PostgreSQL ``text`` or ``jsonb`` value, and a lone
surrogate (U+D800..U+DFFF, what ``errors='surrogateescape'`` leaves in a ``str``) is not valid
UTF-8, so the driver cannot even send it. Left to the database, the first is a ``DataError`` and
the second a ``UnicodeEncodeError`` raised from deep inside a query; checked here, each is the
library's own error naming the value and what to do, before anything is read or written.
"""

from __future__ import annotations

import re

SURROGATE = re.compile("[\ud800-\udfff]")
"""Matches a lone surrogate."""


def unstorable(text: str) -> str | None:
    """What in ``text`` PostgreSQL cannot hold, as a phrase for a message; None when nothing."""
    if "\x00" in text:
        return "a NUL character (U+0000), which PostgreSQL text cannot hold"
    found = SURROGATE.search(text)
    if found is not None:
        return (
            f"a lone surrogate (U+{ord(found.group()):04X}), which is not valid UTF-8 "
            "(it often comes from errors='surrogateescape')"
        )
    return None


def shown(text: str, limit: int = 40) -> str:
    """``text`` for a message: its repr, cut at ``limit`` characters, surrogates escaped (a
    message holding one could not be logged or sent either)."""
    cut = text if len(text) <= limit else text[:limit]
    escaped = repr(cut).encode("utf-8", "backslashreplace").decode("utf-8")
    return escaped + ("…" if len(text) > limit else "")
