"""``codec.is_plain_jsonb`` on the text PostgreSQL really prints from jsonb values."""

from __future__ import annotations

from typing import Any

import pytest
from django.db import connection
from hypothesis import HealthCheck, given, settings

from hephaestus_django.runtime.codec import decode, dumps, encode, is_plain_jsonb, loads
from hephaestus_django.runtime.codec.refusals import MAX_DEPTH
from tests.support.codec import assert_same, values

pytestmark = pytest.mark.django_db


def printed(json_text: str) -> str:
    """``json_text`` stored as jsonb and printed back, as the storage reads a state."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT %s::jsonb::text", [json_text])
        (text,) = cursor.fetchone()
    return str(text)


def plain(text: str) -> bool:
    return is_plain_jsonb(text, loads(text))


def assert_skipping_decode_is_safe(text: str) -> None:
    if plain(text):
        assert_same(decode(loads(text)), loads(text))


@settings(max_examples=150, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(values)
def test_plain_jsonb_text_decodes_to_itself(value: Any) -> None:
    assert_skipping_decode_is_safe(printed(dumps(encode(value))))


@pytest.mark.parametrize(
    ("json_text", "expected"),
    [
        ('{"order_id": 123, "items": [{"sku": "A-1", "price": 9.5}]}', True),
        ('{"due": {"__type__": "date", "value": "2026-12-24"}}', False),
        # Escapes in the input: jsonb prints the key as it is, so the tag is seen.
        ('{"\\u005f_type__": "date", "value": "2026-12-24"}', False),
        ('{"note": "\\u00e9t\\u00e9 \\u0001 tab\\t"}', True),
        ('{"word": "NaN is not a number", "n": 1e400}', True),
        ("[" * MAX_DEPTH + "]" * MAX_DEPTH, True),
        ("[" * (MAX_DEPTH + 1) + "]" * (MAX_DEPTH + 1), False),
        # More containers than the limit, none nested deeper: a long history.
        ('{"history": [' + ", ".join(['{"next": ["A"]}'] * 80) + "]}", True),
        ("[" + "[" * (MAX_DEPTH - 1) + "]" * (MAX_DEPTH - 1) + ", [], []]", True),
        ("[[], [], " + "[" * MAX_DEPTH + "]" * MAX_DEPTH + "]", False),
    ],
)
def test_what_postgresql_prints_decides(json_text: str, expected: bool) -> None:
    text = printed(json_text)
    assert plain(text) is expected
    assert_skipping_decode_is_safe(text)


def test_an_escaped_tag_is_decoded() -> None:
    text = printed('{"\\u005f_type__": "date", "value": "2026-12-24"}')
    assert '"__type__"' in text
    assert not plain(text)
