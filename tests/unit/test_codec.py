"""The codec keeps the storage promise: equal and same-typed back, or refused with a path.

No database here: PostgreSQL's way of printing jsonb numbers is simulated by
``postgres_reprint`` (a real-PostgreSQL round trip lives with the storage tests).
"""

from __future__ import annotations

import copy
import functools
import io
import json
import math
import zoneinfo
from collections import OrderedDict
from datetime import UTC, date, datetime, time, timedelta, timezone, tzinfo
from decimal import Decimal, InvalidOperation, localcontext
from enum import IntEnum, StrEnum
from pathlib import Path
from typing import Any, NamedTuple, cast
from uuid import UUID
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given
from hypothesis import strategies as st

from hephaestus_django.core.errors import CorruptInstanceError, SerializationError
from hephaestus_django.runtime.codec import (
    TYPE_KEY,
    decode,
    dumps,
    dumps_encoded,
    encode,
    format_path,
    is_plain,
    is_plain_jsonb,
    loads,
)
from hephaestus_django.runtime.codec.refusals import MAX_DEPTH
from hephaestus_django.serialization import HephaestusJSONDecoder, HephaestusJSONEncoder
from tests.support.codec import assert_same, floats, hashables, json_native, values

# --------------------------------------------------------------------------------------------
# Helpers


def postgres_reprint(text: str) -> str:
    """Print JSON text the way PostgreSQL prints it back from a jsonb column.

    jsonb keeps numbers as numeric: no exponent, the scale as written, no negative zero.
    Object keys come back ordered by length, then bytes.
    """

    def show(value: Any) -> str:
        if type(value) is Decimal:
            if value.is_zero():
                value = value.copy_abs()
            return format(value, "f")
        if type(value) is dict:
            items = sorted(value.items(), key=lambda kv: (len(kv[0].encode()), kv[0].encode()))
            return "{" + ", ".join(f"{json.dumps(k)}: {show(v)}" for k, v in items) + "}"
        if type(value) is list:
            return "[" + ", ".join(show(v) for v in value) + "]"
        return json.dumps(value)

    return show(json.loads(text, parse_float=Decimal))


# --------------------------------------------------------------------------------------------
# Round trips


@given(values)
def test_round_trip_keeps_values_and_types(value: Any) -> None:
    text = dumps(encode(value))
    assert_same(value, decode(loads(text)))
    assert_same(value, decode(loads(text.encode("utf-8"))))


@given(values)
def test_round_trip_through_json_encoder_and_decoder_classes(value: Any) -> None:
    text = json.dumps(value, cls=HephaestusJSONEncoder)
    assert text == dumps(encode(value))
    assert_same(value, json.loads(text, cls=HephaestusJSONDecoder))
    assert_same(value, json.loads(text.encode("utf-8"), cls=HephaestusJSONDecoder))


@given(values)
def test_round_trip_survives_postgresql_number_printing(value: Any) -> None:
    text = postgres_reprint(dumps(encode(value)))
    # jsonb has no negative zero: -0.0 comes back as 0.0, equal and still a float.
    assert_same(value, decode(loads(text)), zero_sign=False)


@given(json_native)
def test_json_native_values_are_stored_as_they_are(value: Any) -> None:
    encoded = encode(value)
    assert_same(value, encoded)
    assert json.loads(dumps(encoded)) == value


@given(values)
def test_decoding_is_skipped_only_where_it_changes_nothing(value: Any) -> None:
    text = postgres_reprint(dumps(encode(value)))
    if is_plain(text):
        assert_same(decode(loads(text)), loads(text))


@given(json_native)
def test_small_json_native_documents_skip_decoding(value: Any) -> None:
    text = dumps(encode(value))
    containers = text.count("{") + text.count("[")
    if "\\u" not in text and "NaN" not in text and "Infinity" not in text:
        assert is_plain(text) is (containers <= MAX_DEPTH)


@pytest.mark.parametrize(
    ("text", "plain"),
    [
        ('{"order_id": 123, "items": [{"sku": "A-1", "price": 9.5}], "ok": true}', True),
        ('{"due": {"__type__": "date", "value": "2026-12-24"}}', False),
        ('{"\\u005f_type__": "date", "value": "2026-12-24"}', False),  # an escaped tag
        ('{"note": "\\u00e9t\\u00e9"}', False),  # any escape: the slow path decides
        ('{"x": NaN}', False),
        ('{"x": -Infinity}', False),
        ('{"word": "NaN is not a number"}', False),  # harmless, only slower
        ("[" * MAX_DEPTH + "]" * MAX_DEPTH, True),
        ("[" * (MAX_DEPTH + 1) + "]" * (MAX_DEPTH + 1), False),
    ],
)
def test_is_plain(text: str, plain: bool) -> None:
    assert is_plain(text) is plain
    if plain:
        assert_same(decode(loads(text)), loads(text))


@pytest.mark.parametrize("depth", [MAX_DEPTH - 1, MAX_DEPTH, MAX_DEPTH + 1])
@pytest.mark.parametrize("siblings", [0, MAX_DEPTH])
@pytest.mark.parametrize("note", ["", "x" * 10_000])  # long text is measured, not counted
def test_plain_jsonb_text_keeps_the_nesting_limit(depth: int, siblings: int, note: str) -> None:
    value = {
        "padding": [{"n": [i]} for i in range(siblings)],
        "deep": _nested_lists(depth),
        "note": note,
    }
    text = postgres_reprint(json.dumps(value))
    within = depth + 1 <= MAX_DEPTH  # the outer dict is a container too
    assert is_plain_jsonb(text, loads(text)) is within
    if within:
        assert_same(decode(loads(text)), loads(text))
    else:
        with pytest.raises(CorruptInstanceError):
            decode(loads(text))


