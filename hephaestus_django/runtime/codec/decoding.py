"""The JSON tree -> Python values: :func:`decode`, the inverse of :func:`.encoding.encode`.

It only ever builds the fixed set of types in ``_DECODERS``; a name in the data never selects
a class. Anything ``encode`` could not have written is reported as corrupt, with its path.
"""

from __future__ import annotations

import base64
from collections.abc import Callable
from datetime import date, datetime, time, timedelta
from decimal import Context, Decimal, InvalidOperation, localcontext
from typing import Any
from uuid import UUID
from zoneinfo import ZoneInfo

from hephaestus_django.core.errors import CorruptInstanceError
from hephaestus_django.runtime.codec.encoding import TYPE_KEY
from hephaestus_django.runtime.codec.paths import Failure, Trail, format_trail
from hephaestus_django.runtime.codec.refusals import DEPTH_PROBLEM, MAX_DEPTH, short, type_name

_JSON_SCALARS = frozenset({str, int, float, bool, type(None)})


def _not_json(value: object) -> str:
    if type(value) is float:
        return f"the float {value!r} is not a value encode() writes"
    return f"a value of type {type_name(type(value))} is not JSON"


def _decode_entries(data: dict[Any, Any], trail: Trail, depth: int) -> dict[str, object]:
    if depth >= MAX_DEPTH:
        raise Failure(trail, DEPTH_PROBLEM)
    depth += 1
    out: dict[str, object] = {}
    for key, item in data.items():
        if type(key) is not str:
            raise Failure(trail, f"the object key {short(key)} is not a str")
        kind = type(item)
        if kind is dict:
            # Tagged or not is decided here, not in a helper: one Python frame less per level.
            if TYPE_KEY in item:
                item = _decode_tagged(item, (trail, key), depth)
            else:
                item = _decode_entries(item, (trail, key), depth)
        elif kind is list:
            item = _decode_items(item, (trail, key), depth)
        elif kind not in _JSON_SCALARS or (kind is float and item - item != 0.0):
            raise Failure((trail, key), _not_json(item))
        out[key] = item
    return out


def _decode_items(data: list[Any], trail: Trail, depth: int) -> list[object]:
    if depth >= MAX_DEPTH:
        raise Failure(trail, DEPTH_PROBLEM)
    depth += 1
    out: list[object] = []
    append = out.append
    for index, item in enumerate(data):
        kind = type(item)
        if kind is dict:
            if TYPE_KEY in item:
                item = _decode_tagged(item, (trail, index), depth)
            else:
                item = _decode_entries(item, (trail, index), depth)
        elif kind is list:
            item = _decode_items(item, (trail, index), depth)
        elif kind not in _JSON_SCALARS or (kind is float and item - item != 0.0):
            raise Failure((trail, index), _not_json(item))
        append(item)
    return out


def _decode_any(data: Any, trail: Trail, depth: int) -> object:
    kind = type(data)
    if kind is dict:
        if TYPE_KEY in data:
            return _decode_tagged(data, trail, depth)
        return _decode_entries(data, trail, depth)
    if kind is list:
        return _decode_items(data, trail, depth)
    if kind not in _JSON_SCALARS or (kind is float and data - data != 0.0):
        raise Failure(trail, _not_json(data))
    return data


def _decode_tagged(data: dict[Any, Any], trail: Trail, depth: int) -> object:
    name = data[TYPE_KEY]
    decoder = _DECODERS.get(name) if type(name) is str else None
    if decoder is None:
        raise Failure(trail, f"{TYPE_KEY} is {short(name)}, which is not a type this codec writes")
    if len(data) != 2 or "value" not in data:
        keys = ", ".join(sorted(repr(key) for key in data if type(key) is str))
        raise Failure(
            trail,
            f"a tagged {name} must have exactly the keys {TYPE_KEY!r} and 'value', not {keys}",
        )
    return decoder(data["value"], trail, depth)


def _text(value: object, name: str, trail: Trail) -> str:
    if type(value) is not str:
        raise Failure(trail, f"a tagged {name} needs a str value, not {type_name(type(value))}")
    return value


def _zone(key: str, name: str, trail: Trail) -> ZoneInfo:
    try:
        return ZoneInfo(key)
    except (ValueError, KeyError, OSError):
        raise Failure(trail, f"the {name} names the unknown time zone {key!r}") from None


