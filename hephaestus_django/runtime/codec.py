"""Turn workflow values into JSON that PostgreSQL jsonb keeps, and turn that JSON back.

The storage promise is: whatever ``put()`` accepts, ``get()`` returns equal and of the same
type, and whatever cannot make that trip is refused before anything is written, with the path
of the offending value. This module is where that promise is kept, in plain Python so that the
in-memory storage, the PostgreSQL storage and the Django JSON field all share one set of rules.

* :func:`encode` keeps JSON-native values as they are (so ``state @> '{...}'`` containment
  queries and GIN indexes work on them) and writes the few other types users need as a tagged
  dict ``{"__type__": NAME, "value": ...}``. It refuses everything else.
* :func:`decode` is its inverse. It only ever builds the fixed set of types below; a name in
  the data never selects a class.
* :func:`dumps` writes the text PostgreSQL stores. jsonb keeps numbers as ``numeric`` and
  prints them without an exponent, so a float written as ``1e+16`` would come back as the int
  ``10000000000000000``; ``dumps`` writes such floats positionally (``10000000000000000.0``).
* :func:`loads` reads text back.

Tagged forms (``NAME``: ``value``)::

    datetime   "2024-03-31T02:30:00+02:00[Europe/Paris]"  ISO 8601; a ZoneInfo key in brackets
    date       "2024-03-31"
    time       "10:30:00+01:00" or "10:30:00[Europe/Paris]"
    timedelta  [days, seconds, microseconds]
    Decimal    str(value), e.g. "-1.50E+3", "NaN", "-Infinity"
    UUID       "12345678-1234-5678-1234-567812345678"
    bytes      standard base64 with padding
    tuple      [element, ...]
    set        [element, ...] sorted by each encoded element's dumps() text, so equal sets
    frozenset  are stored as equal JSON
    dict       {...}  a user dict that itself has a "__type__" key, escaped

Paths name a value the way Python would reach it: ``context.initial.items[3].price``, with
``["order id"]`` for keys that are not identifiers. A tuple's elements are ``name[i]``. A set
has no order a user could point at, so :func:`encode` reports a bad set element at the set's
own path, and the message says it is an element (and where inside that element, if deeper).
:func:`decode` reports ``name[i]``, counting in the stored (sorted) list, where it does exist.

Besides values of other types, :func:`encode` refuses what would not come back intact: float
NaN and infinities, non-str dict keys, strings with U+0000 or lone surrogates, ints of more
than 4300 digits, reference cycles, nesting deeper than 100 containers, and datetimes or
times whose tzinfo is neither ``ZoneInfo`` (with a key) nor ``timezone`` (in whole seconds).
A ``timezone``'s optional name is not kept; it takes no part in equality.
"""

from __future__ import annotations

import base64
import json
import re
import sys
from collections.abc import Callable
from datetime import date, datetime, time, timedelta, timezone
from decimal import Context, Decimal, InvalidOperation, localcontext
from enum import Enum
from typing import Any, TypeAlias
from uuid import UUID
from zoneinfo import ZoneInfo

from hephaestus_django.core.errors import CorruptInstanceError, SerializationError

__all__ = ["JSON", "TYPE_KEY", "decode", "dumps", "encode", "format_path", "loads"]

JSON: TypeAlias = bool | int | float | str | list["JSON"] | dict[str, "JSON"] | None
"""A value ``json`` and PostgreSQL jsonb represent natively."""

TYPE_KEY = "__type__"
"""The key that marks a tagged dict written by :func:`encode`."""

# Containers nested deeper than this are refused. This module, json and PostgreSQL all
# recurse per level (a tagged container is two JSON levels, and up to three Python frames
# here), and Python's recursion limit is 1000 frames including the caller's. A fixed, generous
# bound keeps every stored value readable in a process whose stack is already busy.
_MAX_DEPTH = 100

# Python refuses to convert ints with more digits than this to or from text by default, so
# json could neither write nor read them back.
_INT_DIGITS = sys.int_info.default_max_str_digits
_INT_LIMIT = 10**_INT_DIGITS

_SURROGATE = re.compile("[\ud800-\udfff]")