def test_plain_jsonb_text_has_no_tagged_value() -> None:
    text = postgres_reprint('{"due": {"__type__": "date", "value": "2026-12-24"}}')
    assert not is_plain_jsonb(text, loads(text))
    assert is_plain_jsonb("[]", [])
    assert is_plain_jsonb("1", 1)


# Deeper than json parses on any supported Python (3.13 parses up to about 9,000 levels).
@pytest.mark.parametrize("text", ["[" * 100_000 + "]" * 100_000, b"[" * 100_000 + b"]" * 100_000])
def test_text_nested_too_deep_to_parse_is_a_json_error(text: str | bytes) -> None:
    with pytest.raises(json.JSONDecodeError, match="nested too deep to read"):
        loads(text)


def test_text_that_is_not_plain_still_decodes_or_is_refused() -> None:
    assert decode(loads('{"\\u005f_type__": "date", "value": "2026-12-24"}')) == date(2026, 12, 24)
    with pytest.raises(CorruptInstanceError):
        decode(loads('{"x": NaN}'))
    with pytest.raises(CorruptInstanceError):
        decode(loads("[" * (MAX_DEPTH + 1) + "]" * (MAX_DEPTH + 1)))


@given(st.frozensets(hashables, max_size=6))
def test_sets_are_stored_in_a_deterministic_order(value: frozenset[Any]) -> None:
    encoded = encode(value)
    assert isinstance(encoded, dict)
    elements = encoded["value"]
    assert isinstance(elements, list)
    assert [dumps(element) for element in elements] == sorted(dumps(e) for e in elements)
    rebuilt = frozenset(reversed(list(value)))
    assert dumps(encode(rebuilt)) == dumps(encoded)


def test_tagged_forms_are_readable() -> None:
    paris = ZoneInfo("Europe/Paris")
    value = {
        "at": datetime(2024, 3, 1, 10, 30, tzinfo=paris),
        "fixed": datetime(2024, 3, 1, 10, 30, tzinfo=timezone(timedelta(hours=-5))),
        "naive": datetime(2024, 3, 1, 10, 30),
        "day": date(2024, 3, 1),
        "alarm": time(7, 0, tzinfo=paris),
        "wait": timedelta(days=-1, seconds=5, microseconds=7),
        "price": Decimal("-1.50E+3"),
        "id": UUID(int=1),
        "raw": b"hi",
        "pair": (1, "a"),
        "tags": {"b", "a"},
        "frozen": frozenset({2, 1}),
    }
    assert encode(value) == {
        "at": {TYPE_KEY: "datetime", "value": "2024-03-01T10:30:00+01:00[Europe/Paris]"},
        "fixed": {TYPE_KEY: "datetime", "value": "2024-03-01T10:30:00-05:00"},
        "naive": {TYPE_KEY: "datetime", "value": "2024-03-01T10:30:00"},
        "day": {TYPE_KEY: "date", "value": "2024-03-01"},
        "alarm": {TYPE_KEY: "time", "value": "07:00:00[Europe/Paris]"},
        "wait": {TYPE_KEY: "timedelta", "value": [-1, 5, 7]},
        "price": {TYPE_KEY: "Decimal", "value": "-1.50E+3"},
        "id": {TYPE_KEY: "UUID", "value": "00000000-0000-0000-0000-000000000001"},
        "raw": {TYPE_KEY: "bytes", "value": "aGk="},
        "pair": {TYPE_KEY: "tuple", "value": [1, "a"]},
        "tags": {TYPE_KEY: "set", "value": ["a", "b"]},
        "frozen": {TYPE_KEY: "frozenset", "value": [1, 2]},
    }


def test_dict_with_type_key_round_trips() -> None:
    value = {TYPE_KEY: "datetime", "value": "2024-01-01", "other": {TYPE_KEY: 1}}
    encoded = encode(value)
    assert encoded == {
        TYPE_KEY: "dict",
        "value": {
            TYPE_KEY: "datetime",
            "value": "2024-01-01",
            "other": {TYPE_KEY: "dict", "value": {TYPE_KEY: 1}},
        },
    }
    assert_same(value, decode(loads(dumps(encoded))))


@pytest.mark.parametrize(
    "value",
    [Decimal("NaN"), Decimal("-NaN"), Decimal("sNaN"), Decimal("NaN123"), Decimal("-Infinity")],
    ids=str,
)
def test_decimal_special_values_round_trip_exactly(value: Decimal) -> None:
    assert str(decode(loads(dumps(encode(value))))) == str(value)


@pytest.mark.parametrize("fold", [0, 1])
@pytest.mark.parametrize(
    "wall",
    [datetime(2024, 10, 27, 2, 30), datetime(2024, 3, 31, 2, 30)],  # Paris: overlap, gap
    ids=["overlap", "gap"],
)
def test_zoned_datetime_keeps_its_offset_in_dst_transitions(wall: datetime, fold: int) -> None:
    value = wall.replace(tzinfo=ZoneInfo("Europe/Paris"), fold=fold)
    result = decode(loads(dumps(encode(value))))
    assert_same(value, result)
    assert isinstance(result, datetime)
    assert result.fold == fold


