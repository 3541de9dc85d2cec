"""What the codec refuses beyond unsupported types, and the words it uses to say so.

The limits are shared by encoding and decoding. The message builders run only when
something is refused, never on the way to a successful result.
"""

from __future__ import annotations

import re
import sys
from datetime import date, datetime, time, timedelta
from decimal import Decimal
from enum import Enum
from uuid import UUID

# Containers nested deeper than this are refused. This package, json and PostgreSQL all
# recurse per level (a tagged container is two JSON levels, and up to three Python frames
# here), and Python's recursion limit is 1000 frames including the caller's. A fixed, generous
# bound keeps every stored value readable in a process whose stack is already busy.
MAX_DEPTH = 100

# Python refuses to convert ints with more digits than this to or from text by default, so
# json could neither write nor read them back.
INT_DIGITS = sys.int_info.default_max_str_digits

SURROGATE = re.compile("[\ud800-\udfff]")
"""Matches a lone surrogate, which is not valid UTF-8 (so neither jsonb nor a message holds it)."""

_SUPPORTED = (
    "store a dict, list, str, int, float, bool, None or one of: datetime, date, time, "
    "timedelta, Decimal, UUID, set, frozenset, tuple, bytes"
)


def type_name(kind: type) -> str:
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


def describe(value: object) -> str:
    kind = type(value)
    name = type_name(kind)
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


def short(value: object) -> str:
    # Only repr types whose repr is ours and short; never run user code for a message.
    if type(value) in _PLAIN_REPR:
        text = repr(value)
        return text if len(text) <= 60 else text[:57] + "..."
    return f"<{type_name(type(value))}>"


def str_problem(value: str) -> str:
    if "\x00" in value:
        return (
            "a str containing U+0000 (NUL) cannot be stored because PostgreSQL jsonb cannot "
            "hold that character; remove it, or store the data as bytes"
        )
    return (
        "a str containing a lone surrogate (U+D800..U+DFFF) cannot be stored because it is not "
        "valid UTF-8 (it often comes from errors='surrogateescape'); store such data as bytes"
    )


def key_problem(key: object) -> str:
    return (
        f"the dict key {short(key)} is of type {type_name(type(key))}, not str; JSON object keys "
        f"are always strings, so it would come back as a str: convert the keys to str"
    )


def int_problem() -> str:
    return (
        f"an int with more than {INT_DIGITS} digits cannot be stored because Python refuses "
        f"to convert it to or from text by default; store it as a str or bytes"
    )


def float_problem(value: float) -> str:
    return (
        f"the float {value!r} cannot be stored because JSON and PostgreSQL jsonb have no NaN "
        f"or Infinity; store None, or a Decimal if the value must be kept"
    )


def cycle_problem(value: object) -> str:
    return (
        f"this {type(value).__name__} contains itself (a reference cycle), which JSON cannot "
        f"represent; break the cycle before storing"
    )


DEPTH_PROBLEM = (
    f"values nested more than {MAX_DEPTH} containers deep cannot be stored; flatten the data"
)
