"""The JSON tree as text: :func:`dumps` writes what PostgreSQL stores, :func:`loads` reads it.

jsonb keeps numbers as ``numeric`` and prints them without an exponent, so a float written as
``1e+16`` would come back as the int ``10000000000000000``; ``dumps`` writes such floats
positionally (``10000000000000000.0``).

The text is written and read by orjson, which does it several times faster than ``json`` on the
storage's hot path, with ``json`` taking over for the few inputs where orjson would differ:
ints beyond 64 bits (orjson refuses to write them, and reads them as floats), and the
non-standard ``NaN``/``Infinity`` tokens, which orjson neither writes nor reads.
"""

from __future__ import annotations

import json
import re
from decimal import Decimal
from typing import TypeAlias

import orjson

JSON: TypeAlias = bool | int | float | str | list["JSON"] | dict[str, "JSON"] | None
"""A value ``json`` and PostgreSQL jsonb represent natively."""

_ENCODER = json.JSONEncoder(ensure_ascii=False, allow_nan=False, separators=(",", ":"))

_DIGITS = "0123456789"
_ESCAPE = re.compile(r"\\.", re.DOTALL)
# Ints orjson reads exactly have at most 19 digits, and only some 19-digit ones do. A run of 19
# digits anywhere (in a string, a fraction) only sends the text to ``json``, never wrongly past
# it. Found by mapping every digit byte to "0" and every other byte to " ", then one substring
# search: a few microseconds where a regular expression takes several times longer.
_DIGITS_ONLY = bytes(0x30 if 0x30 <= byte <= 0x39 else 0x20 for byte in range(256))
_LONG_RUN = b"0" * 19


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
    """Write ``data`` as compact JSON text for jsonb; refuse NaN and the infinities.

    For a tree :func:`encode` has just returned, :func:`dumps_encoded` writes the same text
    faster. Floats that ``repr`` writes with an exponent are written positionally: see
    :func:`_positional_floats`.
    """
    return _positional_floats(_ENCODER.encode(data))


def dumps_encoded(data: JSON) -> str:
    """:func:`dumps` for a tree :func:`encode` has just returned, written by orjson.

    ``encode`` leaves nothing orjson would write differently: it refuses NaN and the
    infinities (orjson writes ``null``), non-str keys and values of subclasses, and tags
    tuples (orjson writes lists). Only ints beyond 64 bits are left, which orjson refuses, so
    ``json`` writes those trees. Do not pass it anything else: use :func:`dumps`.
    """
    try:
        text = orjson.dumps(data).decode()
    except orjson.JSONEncodeError:  # an int beyond 64 bits
        text = _ENCODER.encode(data)
    return _positional_floats(text)


def _positional_floats(text: str) -> str:
    """Rewrite the floats of compact JSON ``text`` that have an exponent without one.

    Floats that ``repr`` writes with an exponent (``abs(x) >= 1e16`` or ``< 1e-4``) are
    written positionally with a fractional part, e.g. ``10000000000000000.0`` and
    ``0.00001``, because PostgreSQL prints jsonb numbers without an exponent and
    ``10000000000000000`` would come back as an int. The digits are exactly repr's (orjson
    writes the same shortest digits), so ``float(text)`` is the same float. The fix is made
    on the text: two ``str.find`` scans for ``e+``/``e-`` in the common case, a closer look
    only at the rare hits.
    """
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
    """Read JSON text (as stored by :func:`dumps`, or as PostgreSQL prints it).

    orjson reads it, unless it has a run of 19 digits (orjson would read an int beyond 64
    bits as a float) or orjson refuses it (``NaN``, ``Infinity``, or invalid text): then
    ``json`` does, with its own errors. Text nested deeper than Python's recursion allows is a
    ``json.JSONDecodeError`` too, not a ``RecursionError``.
    """
    data = text.encode() if isinstance(text, str) else text
    if _LONG_RUN not in data.translate(_DIGITS_ONLY):
        try:
            result: JSON = orjson.loads(text)
        except orjson.JSONDecodeError:
            pass
        else:
            return result
    try:
        fallback: JSON = json.loads(text)
    except RecursionError:  # orjson refuses the same text, beyond 1,024 levels
        document = text if isinstance(text, str) else text.decode(errors="replace")
        raise json.JSONDecodeError("the JSON is nested too deep to read", document, 0) from None
    return fallback