def test_zoned_datetime_keeps_wall_time_when_zone_rules_disagree_with_stored_offset() -> None:
    # As if the tz database changed after writing: the written offset matches no fold.
    stored = {TYPE_KEY: "datetime", "value": "2024-06-01T12:00:00+05:00[Europe/Paris]"}
    assert decode(stored) == datetime(2024, 6, 1, 12, 0, tzinfo=ZoneInfo("Europe/Paris"))


def test_named_fixed_offset_comes_back_as_equal_unnamed_fixed_offset() -> None:
    value = datetime(2024, 1, 1, tzinfo=timezone(timedelta(hours=-5), "EST"))
    result = decode(encode(value))
    assert isinstance(result, datetime)
    assert result == value
    assert result.tzinfo == timezone(timedelta(hours=-5))  # the name is not kept


def test_utc_comes_back_as_the_utc_singleton() -> None:
    result = decode(encode(datetime(2024, 1, 1, tzinfo=UTC)))
    assert isinstance(result, datetime)
    assert result.tzinfo is UTC


def test_largest_int_python_can_print_round_trips() -> None:
    value = 10**4300 - 1
    assert_same(value, decode(loads(dumps(encode(value)))))


def _with_busy_stack(frames: int, action: Any) -> Any:
    """Run ``action`` with ``frames`` more Python frames on the stack, like a deep caller."""
    if frames == 0:
        return action()
    return _with_busy_stack(frames - 1, action)


@pytest.mark.parametrize(
    "wrap",
    [list, tuple, frozenset, lambda inner: {TYPE_KEY: inner}, lambda inner: {"k": inner}],
    ids=["list", "tuple", "frozenset", "escaped-dict", "dict"],
)
def test_values_nested_up_to_the_limit_round_trip_with_a_busy_stack(wrap: Any) -> None:
    value: Any = "leaf"
    for _ in range(100):
        value = wrap([value]) if wrap in (list, tuple, frozenset) else wrap(value)

    def round_trip() -> Any:
        text = json.dumps(value, cls=HephaestusJSONEncoder)
        return json.loads(text, cls=HephaestusJSONDecoder)

    assert_same(value, _with_busy_stack(400, round_trip))


def test_shared_references_are_stored_twice_and_come_back_equal() -> None:
    shared = [1, 2]
    result = decode(encode({"a": shared, "b": shared}))
    assert result == {"a": [1, 2], "b": [1, 2]}


# --------------------------------------------------------------------------------------------
# Refused values


class Color(StrEnum):
    RED = "red"


class Level(IntEnum):
    HIGH = 3


class Thing:
    pass


class OddZone(tzinfo):
    def utcoffset(self, dt: datetime | None) -> timedelta:
        return timedelta(hours=1)


class MyDatetime(datetime):
    pass


class Point(NamedTuple):
    x: int
    y: int


def _recursive_list() -> list[Any]:
    items: list[Any] = [1]
    items.append(items)
    return items


def _recursive_dict() -> dict[str, Any]:
    mapping: dict[str, Any] = {}
    mapping["self"] = mapping
    return mapping


def _nested_lists(depth: int) -> list[Any]:
    value: list[Any] = []
    for _ in range(depth - 1):
        value = [value]
    return value


REFUSED = [
    pytest.param(
        {"items": [{"price": 1}, {"price": object()}]},
        "context.initial",
        "context.initial.items[1].price",
        "value of type object has no JSON form",
        id="object-deep",
    ),
    pytest.param(object(), "", "value", "has no JSON form", id="object-root"),
    pytest.param([1, Thing()], "", "[1]", f"{__name__}.Thing has no JSON form", id="root-list"),
    pytest.param(
        {"order id": Thing()},
        "context.initial",
        'context.initial["order id"]',
        "no JSON form",
        id="non-identifier-key",
    ),
    pytest.param(float("nan"), "", "value", "NaN", id="nan-root"),
    pytest.param({"x": [1.0, float("inf")]}, "", "x[1]", "Infinity", id="inf"),
    pytest.param({"x": {"y": -math.inf}}, "p", "p.x.y", "Infinity", id="minus-inf"),
    pytest.param({"counts": {1: "a"}}, "c", "c.counts", "dict key 1 is of type int", id="int-key"),
    pytest.param({"m": {None: 1}}, "", "m", "dict key None", id="none-key"),
    pytest.param({"m": {(1, 2): 1}}, "", "m", "dict key <tuple> is of type tuple", id="tuple-key"),
    pytest.param({"note": "a\x00b"}, "", "note", "U+0000", id="nul-value"),
    pytest.param({"a\x00": 1}, "", '["a\\u0000"]', "key is a str containing U+0000", id="nul-key"),
    pytest.param({"s": ["ok", "x\ud800"]}, "", "s[1]", "lone surrogate", id="surrogate-value"),
    pytest.param({"\udc80": 1}, "", '["\\udc80"]', "lone surrogate", id="surrogate-key"),
    pytest.param({"color": Color.RED}, "", "color", "Color.RED is an enum member", id="strenum"),
    pytest.param({"level": Level.HIGH}, "", "level", "enum member", id="intenum"),
    pytest.param({"o": OrderedDict(a=1)}, "", "o", "subclass of dict", id="ordereddict"),
    pytest.param({"p": Point(1, 2)}, "", "p", "subclass of tuple", id="namedtuple"),
    pytest.param({"w": MyDatetime(2024, 1, 1)}, "", "w", "subclass of datetime", id="dt-subclass"),
    pytest.param({"b": bytearray(b"x")}, "", "b", "store bytes(value)", id="bytearray"),
    pytest.param({"b": memoryview(b"x")}, "", "b", "store bytes(value)", id="memoryview"),
    pytest.param({"l": _recursive_list()}, "", "l[1]", "list contains itself", id="cycle-list"),
    pytest.param(_recursive_dict(), "ctx", "ctx.self", "dict contains itself", id="cycle-dict"),
    pytest.param({"tags": {1, Thing()}}, "", "tags", "an element of this set: ", id="set"),
    pytest.param(
        {"f": frozenset({(1, Thing())})},
        "",
        "f",
        "an element of this frozenset (at [1] inside it): ",
        id="frozenset-nested",
    ),
    pytest.param({"t": (1, (2, Thing()))}, "", "t[1][1]", "no JSON form", id="tuple"),
    pytest.param(
        {"when": datetime(2024, 1, 1, tzinfo=OddZone())},
        "",
        "when",
        f"tzinfo of type {__name__}.OddZone",
        id="foreign-tzinfo",
    ),
    pytest.param({"at": time(1, tzinfo=OddZone())}, "", "at", "time with a tzinfo", id="time-tz"),
    pytest.param(
        {"at": time(1, tzinfo=timezone(timedelta(microseconds=1)))},
        "",
        "at",
        "fraction of a second",
        id="sub-second-offset",
    ),
    pytest.param({"n": -(10**4300)}, "", "n", "more than 4300 digits", id="huge-int"),
    pytest.param({"n": [10**5000]}, "", "n[0]", "more than 4300 digits", id="huge-int-list"),
    pytest.param({"deep": _nested_lists(100)}, "", "deep" + "[0]" * 99, "nested", id="depth"),
]


