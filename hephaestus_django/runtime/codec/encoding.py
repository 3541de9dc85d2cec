"""Python values -> the JSON tree: :func:`encode` and a handler per supported type.

Types are matched exactly, through a dict from type to handler; anything else is refused
with the path of the offending value (see :mod:`.refusals` for the wording).
"""

from __future__ import annotations

import base64
from collections.abc import Callable
from datetime import date, datetime, time, timedelta, timezone
from decimal import Decimal
from typing import Any
from uuid import UUID
from zoneinfo import ZoneInfo

from hephaestus_django.core.errors import SerializationError
from hephaestus_django.runtime.codec.paths import Failure, Trail, format_trail
from hephaestus_django.runtime.codec.refusals import (
    DEPTH_PROBLEM,
    INT_DIGITS,
    MAX_DEPTH,
    SURROGATE,
    cycle_problem,
    describe,
    float_problem,
    int_problem,
    key_problem,
    str_problem,
    type_name,
)
from hephaestus_django.runtime.codec.text import JSON, dumps

TYPE_KEY = "__type__"
"""The key that marks a tagged dict written by :func:`encode`."""

# Ints at or beyond this magnitude have more than INT_DIGITS digits.
_INT_LIMIT = 10**INT_DIGITS


def _enter(value: object, trail: Trail, active: set[int]) -> int:
    """Mark a container as being encoded; refuse cycles and excessive depth."""
    marker = id(value)
    if marker in active:
        raise Failure(trail, cycle_problem(value))
    if len(active) >= MAX_DEPTH:
        raise Failure(trail, DEPTH_PROBLEM)
    active.add(marker)
    return marker


def _encode_dict(value: dict[Any, Any], trail: Trail, active: set[int]) -> JSON:
    # _enter, inlined: this runs for every dict of every stored value, several per write.
    marker = id(value)
    if marker in active or len(active) >= MAX_DEPTH:
        _enter(value, trail, active)  # raises
    active.add(marker)
    # Copy on write: the dict itself is returned unless an item encodes to another object;
    # the copy is made at the first such item, and only changed items are assigned in it.
    out: dict[str, JSON] | None = None
    # The scalar checks below are repeated in _encode_items and the scalar handlers on
    # purpose: this loop runs for every stored value, and a call per scalar is costly.
    for key, item in value.items():
        if type(key) is not str:
            raise Failure(trail, key_problem(key))
        if "\x00" in key or (not key.isascii() and SURROGATE.search(key) is not None):
            raise Failure((trail, key), "its key is " + str_problem(key))
        kind = type(item)
        if kind is str:
            if "\x00" in item or (not item.isascii() and SURROGATE.search(item) is not None):
                raise Failure((trail, key), str_problem(item))
        elif kind is int:
            if not -_INT_LIMIT < item < _INT_LIMIT:
                raise Failure((trail, key), int_problem())
        elif kind is float:
            if item - item != 0.0:  # true only for NaN and the infinities
                raise Failure((trail, key), float_problem(item))
        elif kind is not bool and item is not None:
            handler = _ENCODERS.get(kind)
            if handler is None:
                raise Failure((trail, key), describe(item))
            encoded = handler(item, (trail, key), active)
            if encoded is not item:
                if out is None:
                    out = dict(value)
                out[key] = encoded
    active.discard(marker)
    result = value if out is None else out
    if TYPE_KEY in value:
        return {TYPE_KEY: "dict", "value": result}
    return result