def _split_zone(text: str, name: str, trail: Trail) -> tuple[str, ZoneInfo | None]:
    if not text.endswith("]"):
        return text, None
    iso, bracket, key = text[:-1].partition("[")
    if not bracket:
        raise Failure(trail, f"the {name} {text!r} has a ']' without a '['")
    return iso, _zone(key, name, trail)


def _unparseable(name: str, text: str) -> str:
    return f"{text!r} is not an ISO 8601 {name}"


def _decode_datetime(value: object, trail: Trail, depth: int) -> datetime:
    iso, zone = _split_zone(_text(value, "datetime", trail), "datetime", trail)
    try:
        moment = datetime.fromisoformat(iso)
    except ValueError:
        raise Failure(trail, _unparseable("datetime", iso)) from None
    if zone is None:
        return moment
    offset = moment.utcoffset()
    if offset is None:
        raise Failure(trail, f"the zoned datetime {iso!r} lacks its UTC offset")
    local = moment.replace(tzinfo=zone)
    if local.utcoffset() != offset:
        # The second occurrence of a wall time in a DST overlap (or the far side of a gap).
        # If neither fold matches, the zone's rules changed since writing: keep the wall time.
        other = local.replace(fold=1)
        if other.utcoffset() == offset:
            return other
    return local


def _decode_time(value: object, trail: Trail, depth: int) -> time:
    iso, zone = _split_zone(_text(value, "time", trail), "time", trail)
    try:
        moment = time.fromisoformat(iso)
    except ValueError:
        raise Failure(trail, _unparseable("time", iso)) from None
    if zone is None:
        return moment
    if moment.tzinfo is not None:
        raise Failure(trail, f"the zoned time {iso!r} must not also carry a UTC offset")
    return moment.replace(tzinfo=zone)


def _decode_date(value: object, trail: Trail, depth: int) -> date:
    text = _text(value, "date", trail)
    try:
        return date.fromisoformat(text)
    except ValueError:
        raise Failure(trail, _unparseable("date", text)) from None


def _decode_timedelta(value: object, trail: Trail, depth: int) -> timedelta:
    if type(value) is not list or len(value) != 3 or any(type(part) is not int for part in value):
        raise Failure(trail, "a tagged timedelta needs [days, seconds, microseconds] as ints")
    days, seconds, microseconds = value
    try:
        return timedelta(days=days, seconds=seconds, microseconds=microseconds)
    except OverflowError:
        raise Failure(trail, f"the timedelta {value!r} is out of range") from None


# Decimal(text) consults the current context to decide whether bad text raises or gives NaN;
# pin a context that raises, whatever the application configured.
_STRICT_DECIMAL = Context(traps=[InvalidOperation])


def _decode_decimal(value: object, trail: Trail, depth: int) -> Decimal:
    text = _text(value, "Decimal", trail)
    try:
        with localcontext(_STRICT_DECIMAL):
            return Decimal(text)
    except InvalidOperation:
        raise Failure(trail, f"{text!r} is not a Decimal") from None


def _decode_uuid(value: object, trail: Trail, depth: int) -> UUID:
    text = _text(value, "UUID", trail)
    try:
        return UUID(text)
    except ValueError:
        raise Failure(trail, f"{text!r} is not a UUID") from None


def _decode_bytes(value: object, trail: Trail, depth: int) -> bytes:
    text = _text(value, "bytes", trail)
    try:
        return base64.b64decode(text, validate=True)
    except ValueError:  # binascii.Error, or non-ASCII text
        raise Failure(trail, "the bytes value is not valid base64") from None


def _list(value: object, name: str, trail: Trail) -> list[Any]:
    if type(value) is not list:
        raise Failure(trail, f"a tagged {name} needs a list value, not {type_name(type(value))}")
    return value


def _decode_tuple(value: object, trail: Trail, depth: int) -> tuple[object, ...]:
    return tuple(_decode_items(_list(value, "tuple", trail), trail, depth))


def _decode_set(value: object, trail: Trail, depth: int) -> set[object]:
    elements = _decode_items(_list(value, "set", trail), trail, depth)
    try:
        result = set(elements)
    except TypeError:
        raise Failure(trail, "a set element is unhashable (a list, dict or set)") from None
    if len(result) != len(elements):
        raise Failure(trail, "the set lists an element twice")
    return result