@pytest.mark.parametrize(("value", "path", "expected_path", "problem"), REFUSED)
def test_refused_values_name_their_path(
    value: object, path: str, expected_path: str, problem: str
) -> None:
    with pytest.raises(SerializationError) as caught:
        encode(value, path=path)
    assert caught.value.path == expected_path
    assert problem in caught.value.problem
    assert str(caught.value).startswith(f"cannot store {expected_path}: ")


def test_refusal_names_the_instance() -> None:
    instance_id = UUID(int=7)
    with pytest.raises(SerializationError, match=str(instance_id)) as caught:
        encode({"x": object()}, path="context", instance_id=instance_id)
    assert caught.value.instance_id == instance_id
    assert caught.value.path == "context.x"


def test_zoneinfo_without_key_is_refused() -> None:
    files = [Path(root, "Europe", "Paris") for root in zoneinfo.TZPATH]
    existing = [file for file in files if file.is_file()]
    if not existing:
        pytest.skip("no system time zone files")
    with existing[0].open("rb") as handle:
        keyless = ZoneInfo.from_file(handle)
    with pytest.raises(SerializationError, match="has no key") as caught:
        encode({"at": datetime(2024, 1, 1, tzinfo=keyless)})
    assert caught.value.path == "at"


def test_encode_does_not_change_its_input() -> None:
    value = {TYPE_KEY: "x", "items": [{"at": date(2024, 1, 1)}], "tags": {"a"}}
    snapshot = repr(value)
    encode(value)
    assert repr(value) == snapshot


# --------------------------------------------------------------------------------------------
# Copy on write: encode copies only the containers on the way to a value it had to tag


def _is_native(value: Any) -> bool:
    """JSON all the way down, with no dict that has the reserved key: encodes to itself."""
    kind = type(value)
    if kind is dict:
        return TYPE_KEY not in value and all(_is_native(item) for item in value.values())
    if kind is list:
        return all(_is_native(item) for item in value)
    return kind in (str, int, float, bool, type(None))


def assert_copied_only_where_changed(value: Any, encoded: Any, where: str = "value") -> None:
    """Each dict and list of ``value`` is in ``encoded`` itself unless something in it changed."""
    kind = type(value)
    if kind is tuple:
        elements = encoded["value"]
        assert type(elements) is list, where
        for index, (item, other) in enumerate(zip(value, elements, strict=True)):
            assert_copied_only_where_changed(item, other, format_path(where, index))
        return
    if kind is not dict and kind is not list:
        return
    assert (encoded is value) is _is_native(value), where
    if kind is dict and TYPE_KEY in value:
        encoded = encoded["value"]
        assert (encoded is value) is all(_is_native(item) for item in value.values()), where
    pairs = value.items() if kind is dict else enumerate(value)
    for key, item in pairs:
        assert_copied_only_where_changed(item, encoded[key], format_path(where, key))


@pytest.mark.parametrize(
    "value",
    [
        {},
        [],
        {"a": [1, {"b": None, "c": [True, -0.0, "é"]}], "n": 10**4299, "s": ""},
        [[[]], {"": {"value": "x"}}, [1.5, [2, [3]]]],
        _nested_lists(MAX_DEPTH),
    ],
    ids=["empty-dict", "empty-list", "dict", "list", "deepest"],
)
def test_json_native_value_is_returned_itself(value: Any) -> None:
    snapshot = copy.deepcopy(value)
    assert encode(value) is value
    assert_same(snapshot, value)


