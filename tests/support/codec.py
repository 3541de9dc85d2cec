"""The codec's strict equality (``assert_same``) and hypothesis strategies of the values it
stores: the unit tests round-trip them in memory, the integration tests through PostgreSQL."""

from __future__ import annotations

import math
from datetime import UTC, datetime, time, timedelta, timezone
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

from hypothesis import strategies as st

from hephaestus_django.runtime.codec import TYPE_KEY, format_path


def assert_same(
    expected: Any, actual: Any, where: str = "value", *, zero_sign: bool = True
) -> None:
    """Assert equal values whose every nested value also has exactly the same type."""
    assert type(actual) is type(expected), f"{where}: {type(actual)} is not {type(expected)}"
    kind = type(expected)
    if kind is dict:
        assert actual.keys() == expected.keys(), where
        for key, item in expected.items():
            assert_same(item, actual[key], format_path(where, key), zero_sign=zero_sign)
    elif kind in (list, tuple):
        assert len(actual) == len(expected), where
        for index, (item, other) in enumerate(zip(expected, actual, strict=True)):
            assert_same(item, other, format_path(where, index), zero_sign=zero_sign)
    elif kind in (set, frozenset):
        assert len(actual) == len(expected), where
        for item in expected:
            matches = [other for other in actual if other == item]
            assert len(matches) == 1, f"{where}: {item!r} not found once in {actual!r}"
            assert_same(item, matches[0], f"{where} element", zero_sign=zero_sign)
    elif kind is float:
        assert actual == expected, where
        if zero_sign:
            assert math.copysign(1.0, actual) == math.copysign(1.0, expected), where
    elif kind is Decimal:
        assert str(actual) == str(expected), where  # exact: digits, exponent, sign, NaN forms
    elif kind in (datetime, time):
        assert actual == expected, where
        assert actual.replace(tzinfo=None) == expected.replace(tzinfo=None), where  # wall clock
        assert type(actual.tzinfo) is type(expected.tzinfo), where
        if type(expected.tzinfo) is ZoneInfo:
            assert actual.tzinfo.key == expected.tzinfo.key, where
        assert actual.utcoffset() == expected.utcoffset(), where
    else:
        assert actual == expected, where


# --- strategies -----------------------------------------------------------------------------

texts = st.text(st.characters(exclude_categories=("Cs",), exclude_characters="\x00"))
keys = texts | st.sampled_from([TYPE_KEY, "value", "order id", "", "é"])
ints = st.integers() | st.integers(min_value=-(10**400), max_value=10**400)
floats = st.floats(allow_nan=False, allow_infinity=False)
# Offsets with a fraction of a second are refused (see test_refused_values_name_their_path).
fixed_offsets = st.integers(min_value=-86399, max_value=86399).map(
    lambda seconds: timezone(timedelta(seconds=seconds))
)
tzinfos = st.none() | st.just(UTC) | fixed_offsets | st.timezones()
# Aware datetimes at the very ends of the range cannot be hashed (their UTC form overflows),
# so sets get a narrower range.
safe_datetimes = st.datetimes(
    min_value=datetime(2, 1, 1), max_value=datetime(9998, 12, 31), timezones=tzinfos
)
decimals = st.decimals(allow_nan=False)

hashable_scalars = (
    st.none()
    | st.booleans()
    | ints
    | floats
    | texts
    | safe_datetimes
    | st.dates()
    | st.times(timezones=tzinfos)
    | st.timedeltas()
    | decimals
    | st.uuids()
    | st.binary()
)
scalars = hashable_scalars | st.datetimes(timezones=tzinfos)
hashables = st.recursive(
    hashable_scalars,
    lambda inner: st.lists(inner, max_size=3).map(tuple) | st.frozensets(inner, max_size=3),
    max_leaves=6,
)
values = st.recursive(
    scalars,
    lambda inner: (
        st.lists(inner, max_size=4)
        | st.dictionaries(keys, inner, max_size=4)
        | st.lists(inner, max_size=3).map(tuple)
        | st.sets(hashables, max_size=3)
        | st.frozensets(hashables, max_size=3)
    ),
    max_leaves=20,
)
json_native = st.recursive(
    st.none() | st.booleans() | ints | floats | texts,
    lambda inner: (
        st.lists(inner, max_size=4)
        | st.dictionaries(texts.filter(lambda key: key != TYPE_KEY), inner, max_size=4)
    ),
    max_leaves=20,
)