def _encode_items(value: list[Any] | tuple[Any, ...], trail: Trail, active: set[int]) -> list[JSON]:
    """Encode a list or a tuple's elements; a tuple always gives a new list.

    Copy on write, as in :func:`_encode_dict`: a list whose elements all encode to
    themselves is returned as it is.
    """
    marker = id(value)  # _enter, inlined as in _encode_dict
    if marker in active or len(active) >= MAX_DEPTH:
        _enter(value, trail, active)  # raises
    active.add(marker)
    out: list[JSON] | None = None
    for index, item in enumerate(value):
        kind = type(item)
        if kind is str:
            if "\x00" in item or (not item.isascii() and SURROGATE.search(item) is not None):
                raise Failure((trail, index), str_problem(item))
        elif kind is int:
            if not -_INT_LIMIT < item < _INT_LIMIT:
                raise Failure((trail, index), int_problem())
        elif kind is float:
            if item - item != 0.0:
                raise Failure((trail, index), float_problem(item))
        elif kind is not bool and item is not None:
            handler = _ENCODERS.get(kind)
            if handler is None:
                raise Failure((trail, index), describe(item))
            encoded = handler(item, (trail, index), active)
            if encoded is not item:
                if out is None:
                    out = list(value)
                out[index] = encoded
    active.discard(marker)
    if out is not None:
        return out
    return value if type(value) is list else list(value)


def _encode_str(value: str, trail: Trail, active: set[int]) -> JSON:
    if "\x00" in value or (not value.isascii() and SURROGATE.search(value) is not None):
        raise Failure(trail, str_problem(value))
    return value


def _encode_int(value: int, trail: Trail, active: set[int]) -> JSON:
    if not -_INT_LIMIT < value < _INT_LIMIT:
        raise Failure(trail, int_problem())
    return value


def _encode_float(value: float, trail: Trail, active: set[int]) -> JSON:
    if value - value != 0.0:
        raise Failure(trail, float_problem(value))
    return value


def _encode_same(value: bool | None, trail: Trail, active: set[int]) -> JSON:
    return value


def _encode_any(value: object, trail: Trail, active: set[int]) -> JSON:
    handler = _ENCODERS.get(type(value))
    if handler is None:
        raise Failure(trail, describe(value))
    return handler(value, trail, active)


def _zone_suffix(value: datetime | time, trail: Trail) -> str:
    """Return "" for naive or fixed-offset values, "[key]" for a ZoneInfo; refuse the rest.

    Only these tzinfo types are rebuilt as the same type on reading. A fixed offset is
    written by isoformat() itself; a timezone's optional name is not kept (it does not take
    part in equality).
    """
    tz = value.tzinfo
    if tz is None:
        return ""
    if type(tz) is timezone:
        # fromisoformat() reads back e.g. "+00:00:00.000001" as +00:00 (seen on CPython
        # 3.11), so offsets with a fraction of a second are refused; real ones never have it.
        if tz.utcoffset(None) % timedelta(seconds=1):
            raise Failure(
                trail,
                f"a {type(value).__name__} whose UTC offset has a fraction of a second cannot "
                f"be stored; round the offset to whole seconds",
            )
        return ""
    if type(tz) is ZoneInfo:
        if tz.key is None:
            raise Failure(
                trail,
                f"a {type(value).__name__} whose ZoneInfo has no key (it was loaded from a "
                f"file) cannot be stored; use ZoneInfo(key)",
            )
        return f"[{tz.key}]"
    raise Failure(
        trail,
        f"a {type(value).__name__} with a tzinfo of type {type_name(type(tz))} cannot be "
        f"stored because it would not come back as the same type; convert it to a "
        f"zoneinfo.ZoneInfo or a datetime.timezone first",
    )


def _encode_datetime(value: datetime, trail: Trail, active: set[int]) -> JSON:
    # The offset is always written (it pins the instant, and the fold inside a DST overlap);
    # the zone key, if any, follows in brackets as in RFC 9557.
    return {TYPE_KEY: "datetime", "value": value.isoformat() + _zone_suffix(value, trail)}


def _encode_time(value: time, trail: Trail, active: set[int]) -> JSON:
    suffix = _zone_suffix(value, trail)
    if suffix:
        # A zone has no offset without a date (though ZoneInfo("UTC") reports one): store
        # the wall time and the key only.
        return {TYPE_KEY: "time", "value": value.replace(tzinfo=None).isoformat() + suffix}
    return {TYPE_KEY: "time", "value": value.isoformat()}


def _encode_date(value: date, trail: Trail, active: set[int]) -> JSON:
    return {TYPE_KEY: "date", "value": value.isoformat()}


