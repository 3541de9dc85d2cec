"""The bounds on what an operator types into the admin: search terms, resume payloads, reasons.

Whatever comes through a form or the search box is checked against these limits *before* it is
parsed, so no input can exhaust Python's stack (``json`` recurses once per nesting level) or
buy seconds of server time. Each refusal is an
:class:`~hephaestus_django.core.errors.InvalidQueryError` whose message states the limit; the
admin shows it as a message or a form error, never as a server error.
"""

from __future__ import annotations

from hephaestus_django.core.engine import MAX_REASON_LENGTH
from hephaestus_django.core.errors import InvalidQueryError
from hephaestus_django.runtime.codec.refusals import SURROGATE

QUERY_MAX_CHARS = 16_000
"""Characters in a changelist address after the ``?``: past it, the query string is not parsed
(decoding a megabyte of percent-escapes alone costs Django a fraction of a second). Room for a
search term at its limit in any script, percent-encoded, and the filters."""

SEARCH_MAX_CHARS = 1_000
"""Characters in one search term: room for an id or a few ``key=value`` terms, no more."""

SEARCH_MAX_DEPTH = 8
"""Containers nested in a searched value, key paths included (``a.b.c=1`` is 3 deep)."""

SEARCH_MAX_VALUES = 20
"""Values one search matches on: each is one more lookup in the GIN index."""

PAYLOAD_MAX_CHARS = 100_000
"""Characters in a resume payload typed in the admin."""

PAYLOAD_MAX_DEPTH = 50
"""Containers nested in a resume payload; half of what the storage keeps, which leaves the
payload room inside the state it is stored in."""

REASON_MAX_CHARS = MAX_REASON_LENGTH
"""Characters in the reason given for cancelling an instance: a sentence or two for the people
who look at the instance later, kept with it (``instance.cancellation.reason``)."""


def check_characters(text: str, what: str) -> None:
    """Refuse text PostgreSQL cannot compare or store: NUL, and lone surrogates."""
    if "\x00" in text:
        raise InvalidQueryError(
            f"{what} contains the NUL character (U+0000), which PostgreSQL text and jsonb cannot "
            "hold, so nothing stored can match it; remove it"
        )
    if SURROGATE.search(text):
        raise InvalidQueryError(
            f"{what} contains a lone surrogate (U+D800..U+DFFF), which is not valid UTF-8, so "
            "nothing stored can match it; remove it"
        )


def check_length(text: str, what: str, limit: int) -> None:
    """Refuse text longer than ``limit`` characters, before any work is done on it."""
    if len(text) > limit:
        raise InvalidQueryError(f"{what} is {len(text):,} characters long; the limit is {limit:,}")


def check_nesting(text: str, what: str, limit: int, *, outer: int = 0) -> None:
    """Refuse JSON text nested deeper than ``limit`` (counting ``outer`` enclosing levels).

    Counted on the text, so a value too deep to parse is refused without parsing it. Brackets
    inside strings do not count.
    """
    depth = outer
    in_string = escaped = False
    for char in text:
        if in_string:
            if escaped:
                escaped = False
            elif char == "\\":
                escaped = True
            elif char == '"':
                in_string = False
        elif char == '"':
            in_string = True
        elif char in "[{":
            depth += 1
            if depth > limit:
                raise InvalidQueryError(
                    f"{what} is nested more than {limit} levels deep; the limit is {limit}: "
                    "flatten it"
                )
        elif char in "]}":
            depth -= 1