@pytest.mark.parametrize("depth", [0, 1, 3, MAX_DEPTH - 1])
def test_depth_counts_the_containers_that_will_enclose_the_value(depth: int) -> None:
    deepest = _nested_lists(MAX_DEPTH - depth)
    assert encode(deepest, depth=depth) is deepest
    with pytest.raises(SerializationError, match=f"nested more than {MAX_DEPTH}") as caught:
        encode([deepest], path="context.initial", depth=depth)
    assert caught.value.path == "context.initial" + "[0]" * (MAX_DEPTH - depth)
    # The enclosing containers are no object of the value's: nothing is taken for a cycle.
    shared: list[Any] = [1]
    assert encode([shared, [shared]], depth=min(depth, MAX_DEPTH - 3))[1][0] is shared


def test_at_the_depth_limit_only_scalars_are_stored() -> None:
    assert encode("text", depth=MAX_DEPTH) == "text"
    for container in ({}, []):
        with pytest.raises(SerializationError, match="nested more than"):
            encode(container, depth=MAX_DEPTH)
    with pytest.raises(SerializationError, match="nested more than"):
        encode([], depth=MAX_DEPTH + 5)


@given(json_native)
def test_json_native_values_are_returned_themselves(value: Any) -> None:
    assert encode(value) is value


@given(values)
def test_encode_copies_only_containers_that_change_and_never_its_input(value: Any) -> None:
    snapshot = copy.deepcopy(value)
    encoded = encode(value)
    assert_same(snapshot, value)
    assert_copied_only_where_changed(value, encoded)
    assert dumps(encoded) == dumps(encode(snapshot))


def test_tagged_value_copies_its_path_and_shares_its_siblings() -> None:
    value: dict[str, Any] = {
        "before": {"x": [1, 2]},
        "context": {
            "items": [{"k": 1}, {"k": 2, "due": date(2024, 1, 2), "after": [3]}, {"k": 3}],
            "sibling": {"y": [4]},
        },
        "after": ["z"],
    }
    snapshot = copy.deepcopy(value)
    encoded = encode(value)
    assert isinstance(encoded, dict)
    assert encoded == {
        "before": {"x": [1, 2]},
        "context": {
            "items": [
                {"k": 1},
                {"k": 2, "due": {TYPE_KEY: "date", "value": "2024-01-02"}, "after": [3]},
                {"k": 3},
            ],
            "sibling": {"y": [4]},
        },
        "after": ["z"],
    }
    assert_same(snapshot, value)  # the date is still in the input, not its tagged form
    context, items = value["context"], value["context"]["items"]
    out_context = encoded["context"]
    assert isinstance(out_context, dict)
    out_items = out_context["items"]
    assert isinstance(out_items, list)
    # New along the path to the date...
    assert encoded is not value
    assert out_context is not context
    assert out_items is not items
    assert out_items[1] is not items[1]
    # ...shared everywhere else, before and after it.
    assert encoded["before"] is value["before"]
    assert encoded["after"] is value["after"]
    assert out_context["sibling"] is context["sibling"]
    assert out_items[0] is items[0]
    assert out_items[2] is items[2]
    assert isinstance(out_items[1], dict)
    assert out_items[1]["after"] is items[1]["after"]
    assert_same(value, decode(loads(dumps(encoded))))


def test_tuple_is_always_a_new_list_sharing_its_unchanged_elements() -> None:
    inner = [1, {"a": 2}]
    value = (inner, "x")
    encoded = encode(value)
    assert isinstance(encoded, dict)
    elements = encoded["value"]
    assert type(elements) is list
    assert elements[0] is inner
    assert_same(value, decode(encoded))  # decode refuses a tuple where a list must be


@pytest.mark.parametrize(
    "value",
    [
        {TYPE_KEY: "date", "value": "2024-01-01", "list": [1]},
        {TYPE_KEY: "date", "value": date(2024, 1, 1), "list": [1]},
        {TYPE_KEY: 1, "value": {TYPE_KEY: 2}, "list": [(1,)]},
        [{"ok": 1}, {TYPE_KEY: None}, {"ok": 2}],
    ],
    ids=["unchanged-items", "changed-item", "nested", "in-list"],
)
def test_dict_with_type_key_is_escaped_and_round_trips(value: Any) -> None:
    snapshot = copy.deepcopy(value)
    encoded = encode(value)
    assert_same(snapshot, value)
    assert_copied_only_where_changed(value, encoded)
    escaped = encoded if type(value) is dict else encoded[1]  # type: ignore[index]
    assert isinstance(escaped, dict)
    assert escaped.keys() == {TYPE_KEY, "value"}
    assert escaped[TYPE_KEY] == "dict"
    assert_same(value, decode(loads(dumps(encoded))))


def test_containers_left_as_they_are_are_no_longer_counted_as_open() -> None:
    shared = [1, {"k": "v"}]
    siblings = [[index] for index in range(2 * MAX_DEPTH)]
    value = {"a": shared, "b": shared, "siblings": siblings, "deep": _nested_lists(MAX_DEPTH - 2)}
    assert encode(value) is value  # no cycle reported for shared, no depth for the siblings
    value["when"] = date(2024, 1, 1)
    encoded = encode(value)
    assert isinstance(encoded, dict)
    assert encoded["a"] is encoded["b"] is shared


def _cycle_after(*items: Any) -> list[Any]:
    value = list(items)
    value.append(value)
    return value


