"""Turn an admin search term into a filter that an index answers.

Accepted forms:

- an instance id -> the primary key
- ``order_id=123`` -> ``state @> {"context": {"initial": {"order_id": 123}}}``
- ``customer.tier=gold`` -> ``state @> {"context": {"initial": {"customer": {"tier": "gold"}}}}``
- ``{"customer": {"tier": "gold"}}`` -> that object under ``context.initial``
- ``key:order-A-1001`` -> the instances with that business key (its index)
- any other text -> that business key exactly, or the registered workflows whose dotted path
  contains it (case-insensitive), found in the registry, so no query scans the table for a
  substring

The ``state @>`` forms are answered through the GIN index on ``state``. The value after ``=`` is
read as JSON when it is JSON (``123``, ``true``, ``"123"``), else as a plain string, so
``order_id=123`` finds the number and ``order_id="123"`` the string (``NaN`` and ``Infinity``
are not JSON: ``order_id=NaN`` finds the string). Several ``key=value`` terms separated by
spaces must all match.

A term is checked against :mod:`hephaestus_django.admin.limits` before it is parsed; a term that
cannot be searched raises :class:`~hephaestus_django.core.errors.InvalidQueryError` saying why.
"""

from __future__ import annotations

import json
import math
import re
import uuid
from typing import Any

from django.db.models import Q

from hephaestus_django.admin.limits import (
    SEARCH_MAX_CHARS,
    SEARCH_MAX_DEPTH,
    SEARCH_MAX_VALUES,
    check_characters,
    check_length,
    check_nesting,
)
from hephaestus_django.core.errors import InvalidQueryError
from hephaestus_django.core.workflow import workflow_registry
from hephaestus_django.runtime.codec import format_path
from hephaestus_django.runtime.codec.refusals import SURROGATE

_KEY_PATH = re.compile(r"^[A-Za-z_][\w-]*(\.[A-Za-z_][\w-]*)*$")
TERM = "the search term"
KEY_PREFIX = "key:"
"""A search term starting with it is a business key, whatever it looks like (``key:a=b``)."""


def search_filter(term: str) -> Q:
    """The filter for a non-empty search ``term``; InvalidQueryError if it cannot be searched."""
    term = term.strip()
    check_length(term, TERM, SEARCH_MAX_CHARS)
    check_characters(term, TERM)
    try:
        return Q(id=uuid.UUID(term))
    except ValueError:
        pass
    if term.startswith(KEY_PREFIX):
        key = term[len(KEY_PREFIX) :].strip()
        if not key:
            raise InvalidQueryError(f"{KEY_PREFIX} needs the business key after it")
        return Q(business_key=key)
    wanted = context_filter(term)
    if wanted is not None:
        return Q(state__contains=wanted)
    return Q(business_key=term) | Q(workflow__in=matching_workflows(term))


def matching_workflows(text: str) -> list[str]:
    """The registered workflows whose dotted path contains ``text``, ignoring case."""
    folded = text.casefold()
    return [path for path in workflow_registry.names() if folded in path.casefold()]


def context_filter(term: str) -> dict[str, Any] | None:
    """The ``state__contains`` value for ``term``, or None when it is not a context search.

    Raises InvalidQueryError for a context search past the limits, or with a value nothing
    stored can equal (a number beyond a float's range, a NUL or a lone surrogate escaped in
    JSON).
    """
    term = term.strip()
    check_length(term, TERM, SEARCH_MAX_CHARS)
    if term.startswith("{"):
        check_nesting(term, TERM, SEARCH_MAX_DEPTH)
        try:
            wanted = json.loads(term, parse_constant=_not_json)
        except ValueError:
            return None
        if not isinstance(wanted, dict) or not wanted:
            return None
        _check_values(wanted)
        return _under_context(wanted)
    pairs = [_pair(part) for part in term.split()]
    if not pairs or any(pair is None for pair in pairs):
        return None
    merged: dict[str, Any] = {}
    for pair in pairs:
        assert pair is not None
        _merge(merged, pair)
    _check_values(merged)
    return _under_context(merged)


def _pair(part: str) -> dict[str, Any] | None:
    key, sep, raw = part.partition("=")
    if not sep or not _KEY_PATH.match(key) or not raw:
        return None
    names = key.split(".")
    value: Any = raw
    if raw[0] in "[{":  # only these nest; the key path counts towards the depth
        check_nesting(raw, f"the value of {key}", SEARCH_MAX_DEPTH, outer=len(names))
    try:
        value = json.loads(raw, parse_constant=_not_json)
    except ValueError:
        value = raw
    if len(names) > SEARCH_MAX_DEPTH:
        raise InvalidQueryError(
            f"the key path {key} is {len(names)} keys long; the limit is {SEARCH_MAX_DEPTH}"
        )
    for name in reversed(names):
        value = {name: value}
    return value  # type: ignore[no-any-return]


def _not_json(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def _check_values(wanted: dict[str, Any]) -> None:
    """Refuse more than SEARCH_MAX_VALUES values, and values nothing stored can equal."""
    count = _count_values(wanted, "")
    if count > SEARCH_MAX_VALUES:
        raise InvalidQueryError(
            f"{TERM} matches on {count} values; the limit is {SEARCH_MAX_VALUES}: search on "
            "fewer keys"
        )


def _count_values(value: Any, path: str) -> int:
    if isinstance(value, dict) and value:
        total = 0
        for key, item in value.items():
            if "\x00" in key or SURROGATE.search(key):
                check_characters(key, f"the key {format_path(path, key)}")
            total += _count_values(item, format_path(path, key))
        return total
    if isinstance(value, list) and value:
        return sum(_count_values(item, format_path(path, i)) for i, item in enumerate(value))
    if isinstance(value, float) and not math.isfinite(value):
        raise InvalidQueryError(
            f"the number at {path} is beyond the range of a float (it reads as {value}), so no "
            "stored number equals it; search for a smaller number, or quote it to find a string"
        )
    if isinstance(value, str):
        check_characters(value, f"the value at {path}")
    return 1


def _merge(into: dict[str, Any], extra: dict[str, Any]) -> None:
    for key, value in extra.items():
        if isinstance(value, dict) and isinstance(into.get(key), dict):
            _merge(into[key], value)
        else:
            into[key] = value


def _under_context(initial: dict[str, Any]) -> dict[str, Any]:
    return {"context": {"initial": initial}}
