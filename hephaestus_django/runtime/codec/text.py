"""The JSON tree as text: :func:`dumps` writes what PostgreSQL stores, :func:`loads` reads it.

jsonb keeps numbers as ``numeric`` and prints them without an exponent, so a float written as
``1e+16`` would come back as the int ``10000000000000000``; ``dumps`` writes such floats
positionally (``10000000000000000.0``).
"""

from __future__ import annotations

import json
import re
from decimal import Decimal
from typing import TypeAlias

JSON: TypeAlias = bool | int | float | str | list["JSON"] | dict[str, "JSON"] | None
"""A value ``json`` and PostgreSQL jsonb represent natively."""

_ENCODER = json.JSONEncoder(ensure_ascii=False, allow_nan=False, separators=(",", ":"))

_DIGITS = "0123456789"
_ESCAPE = re.compile(r"\\.", re.DOTALL)


def _exponent_float_at(text: str, at: int) -> tuple[int, int] | None:
    """Return the span of the float token whose exponent "e" is at ``at``, if it is one.

    The candidate came from ``<digit>e<sign><digit>``. It is a float token if it starts right
    after a JSON separator (the text is compact) and lies outside every string: with escapes
    removed, an even number of quotes precedes it.
    """
    start = at - 1
    while start and text[start - 1] in "0123456789.":
        start -= 1
    if start and text[start - 1] == "-":
        start -= 1
    if start and text[start - 1] not in ":,[":
        return None
    if _ESCAPE.sub("", text[:start]).count('"') % 2:
        return None
    end = at + 2
    while end < len(text) and text[end] in _DIGITS:
        end += 1
    return start, end


def _positional(number: str) -> str:
    text = format(Decimal(number), "f")
    return text if "." in text else text + ".0"


def dumps(data: JSON) -> str:
    """Write ``data`` (as returned by :func:`encode`) as compact JSON text for jsonb.

    Floats that ``repr`` writes with an exponent (``abs(x) >= 1e16`` or ``< 1e-4``) are
    written positionally with a fractional part, e.g. ``10000000000000000.0`` and
    ``0.00001``, because PostgreSQL prints jsonb numbers without an exponent and
    ``10000000000000000`` would come back as an int. The digits are exactly repr's, so
    ``float(text)`` is the same float. json's C encoder ignores float subclasses' ``repr``,
    so the fix is made on the text: two ``str.find`` scans for ``e+``/``e-`` in the common
    case, a closer look only at the rare hits.
    """
    text = _ENCODER.encode(data)
    size = len(text)
    spans: list[tuple[int, int]] = []
    for needle in ("e+", "e-"):
        at = text.find(needle)
        while at != -1:
            if 0 < at < size - 2 and text[at - 1] in _DIGITS and text[at + 2] in _DIGITS:
                span = _exponent_float_at(text, at)
                if span is not None:
                    spans.append(span)
            at = text.find(needle, at + 2)
    if not spans:
        return text
    spans.sort()
    pieces: list[str] = []
    done = 0
    for start, end in spans:
        pieces.append(text[done:start])
        pieces.append(_positional(text[start:end]))
        done = end
    pieces.append(text[done:])
    return "".join(pieces)


def loads(text: str | bytes) -> JSON:
    """Read JSON text (as stored by :func:`dumps`, or as PostgreSQL prints it)."""
    result: JSON = json.loads(text)
    return result