def _decode_frozenset(value: object, trail: Trail, depth: int) -> frozenset[object]:
    elements = _decode_items(_list(value, "frozenset", trail), trail, depth)
    try:
        result = frozenset(elements)
    except TypeError:
        raise Failure(trail, "a frozenset element is unhashable (a list, dict or set)") from None
    if len(result) != len(elements):
        raise Failure(trail, "the frozenset lists an element twice")
    return result


def _decode_escaped_dict(value: object, trail: Trail, depth: int) -> dict[str, object]:
    if type(value) is not dict:
        raise Failure(trail, f"a tagged dict needs a dict value, not {type_name(type(value))}")
    return _decode_entries(value, trail, depth)


_DECODERS: dict[str, Callable[[object, Trail, int], object]] = {
    "datetime": _decode_datetime,
    "date": _decode_date,
    "time": _decode_time,
    "timedelta": _decode_timedelta,
    "Decimal": _decode_decimal,
    "UUID": _decode_uuid,
    "bytes": _decode_bytes,
    "tuple": _decode_tuple,
    "set": _decode_set,
    "frozenset": _decode_frozenset,
    "dict": _decode_escaped_dict,
}


def is_plain(text: str) -> bool:
    """Whether :func:`decode` would give back ``loads(text)`` unchanged, so it can be skipped.

    True when the JSON text has nothing for :func:`decode` to rebuild or refuse: no tagged
    value (no ``"__type__"``, and no ``\\u`` escape that could spell one), no ``NaN`` or
    ``Infinity`` token, and at most :data:`MAX_DEPTH` containers in all (so none is nested
    deeper). Brackets or words inside strings only make it answer False, never wrongly True.
    Costs a few ``str`` scans in C, against a walk of the whole tree in Python.
    """
    return (
        TYPE_KEY not in text
        and "\\u" not in text
        and "NaN" not in text
        and "Infinity" not in text
        and text.count("{") + text.count("[") <= MAX_DEPTH
    )


def is_plain_jsonb(text: str, loaded: object) -> bool:
    """:func:`is_plain` for text PostgreSQL printed from a ``jsonb`` value, and what it loads to.

    jsonb holds no ``NaN`` or ``Infinity`` (JSON has none), and PostgreSQL prints strings and
    keys with escapes only for quotes, backslashes and control characters, so an escape in its
    output never spells ``"__type__"``: the key of a tagged dict is always there as it is. What
    is left is the nesting limit. Short text with at most :data:`MAX_DEPTH` containers in all
    is within it; a longer state (a workflow with a long history) is measured on ``loaded``
    (``loads(text)``), which visits only the containers and costs less than half of the
    decoding it saves. Counting brackets costs about a microsecond a kilobyte, so text beyond
    :data:`_COUNTED_CHARS`, which mostly has more than the limit's containers anyway, goes
    straight to the measure. Every read of the storage goes through this, once per row.
    """
    if TYPE_KEY in text:
        return False
    if len(text) <= _COUNTED_CHARS and text.count("{") + text.count("[") <= MAX_DEPTH:
        return True
    return _nested_at_most(loaded, MAX_DEPTH)


_COUNTED_CHARS = 8192


def _nested_at_most(value: object, limit: int) -> bool:
    """Whether no path into ``value`` goes through more than ``limit`` containers."""
    if type(value) is dict:
        children: Any = value.values()
    elif type(value) is list:
        children = value
    else:
        return True
    if limit <= 0:
        return False
    for child in children:
        kind = type(child)
        if (kind is dict or kind is list) and not _nested_at_most(child, limit - 1):
            return False
    return True


def decode(data: object, *, path: str = "", instance_id: object = None) -> object:
    """Rebuild the value :func:`encode` turned into ``data``.

    Raises :class:`CorruptInstanceError` for anything ``encode`` could not have written:
    a malformed tagged dict (unknown name, wrong keys, a value of the wrong type, text that
    does not parse, an unknown time zone), a non-JSON value, NaN or Infinity. Alternative
    spellings the parsers accept unambiguously (``"Z"`` for ``+00:00``, a UUID without
    hyphens) are read as such. ``path`` and ``instance_id`` only label the error.
    """
    try:
        return _decode_any(data, None, 0)
    except Failure as failure:
        raise CorruptInstanceError(
            instance_id if instance_id is not None else "(unknown)",
            format_trail(path, failure.trail) or "value",
            failure.problem,
        ) from None