@pytest.mark.parametrize(
    ("value", "expected_path", "problem"),
    [
        pytest.param(
            {"a": [1], "b": {"c": 2}, "bad": Color.RED}, "bad", "enum", id="after-unchanged"
        ),
        pytest.param(
            {"a": date(2024, 1, 1), "b": [1], "bad": "x\x00"}, "bad", "U+0000", id="after-changed"
        ),
        pytest.param(
            {"a": [1], "b": [(2,)], "c": {"d": [3]}, "e": {"f": [4, -math.inf]}},
            "e.f[1]",
            "Infinity",
            id="deep-after-both",
        ),
        pytest.param(
            [[1], (2,), {"x": date(2024, 1, 1)}, [1, bytearray(b"x")]],
            "[3][1]",
            "bytes(value)",
            id="list",
        ),
        pytest.param(
            {"k": {TYPE_KEY: 1, "d": date(2024, 1, 1), "m": {2: 3}}},
            "k.m",
            "dict key 2",
            id="in-escaped-dict",
        ),
        pytest.param(
            {"t": ([1], {"u": UUID(int=1)}, [Level.HIGH])}, "t[2][0]", "enum", id="in-tuple"
        ),
        pytest.param(
            {"c": _cycle_after([1], date(2024, 1, 1))}, "c[2]", "contains itself", id="cycle"
        ),
        pytest.param(
            [date(2024, 1, 1), [1], _nested_lists(MAX_DEPTH)],
            "[2]" + "[0]" * (MAX_DEPTH - 1),
            "nested",
            id="depth",
        ),
    ],
)
def test_refusal_after_unchanged_and_changed_items_names_its_path_and_changes_nothing(
    value: Any, expected_path: str, problem: str
) -> None:
    snapshot = copy.deepcopy(value)
    with pytest.raises(SerializationError) as caught:
        encode(value, path="")
    assert caught.value.path == expected_path
    assert problem in caught.value.problem
    assert repr(value) == repr(snapshot)


# --------------------------------------------------------------------------------------------
# Corrupt data


def _tag(name: object, value: object) -> dict[str, object]:
    return {TYPE_KEY: name, "value": value}


CORRUPT = [
    pytest.param({"a": _tag("os.system", "ls")}, "context", "context.a", "not a type", id="name"),
    pytest.param(_tag(None, 1), "", "value", "__type__ is None", id="name-none"),
    pytest.param(_tag(["date"], 1), "", "value", "not a type", id="name-list"),
    pytest.param({TYPE_KEY: "date"}, "", "value", "exactly the keys", id="missing-value"),
    pytest.param(
        {TYPE_KEY: "date", "value": "2024-01-01", "x": 1}, "s", "s", "exactly", id="extra-key"
    ),
    pytest.param({"x": _tag("date", 20240101)}, "", "x", "needs a str value", id="date-type"),
    pytest.param({"x": _tag("date", "2024-13-01")}, "", "x", "ISO 8601 date", id="date-text"),
    pytest.param([_tag("datetime", "yesterday")], "", "[0]", "ISO 8601 datetime", id="datetime"),
    pytest.param(
        _tag("datetime", "2024-01-01T00:00:00+00:00[Mars/Olympus]"),
        "",
        "value",
        "unknown time zone 'Mars/Olympus'",
        id="zone-unknown",
    ),
    pytest.param(
        _tag("datetime", "2024-01-01T00:00:00+00:00[../../etc/passwd]"),
        "",
        "value",
        "unknown time zone",
        id="zone-path",
    ),
    pytest.param(
        _tag("datetime", "2024-01-01T00:00:00+00:00[]"), "", "value", "unknown", id="zone-empty"
    ),
    pytest.param(
        _tag("datetime", "2024-01-01T00:00:00]"), "", "value", "without a '['", id="zone-bracket"
    ),
    pytest.param(
        _tag("datetime", "2024-01-01T00:00:00[Europe/Paris]"), "", "value", "offset", id="no-off"
    ),
    pytest.param(
        _tag("time", "10:00:00+01:00[Europe/Paris]"), "", "value", "must not also", id="time-both"
    ),
    pytest.param(_tag("time", "25:00"), "", "value", "ISO 8601 time", id="time-text"),
    pytest.param(_tag("bytes", "not base64!"), "", "value", "base64", id="bytes"),
    pytest.param(_tag("bytes", "é"), "", "value", "base64", id="bytes-non-ascii"),
    pytest.param(_tag("UUID", "nope"), "", "value", "not a UUID", id="uuid"),
    pytest.param(_tag("UUID", 5), "", "value", "needs a str value, not int", id="uuid-type"),
    pytest.param(_tag("Decimal", "one"), "", "value", "not a Decimal", id="decimal"),
    pytest.param(_tag("Decimal", 1.5), "", "value", "needs a str", id="decimal-float"),
    pytest.param(_tag("timedelta", [1, 2]), "", "value", "[days, seconds", id="td-short"),
    pytest.param(_tag("timedelta", ["1", 2, 3]), "", "value", "as ints", id="td-str"),
    pytest.param(_tag("timedelta", [True, 2, 3]), "", "value", "as ints", id="td-bool"),
    pytest.param(_tag("timedelta", [10**10, 0, 0]), "", "value", "out of range", id="td-range"),
    pytest.param(_tag("tuple", "x"), "", "value", "needs a list value", id="tuple-type"),
    pytest.param(_tag("set", [[1]]), "", "value", "unhashable", id="set-unhashable"),
    pytest.param(_tag("frozenset", [1, 1]), "", "value", "element twice", id="set-duplicate"),
    pytest.param(_tag("set", {"a": 1}), "", "value", "needs a list", id="set-type"),
    pytest.param(_tag("dict", [1]), "", "value", "needs a dict value", id="dict-type"),
    pytest.param(
        {"t": _tag("tuple", [1, _tag("date", "nope")])}, "ctx", "ctx.t[1]", "date", id="in-tuple"
    ),
    pytest.param({"s": _tag("frozenset", [1, _tag("UUID", "x")])}, "", "s[1]", "UUID", id="in-set"),
    pytest.param(
        {"d": _tag("dict", {TYPE_KEY: "x", "when": _tag("date", "no")})},
        "",
        "d.when",
        "date",
        id="in-escaped-dict",
    ),
    pytest.param({"x": [float("nan")]}, "", "x[0]", "float nan", id="nan"),
    pytest.param({"x": math.inf}, "", "x", "float inf", id="inf"),
    pytest.param({"x": (1, 2)}, "", "x", "type tuple is not JSON", id="not-json"),
    pytest.param({"x": {1: 2}}, "", "x", "object key 1 is not a str", id="int-key"),
    pytest.param({"deep": _nested_lists(101)}, "", "deep" + "[0]" * 99, "nested", id="depth"),
]