_SUPPORTED = (
    "store a dict, list, str, int, float, bool, None or one of: datetime, date, time, "
    "timedelta, Decimal, UUID, set, frozenset, tuple, bytes"
)

# A linked list of keys from the root to the current value, newest first. Building one tuple
# per container entry is cheaper than formatting a path string that is almost never needed.
_Trail: TypeAlias = "tuple[_Trail, str | int] | None"


class _Failure(Exception):
    """Carries a refusal out of the recursion; the public functions turn it into an error."""

    def __init__(self, trail: _Trail, problem: str) -> None:
        super().__init__(problem)
        self.trail = trail
        self.problem = problem


# --------------------------------------------------------------------------------------------
# Paths


def format_path(parent: str, key: str | int) -> str:
    """Append one key or list index to a path, the way it would be written in Python.

    ``format_path("context", "initial") == "context.initial"``,
    ``format_path("context.initial", "order id") == 'context.initial["order id"]'`` and
    ``format_path("items", 3) == "items[3]"``. Used for every path in error messages so that
    all layers name values alike.
    """
    if isinstance(key, str):
        if key.isidentifier():
            return f"{parent}.{key}" if parent else key
        # A key with a lone surrogate is shown escaped so the message itself stays printable.
        quoted = json.dumps(key, ensure_ascii=_SURROGATE.search(key) is not None)
        return f"{parent}[{quoted}]"
    return f"{parent}[{key}]"


def _format_trail(prefix: str, trail: _Trail) -> str:
    keys: list[str | int] = []
    while trail is not None:
        trail, key = trail
        keys.append(key)
    path = prefix
    for key in reversed(keys):
        path = format_path(path, key)
    return path


# --------------------------------------------------------------------------------------------
# Messages for refused values (only built when something is refused)


def _type_name(kind: type) -> str:
    if kind.__module__ == "builtins":
        return kind.__qualname__
    return f"{kind.__module__}.{kind.__qualname__}"


# Subclasses of these are refused because they would come back as the base type. Order
# matters: datetime is a subclass of date.
_BASES: tuple[type, ...] = (
    datetime,
    date,
    time,
    timedelta,
    Decimal,
    UUID,
    str,
    int,
    float,
    dict,
    list,
    tuple,
    set,
    frozenset,
    bytes,
)


def _describe(value: object) -> str:
    kind = type(value)
    name = _type_name(kind)
    if isinstance(value, Enum):
        return (
            f"{name}.{value.name} is an enum member, which would come back as a plain value; "
            f"store its .value (or .name) and rebuild the member after reading"
        )
    for base in _BASES:
        if isinstance(value, base):
            base_name = base.__name__
            return (
                f"a value of type {name} is a subclass of {base_name} and would come back as a "
                f"plain {base_name}; convert it with {base_name}(...) before storing it"
            )
    if kind is bytearray or kind is memoryview:
        return f"a {name} would come back as bytes; store bytes(value) instead"
    return f"a value of type {name} has no JSON form; {_SUPPORTED}"


_PLAIN_REPR = (int, float, bool, type(None), bytes, Decimal, UUID, date, time, timedelta)


def _short(value: object) -> str:
    # Only repr types whose repr is ours and short; never run user code for a message.
    if type(value) in _PLAIN_REPR:
        text = repr(value)
        return text if len(text) <= 60 else text[:57] + "..."
    return f"<{_type_name(type(value))}>"


def _str_problem(value: str) -> str:
    if "\x00" in value:
        return (
            "a str containing U+0000 (NUL) cannot be stored because PostgreSQL jsonb cannot "
            "hold that character; remove it, or store the data as bytes"
        )
    return (
        "a str containing a lone surrogate (U+D800..U+DFFF) cannot be stored because it is not "
        "valid UTF-8 (it often comes from errors='surrogateescape'); store such data as bytes"
    )


def _key_problem(key: object) -> str:
    return (
        f"the dict key {_short(key)} is of type {_type_name(type(key))}, not str; JSON object keys "
        f"are always strings, so it would come back as a str: convert the keys to str"
    )


def _int_problem() -> str:
    return (
        f"an int with more than {_INT_DIGITS} digits cannot be stored because Python refuses "
        f"to convert it to or from text by default; store it as a str or bytes"
    )


