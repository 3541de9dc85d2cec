"""Turn an admin search term into a ``state @> ...`` containment filter on the context.

Accepted forms, all answered through the GIN index on ``state``:

- ``order_id=123`` -> ``{"context": {"initial": {"order_id": 123}}}``
- ``customer.tier=gold`` -> ``{"context": {"initial": {"customer": {"tier": "gold"}}}}``
- ``{"customer": {"tier": "gold"}}`` -> that object under ``context.initial``

The value after ``=`` is read as JSON when it is JSON (``123``, ``true``,
``"123"``), else as a plain string, so ``order_id=123`` finds the number and
``order_id="123"`` the string. Several ``key=value`` terms separated by spaces
must all match.
"""

from __future__ import annotations

import json
import re
from typing import Any

_KEY_PATH = re.compile(r"^[A-Za-z_][\w-]*(\.[A-Za-z_][\w-]*)*$")


def context_filter(term: str) -> dict[str, Any] | None:
    """The ``state__contains`` value for ``term``, or None when it is not a context search."""
    term = term.strip()
    if term.startswith("{"):
        try:
            wanted = json.loads(term)
        except ValueError:
            return None
        return _under_context(wanted) if isinstance(wanted, dict) and wanted else None
    pairs = [_pair(part) for part in term.split()]
    if not pairs or any(pair is None for pair in pairs):
        return None
    merged: dict[str, Any] = {}
    for pair in pairs:
        assert pair is not None
        _merge(merged, pair)
    return _under_context(merged)


def _pair(part: str) -> dict[str, Any] | None:
    key, sep, raw = part.partition("=")
    if not sep or not _KEY_PATH.match(key) or not raw:
        return None
    try:
        value: Any = json.loads(raw)
    except ValueError:
        value = raw
    for name in reversed(key.split(".")):
        value = {name: value}
    return value  # type: ignore[no-any-return]


def _merge(into: dict[str, Any], extra: dict[str, Any]) -> None:
    for key, value in extra.items():
        if isinstance(value, dict) and isinstance(into.get(key), dict):
            _merge(into[key], value)
        else:
            into[key] = value


def _under_context(initial: dict[str, Any]) -> dict[str, Any]:
    return {"context": {"initial": initial}}