@pytest.mark.parametrize(("data", "path", "expected_path", "problem"), CORRUPT)
def test_corrupt_data_names_its_path(
    data: object, path: str, expected_path: str, problem: str
) -> None:
    with pytest.raises(CorruptInstanceError) as caught:
        decode(data, path=path)
    assert caught.value.path == expected_path
    assert problem in caught.value.problem
    assert caught.value.instance_id == "(unknown)"


def test_corrupt_data_names_the_instance() -> None:
    instance_id = UUID(int=9)
    with pytest.raises(CorruptInstanceError, match=str(instance_id)) as caught:
        decode({"state": _tag("nope", 1)}, instance_id=instance_id)
    assert caught.value.instance_id == instance_id
    assert caught.value.path == "state"


def test_bad_decimal_text_is_refused_whatever_the_decimal_context() -> None:
    with localcontext() as context:
        context.traps[InvalidOperation] = False
        with pytest.raises(CorruptInstanceError, match="not a Decimal"):
            decode(_tag("Decimal", "one"))


def test_decoder_never_resolves_names_from_the_data() -> None:
    for name in ["builtins.eval", "collections.OrderedDict", "object", "Thing", "str"]:
        with pytest.raises(CorruptInstanceError, match="not a type this codec writes"):
            decode(_tag(name, "1"))


# --------------------------------------------------------------------------------------------
# Text: dumps and loads


EXPONENT_FLOATS = [
    pytest.param(value, text, id=repr(value))
    for value, text in [
        (1e16, "10000000000000000.0"),
        (1e-05, "0.00001"),
        (-2.5e-08, "-0.000000025"),
        (1e-7, "0.0000001"),
        (1.5e300, "15" + "0" * 299 + ".0"),
        (1.7976931348623157e308, "17976931348623157" + "0" * 292 + ".0"),
        (5e-324, "0." + "0" * 323 + "5"),
        (-1.25e-300, "-0." + "0" * 299 + "125"),
    ]
]


@pytest.mark.parametrize(("value", "text"), EXPONENT_FLOATS)
def test_exponent_floats_are_written_positionally(value: float, text: str) -> None:
    assert dumps(value) == text
    assert dumps([value, {"k": value}]) == f'[{text},{{"k":{text}}}]'
    assert float(text) == value


@pytest.mark.parametrize(
    "value", [1e16, 1e-7, 1.5e300, 5e-324, 1e22, 1.2e17, 0.1, 9999999999999998.0, 1e-4]
)
def test_floats_come_back_as_floats_after_postgresql_prints_them(value: float) -> None:
    assert_same(value, loads(dumps(value)))
    assert_same(value, loads(postgres_reprint(dumps(value))))
    assert_same([value], loads(postgres_reprint(dumps([value]))))


@given(floats)
def test_every_float_survives_postgresql_number_printing(value: float) -> None:
    text = dumps({"f": value})
    assert_same({"f": value}, loads(text))
    assert_same({"f": value}, loads(postgres_reprint(text)), zero_sign=False)


def test_exponent_like_text_in_strings_is_left_alone() -> None:
    value = {
        ",1e+16,": [1e16, "x:1e-7]", 'q"1e+16', "\\", ",2e+20]"],
        "e-mail": "123e-4567-id",
        '"': 3e-5,
    }
    text = dumps(value)
    assert text == (
        '{",1e+16,":[10000000000000000.0,"x:1e-7]","q\\"1e+16","\\\\",",2e+20]"],'
        '"e-mail":"123e-4567-id","\\"":0.00003}'
    )
    assert loads(text) == value


def test_dumps_is_compact_utf8_text() -> None:
    assert dumps({"a": [1, "é", None, True]}) == '{"a":[1,"é",null,true]}'


def test_dumps_refuses_nan() -> None:
    with pytest.raises(ValueError, match="not JSON compliant"):
        dumps(float("nan"))


def test_loads_reads_str_and_bytes() -> None:
    assert loads('{"a":[1,2.5]}') == {"a": [1, 2.5]}
    assert loads(b'{"a":"\xc3\xa9"}') == {"a": "é"}