def _float_problem(value: float) -> str:
    return (
        f"the float {value!r} cannot be stored because JSON and PostgreSQL jsonb have no NaN "
        f"or Infinity; store None, or a Decimal if the value must be kept"
    )


def _cycle_problem(value: object) -> str:
    return (
        f"this {type(value).__name__} contains itself (a reference cycle), which JSON cannot "
        f"represent; break the cycle before storing"
    )


_DEPTH_PROBLEM = (
    f"values nested more than {_MAX_DEPTH} containers deep cannot be stored; flatten the data"
)


# --------------------------------------------------------------------------------------------
# Encoding


def _enter(value: object, trail: _Trail, active: set[int]) -> int:
    """Mark a container as being encoded; refuse cycles and excessive depth."""
    marker = id(value)
    if marker in active:
        raise _Failure(trail, _cycle_problem(value))
    if len(active) >= _MAX_DEPTH:
        raise _Failure(trail, _DEPTH_PROBLEM)
    active.add(marker)
    return marker


def _encode_dict(value: dict[Any, Any], trail: _Trail, active: set[int]) -> JSON:
    marker = _enter(value, trail, active)
    out: dict[str, JSON] = {}
    # The scalar checks below are repeated in _encode_items and the scalar handlers on
    # purpose: this loop runs for every stored value, and a call per scalar is costly.
    for key, item in value.items():
        if type(key) is not str:
            raise _Failure(trail, _key_problem(key))
        if "\x00" in key or (not key.isascii() and _SURROGATE.search(key) is not None):
            raise _Failure((trail, key), "its key is " + _str_problem(key))
        kind = type(item)
        if kind is str:
            if "\x00" in item or (not item.isascii() and _SURROGATE.search(item) is not None):
                raise _Failure((trail, key), _str_problem(item))
        elif kind is int:
            if not -_INT_LIMIT < item < _INT_LIMIT:
                raise _Failure((trail, key), _int_problem())
        elif kind is float:
            if item - item != 0.0:  # true only for NaN and the infinities
                raise _Failure((trail, key), _float_problem(item))
        elif kind is not bool and item is not None:
            handler = _ENCODERS.get(kind)
            if handler is None:
                raise _Failure((trail, key), _describe(item))
            item = handler(item, (trail, key), active)
        out[key] = item
    active.discard(marker)
    if TYPE_KEY in out:
        return {TYPE_KEY: "dict", "value": out}
    return out


def _encode_items(
    value: list[Any] | tuple[Any, ...], trail: _Trail, active: set[int]
) -> list[JSON]:
    marker = _enter(value, trail, active)
    out: list[JSON] = []
    append = out.append
    for index, item in enumerate(value):
        kind = type(item)
        if kind is str:
            if "\x00" in item or (not item.isascii() and _SURROGATE.search(item) is not None):
                raise _Failure((trail, index), _str_problem(item))
        elif kind is int:
            if not -_INT_LIMIT < item < _INT_LIMIT:
                raise _Failure((trail, index), _int_problem())
        elif kind is float:
            if item - item != 0.0:
                raise _Failure((trail, index), _float_problem(item))
        elif kind is not bool and item is not None:
            handler = _ENCODERS.get(kind)
            if handler is None:
                raise _Failure((trail, index), _describe(item))
            item = handler(item, (trail, index), active)
        append(item)
    active.discard(marker)
    return out


def _encode_str(value: str, trail: _Trail, active: set[int]) -> JSON:
    if "\x00" in value or (not value.isascii() and _SURROGATE.search(value) is not None):
        raise _Failure(trail, _str_problem(value))
    return value


def _encode_int(value: int, trail: _Trail, active: set[int]) -> JSON:
    if not -_INT_LIMIT < value < _INT_LIMIT:
        raise _Failure(trail, _int_problem())
    return value


def _encode_float(value: float, trail: _Trail, active: set[int]) -> JSON:
    if value - value != 0.0:
        raise _Failure(trail, _float_problem(value))
    return value


def _encode_same(value: bool | None, trail: _Trail, active: set[int]) -> JSON:
    return value