def _encode_timedelta(value: timedelta, trail: Trail, active: set[int]) -> JSON:
    return {TYPE_KEY: "timedelta", "value": [value.days, value.seconds, value.microseconds]}


def _encode_decimal(value: Decimal, trail: Trail, active: set[int]) -> JSON:
    return {TYPE_KEY: "Decimal", "value": str(value)}


def _encode_uuid(value: UUID, trail: Trail, active: set[int]) -> JSON:
    return {TYPE_KEY: "UUID", "value": str(value)}


def _encode_bytes(value: bytes, trail: Trail, active: set[int]) -> JSON:
    return {TYPE_KEY: "bytes", "value": base64.b64encode(value).decode("ascii")}


def _encode_tuple(value: tuple[Any, ...], trail: Trail, active: set[int]) -> JSON:
    return {TYPE_KEY: "tuple", "value": _encode_items(value, trail, active)}


def _encode_set(value: set[Any] | frozenset[Any], trail: Trail, active: set[int]) -> JSON:
    marker = _enter(value, trail, active)
    elements: list[JSON] = []
    for element in value:
        try:
            elements.append(_encode_any(element, None, active))
        except Failure as failure:
            inner = format_trail("", failure.trail)
            where = f" (at {inner} inside it)" if inner else ""
            problem = f"an element of this {type(value).__name__}{where}: {failure.problem}"
            raise Failure(trail, problem) from None
    active.discard(marker)
    elements.sort(key=dumps)
    return {TYPE_KEY: type(value).__name__, "value": elements}


# The containers that will enclose a value, counted as placeholders in the set of open ones:
# negative numbers, never the id() of an object, so they are never mistaken for a cycle.
_ENCLOSING = tuple(frozenset(range(-depth, 0)) for depth in range(MAX_DEPTH + 1))

_ENCODERS: dict[type, Callable[[Any, Trail, set[int]], JSON]] = {
    str: _encode_str,
    int: _encode_int,
    float: _encode_float,
    bool: _encode_same,
    type(None): _encode_same,
    dict: _encode_dict,
    list: _encode_items,
    tuple: _encode_tuple,
    set: _encode_set,
    frozenset: _encode_set,
    datetime: _encode_datetime,
    date: _encode_date,
    time: _encode_time,
    timedelta: _encode_timedelta,
    Decimal: _encode_decimal,
    UUID: _encode_uuid,
    bytes: _encode_bytes,
}


def encode(
    value: object, *, path: str = "", instance_id: UUID | None = None, depth: int = 0
) -> JSON:
    """Return the JSON form of ``value``, or raise :class:`SerializationError`.

    ``path`` names ``value`` in error messages (``"context.initial"``); errors inside it get
    ``.items[3].price``-style suffixes, and a bad root value with no path is called
    ``"value"``. ``depth`` is how many containers will enclose ``value`` in the document it is
    written into: the nesting limit counts from that document's root, as reading it does.
    Types are matched exactly, so subclasses (``StrEnum``, ``OrderedDict``, ``namedtuple``...)
    are refused instead of silently coming back as their base type.
    Equal values shared at several places are stored at each place and come back as separate
    (equal) objects. Values are never converted through their own methods: no ``__repr__``,
    ``__str__`` or ``utcoffset`` of a user class runs while encoding.

    Nothing is copied that encoding leaves unchanged: a JSON-native ``value`` is returned
    itself, and a dict or list whose items all encode to themselves is shared with the
    result, which is only new along the paths to values that were tagged. So the result must
    be treated as read-only (mutating it may mutate ``value``), and it reflects later changes
    to ``value``: write it out (:func:`dumps`) before ``value`` changes. ``value`` itself is
    never modified.
    """
    active = set(_ENCLOSING[min(depth, MAX_DEPTH)]) if depth > 0 else set()
    try:
        return _encode_any(value, None, active)
    except Failure as failure:
        where = format_trail(path, failure.trail) or "value"
        raise SerializationError(where, failure.problem, instance_id=instance_id) from None