@given(values)
def test_dumps_encoded_writes_what_dumps_writes(value: Any) -> None:
    encoded = encode(value)
    assert dumps_encoded(encoded) == dumps(encoded)


@pytest.mark.parametrize(
    "number",
    [
        2**63 - 1,
        2**63,
        2**64 - 1,
        2**64,
        -(2**63),
        -(2**63) - 1,
        10**18,
        -(10**18),
        10**30,
        -(10**400),
    ],
)
def test_ints_beyond_64_bits_are_written_and_read_exactly(number: int) -> None:
    value = {"n": [number, 1.5], "s": "x"}
    text = dumps_encoded(value)
    assert text == dumps(value)
    assert_same(value, loads(text))
    assert_same(value, loads(text.encode("utf-8")))
    assert_same(value, loads(postgres_reprint(text)))


def test_long_digit_runs_in_strings_and_fractions_read_the_same() -> None:
    value = {"id": "12345678901234567890123", "f": 0.12345678901234568, "big": 1e19}
    assert_same(value, loads(dumps_encoded(value)))
    assert_same(value, loads(postgres_reprint(dumps_encoded(value))))


def test_loads_reads_what_only_json_reads_and_keeps_its_errors() -> None:
    assert math.isnan(cast(float, loads("NaN")))
    assert loads('{"x":-Infinity}') == {"x": float("-inf")}
    with pytest.raises(json.JSONDecodeError):
        loads('{"a":')
    with pytest.raises(json.JSONDecodeError):
        loads(b"[1,]")


# --------------------------------------------------------------------------------------------
# format_path


@pytest.mark.parametrize(
    ("parent", "key", "expected"),
    [
        ("", "context", "context"),
        ("context", "initial", "context.initial"),
        ("context.initial.items", 3, "context.initial.items[3]"),
        ("context.initial", "order id", 'context.initial["order id"]'),
        ("", "order id", '["order id"]'),
        ("", 0, "[0]"),
        ("a", "", 'a[""]'),
        ("a", "2nd", 'a["2nd"]'),
        ("a", 'say "hi"', 'a["say \\"hi\\""]'),
        ("a", "größe", "a.größe"),
        ("a", "\ud800", 'a["\\ud800"]'),
    ],
)
def test_format_path(parent: str, key: str | int, expected: str) -> None:
    assert format_path(parent, key) == expected


# --------------------------------------------------------------------------------------------
# The JSON encoder/decoder classes


def test_encoder_works_with_json_dump_and_ignores_formatting_options() -> None:
    value = {"when": date(2024, 1, 1), "n": 1e16}
    stream = io.StringIO()
    json.dump(value, stream, cls=HephaestusJSONEncoder, indent=2, sort_keys=True)
    assert stream.getvalue() == dumps(encode(value))
    assert json.load(io.StringIO(stream.getvalue()), cls=HephaestusJSONDecoder) == value


def test_encoder_works_as_a_psycopg_dumps_function() -> None:
    dumps_function = functools.partial(json.dumps, cls=HephaestusJSONEncoder)
    value = {"ids": (UUID(int=1),), "amount": Decimal("1.10")}
    assert dumps_function(value) == dumps(encode(value))


def test_encoder_refuses_before_json_dump_writes_anything() -> None:
    stream = io.StringIO()
    with pytest.raises(SerializationError) as caught:
        json.dump({"a": [object()]}, stream, cls=HephaestusJSONEncoder)
    assert caught.value.path == "a[0]"
    assert isinstance(caught.value, ValueError)
    assert stream.getvalue() == ""


def test_decoder_refuses_corrupt_data() -> None:
    with pytest.raises(CorruptInstanceError) as caught:
        json.loads('{"a": {"__type__": "nope", "value": 1}}', cls=HephaestusJSONDecoder)
    assert caught.value.path == "a"


def test_decoder_refuses_nan_tokens() -> None:
    with pytest.raises(CorruptInstanceError):
        json.loads('{"a": NaN}', cls=HephaestusJSONDecoder)


def _plain_modules() -> list[str]:
    import pkgutil

    from hephaestus_django.runtime import codec

    submodules = [info.name for info in pkgutil.iter_modules(codec.__path__, codec.__name__ + ".")]
    return [codec.__name__, *submodules, "hephaestus_django.serialization"]


@pytest.mark.parametrize("module", _plain_modules())
def test_modules_are_plain_python(module: str) -> None:
    imported = _imports_of(module)
    assert not [name for name in imported if name.split(".")[0] == "django"]
    ours = {name for name in imported if name.startswith("hephaestus_django")}
    allowed = {"hephaestus_django.core.errors", "hephaestus_django.runtime"}
    assert all(
        name in allowed or name.startswith("hephaestus_django.runtime.codec") for name in ours
    ), ours


def _imports_of(module_name: str) -> set[str]:
    """Absolute names imported anywhere in a module's source (relative imports resolved)."""
    import ast
    import importlib.util

    spec = importlib.util.find_spec(module_name)
    assert spec is not None
    assert spec.origin is not None
    with open(spec.origin, encoding="utf-8") as handle:
        tree = ast.parse(handle.read())
    package = module_name if spec.submodule_search_locations else module_name.rpartition(".")[0]
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
                names.add(f"{base}.{node.module}" if node.module else base)
            elif node.module:
                names.add(node.module)
    return names