def _encode_any(value: object, trail: _Trail, active: set[int]) -> JSON:
    handler = _ENCODERS.get(type(value))
    if handler is None:
        raise _Failure(trail, _describe(value))
    return handler(value, trail, active)


def _zone_suffix(value: datetime | time, trail: _Trail) -> str:
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
            raise _Failure(
                trail,
                f"a {type(value).__name__} whose UTC offset has a fraction of a second cannot "
                f"be stored; round the offset to whole seconds",
            )
        return ""
    if type(tz) is ZoneInfo:
        if tz.key is None:
            raise _Failure(
                trail,
                f"a {type(value).__name__} whose ZoneInfo has no key (it was loaded from a "
                f"file) cannot be stored; use ZoneInfo(key)",
            )
        return f"[{tz.key}]"
    raise _Failure(
        trail,
        f"a {type(value).__name__} with a tzinfo of type {_type_name(type(tz))} cannot be "
        f"stored because it would not come back as the same type; convert it to a "
        f"zoneinfo.ZoneInfo or a datetime.timezone first",
    )


def _encode_datetime(value: datetime, trail: _Trail, active: set[int]) -> JSON:
    # The offset is always written (it pins the instant, and the fold inside a DST overlap);
    # the zone key, if any, follows in brackets as in RFC 9557.
    return {TYPE_KEY: "datetime", "value": value.isoformat() + _zone_suffix(value, trail)}


def _encode_time(value: time, trail: _Trail, active: set[int]) -> JSON:
    suffix = _zone_suffix(value, trail)
    if suffix:
        # A zone has no offset without a date (though ZoneInfo("UTC") reports one): store
        # the wall time and the key only.
        return {TYPE_KEY: "time", "value": value.replace(tzinfo=None).isoformat() + suffix}
    return {TYPE_KEY: "time", "value": value.isoformat()}


def _encode_date(value: date, trail: _Trail, active: set[int]) -> JSON:
    return {TYPE_KEY: "date", "value": value.isoformat()}


def _encode_timedelta(value: timedelta, trail: _Trail, active: set[int]) -> JSON:
    return {TYPE_KEY: "timedelta", "value": [value.days, value.seconds, value.microseconds]}


def _encode_decimal(value: Decimal, trail: _Trail, active: set[int]) -> JSON:
    return {TYPE_KEY: "Decimal", "value": str(value)}


def _encode_uuid(value: UUID, trail: _Trail, active: set[int]) -> JSON:
    return {TYPE_KEY: "UUID", "value": str(value)}


def _encode_bytes(value: bytes, trail: _Trail, active: set[int]) -> JSON:
    return {TYPE_KEY: "bytes", "value": base64.b64encode(value).decode("ascii")}


def _encode_tuple(value: tuple[Any, ...], trail: _Trail, active: set[int]) -> JSON:
    return {TYPE_KEY: "tuple", "value": _encode_items(value, trail, active)}


def _encode_set(value: set[Any] | frozenset[Any], trail: _Trail, active: set[int]) -> JSON:
    marker = _enter(value, trail, active)
    elements: list[JSON] = []
    for element in value:
        try:
            elements.append(_encode_any(element, None, active))
        except _Failure as failure:
            inner = _format_trail("", failure.trail)
            where = f" (at {inner} inside it)" if inner else ""
            problem = f"an element of this {type(value).__name__}{where}: {failure.problem}"
            raise _Failure(trail, problem) from None
    active.discard(marker)
    elements.sort(key=dumps)
    return {TYPE_KEY: type(value).__name__, "value": elements}


_ENCODERS: dict[type, Callable[[Any, _Trail, set[int]], JSON]] = {
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


def encode(value: object, *, path: str = "", instance_id: UUID | None = None) -> JSON:
    """Return the JSON form of ``value``, or raise :class:`SerializationError`.

    ``path`` names ``value`` in error messages (``"context.initial"``); errors inside it get
    ``.items[3].price``-style suffixes, and a bad root value with no path is called
    ``"value"``. Types are matched exactly, so subclasses (``StrEnum``, ``OrderedDict``,
    ``namedtuple``...) are refused instead of silently coming back as their base type.
    Equal values shared at several places are stored at each place and come back as separate
    (equal) objects. Values are never converted through their own methods: no ``__repr__``,
    ``__str__`` or ``utcoffset`` of a user class runs while encoding.
    """
    try:
        return _encode_any(value, None, set())
    except _Failure as failure:
        where = _format_trail(path, failure.trail) or "value"
        raise SerializationError(where, failure.problem, instance_id=instance_id) from None


# --------------------------------------------------------------------------------------------
# Decoding

_JSON_SCALARS = frozenset({str, int, float, bool, type(None)})


def _not_json(value: object) -> str:
    if type(value) is float:
        return f"the float {value!r} is not a value encode() writes"
    return f"a value of type {_type_name(type(value))} is not JSON"


def _decode_entries(data: dict[Any, Any], trail: _Trail, depth: int) -> dict[str, object]:
    if depth >= _MAX_DEPTH:
        raise _Failure(trail, _DEPTH_PROBLEM)
    depth += 1
    out: dict[str, object] = {}
    for key, item in data.items():
        if type(key) is not str:
            raise _Failure(trail, f"the object key {_short(key)} is not a str")
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
            raise _Failure((trail, key), _not_json(item))
        out[key] = item
    return out


def _decode_items(data: list[Any], trail: _Trail, depth: int) -> list[object]:
    if depth >= _MAX_DEPTH:
        raise _Failure(trail, _DEPTH_PROBLEM)
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
            raise _Failure((trail, index), _not_json(item))
        append(item)
    return out


def _decode_any(data: Any, trail: _Trail, depth: int) -> object:
    kind = type(data)
    if kind is dict:
        if TYPE_KEY in data:
            return _decode_tagged(data, trail, depth)
        return _decode_entries(data, trail, depth)
    if kind is list:
        return _decode_items(data, trail, depth)
    if kind not in _JSON_SCALARS or (kind is float and data - data != 0.0):
        raise _Failure(trail, _not_json(data))
    return data


def _decode_tagged(data: dict[Any, Any], trail: _Trail, depth: int) -> object:
    name = data[TYPE_KEY]
    decoder = _DECODERS.get(name) if type(name) is str else None
    if decoder is None:
        raise _Failure(
            trail, f"{TYPE_KEY} is {_short(name)}, which is not a type this codec writes"
        )
    if len(data) != 2 or "value" not in data:
        keys = ", ".join(sorted(repr(key) for key in data if type(key) is str))
        raise _Failure(
            trail,
            f"a tagged {name} must have exactly the keys {TYPE_KEY!r} and 'value', not {keys}",
        )
    return decoder(data["value"], trail, depth)


def _text(value: object, name: str, trail: _Trail) -> str:
    if type(value) is not str:
        raise _Failure(trail, f"a tagged {name} needs a str value, not {_type_name(type(value))}")
    return value


def _zone(key: str, name: str, trail: _Trail) -> ZoneInfo:
    try:
        return ZoneInfo(key)
    except (ValueError, KeyError, OSError):
        raise _Failure(trail, f"the {name} names the unknown time zone {key!r}") from None


def _split_zone(text: str, name: str, trail: _Trail) -> tuple[str, ZoneInfo | None]:
    if not text.endswith("]"):
        return text, None
    iso, bracket, key = text[:-1].partition("[")
    if not bracket:
        raise _Failure(trail, f"the {name} {text!r} has a ']' without a '['")
    return iso, _zone(key, name, trail)


def _unparseable(name: str, text: str) -> str:
    return f"{text!r} is not an ISO 8601 {name}"


def _decode_datetime(value: object, trail: _Trail, depth: int) -> datetime:
    iso, zone = _split_zone(_text(value, "datetime", trail), "datetime", trail)
    try:
        moment = datetime.fromisoformat(iso)
    except ValueError:
        raise _Failure(trail, _unparseable("datetime", iso)) from None
    if zone is None:
        return moment
    offset = moment.utcoffset()
    if offset is None:
        raise _Failure(trail, f"the zoned datetime {iso!r} lacks its UTC offset")
    local = moment.replace(tzinfo=zone)
    if local.utcoffset() != offset:
        # The second occurrence of a wall time in a DST overlap (or the far side of a gap).
        # If neither fold matches, the zone's rules changed since writing: keep the wall time.
        other = local.replace(fold=1)
        if other.utcoffset() == offset:
            return other
    return local


def _decode_time(value: object, trail: _Trail, depth: int) -> time:
    iso, zone = _split_zone(_text(value, "time", trail), "time", trail)
    try:
        moment = time.fromisoformat(iso)
    except ValueError:
        raise _Failure(trail, _unparseable("time", iso)) from None
    if zone is None:
        return moment
    if moment.tzinfo is not None:
        raise _Failure(trail, f"the zoned time {iso!r} must not also carry a UTC offset")
    return moment.replace(tzinfo=zone)


def _decode_date(value: object, trail: _Trail, depth: int) -> date:
    text = _text(value, "date", trail)
    try:
        return date.fromisoformat(text)
    except ValueError:
        raise _Failure(trail, _unparseable("date", text)) from None


def _decode_timedelta(value: object, trail: _Trail, depth: int) -> timedelta:
    if type(value) is not list or len(value) != 3 or any(type(part) is not int for part in value):
        raise _Failure(trail, "a tagged timedelta needs [days, seconds, microseconds] as ints")
    days, seconds, microseconds = value
    try:
        return timedelta(days=days, seconds=seconds, microseconds=microseconds)
    except OverflowError:
        raise _Failure(trail, f"the timedelta {value!r} is out of range") from None


# Decimal(text) consults the current context to decide whether bad text raises or gives NaN;
# pin a context that raises, whatever the application configured.
_STRICT_DECIMAL = Context(traps=[InvalidOperation])


def _decode_decimal(value: object, trail: _Trail, depth: int) -> Decimal:
    text = _text(value, "Decimal", trail)
    try:
        with localcontext(_STRICT_DECIMAL):
            return Decimal(text)
    except InvalidOperation:
        raise _Failure(trail, f"{text!r} is not a Decimal") from None


def _decode_uuid(value: object, trail: _Trail, depth: int) -> UUID:
    text = _text(value, "UUID", trail)
    try:
        return UUID(text)
    except ValueError:
        raise _Failure(trail, f"{text!r} is not a UUID") from None


def _decode_bytes(value: object, trail: _Trail, depth: int) -> bytes:
    text = _text(value, "bytes", trail)
    try:
        return base64.b64decode(text, validate=True)
    except ValueError:  # binascii.Error, or non-ASCII text
        raise _Failure(trail, "the bytes value is not valid base64") from None


def _list(value: object, name: str, trail: _Trail) -> list[Any]:
    if type(value) is not list:
        raise _Failure(trail, f"a tagged {name} needs a list value, not {_type_name(type(value))}")
    return value


def _decode_tuple(value: object, trail: _Trail, depth: int) -> tuple[object, ...]:
    return tuple(_decode_items(_list(value, "tuple", trail), trail, depth))


def _decode_set(value: object, trail: _Trail, depth: int) -> set[object]:
    elements = _decode_items(_list(value, "set", trail), trail, depth)
    try:
        result = set(elements)
    except TypeError:
        raise _Failure(trail, "a set element is unhashable (a list, dict or set)") from None
    if len(result) != len(elements):
        raise _Failure(trail, "the set lists an element twice")
    return result


def _decode_frozenset(value: object, trail: _Trail, depth: int) -> frozenset[object]:
    elements = _decode_items(_list(value, "frozenset", trail), trail, depth)
    try:
        result = frozenset(elements)
    except TypeError:
        raise _Failure(trail, "a frozenset element is unhashable (a list, dict or set)") from None
    if len(result) != len(elements):
        raise _Failure(trail, "the frozenset lists an element twice")
    return result


def _decode_escaped_dict(value: object, trail: _Trail, depth: int) -> dict[str, object]:
    if type(value) is not dict:
        raise _Failure(trail, f"a tagged dict needs a dict value, not {_type_name(type(value))}")
    return _decode_entries(value, trail, depth)


_DECODERS: dict[str, Callable[[object, _Trail, int], object]] = {
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
    except _Failure as failure:
        raise CorruptInstanceError(
            instance_id if instance_id is not None else "(unknown)",
            _format_trail(path, failure.trail) or "value",
            failure.problem,
        ) from None


# --------------------------------------------------------------------------------------------
# Text

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
