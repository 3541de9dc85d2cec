"""No admin input is a server error: hostile search terms and resume payloads.

Each input below once raised (``RecursionError``, ``SerializationError``) or cost seconds of
server time. Now each gets results or a message that states the limit, and nothing is written.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from django.contrib.messages import get_messages
from django.db import connection
from django.db.models import Q
from django.db.models.expressions import RawSQL
from django.http import HttpResponse
from django.test import Client
from django.urls import reverse
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hephaestus_django.admin import bounded_search
from hephaestus_django.admin.limits import (
    PAYLOAD_MAX_CHARS,
    PAYLOAD_MAX_DEPTH,
    QUERY_MAX_CHARS,
    SEARCH_MAX_CHARS,
    SEARCH_MAX_DEPTH,
    SEARCH_MAX_VALUES,
)
from hephaestus_django.admin.listing import CheapCountPaginator
from hephaestus_django.models import WorkflowInstance
from hephaestus_django.storage import DjangoStorage
from tests import flows
from tests.support.instances import stored

pytestmark = pytest.mark.django_db

CHANGELIST = reverse("admin:hephaestus_django_workflowinstance_changelist")


def searched(client: Client, term: str) -> tuple[str, list[str]]:
    """The changelist page for ``term`` (which must not be a server error) and its messages."""
    response = client.get(CHANGELIST, {"q": term})
    assert response.status_code == 200, response.status_code
    return response.content.decode(), messages_of(response)


def messages_of(response: HttpResponse) -> list[str]:
    return [str(m) for m in get_messages(response.wsgi_request)]  # type: ignore[attr-defined]


def nested(depth: int) -> str:
    return '{"a": ' * depth + "1" + "}" * depth


@pytest.mark.parametrize(
    ("term", "message"),
    [
        (nested(100_000), f"characters long after the “?”; the limit is {QUERY_MAX_CHARS:,}"),
        (
            "x" * 1_000_000,
            "the page's address is 1,000,002 characters long after the “?”",
        ),
        (
            json.dumps({f"k{i}": i for i in range(100_000)}),
            f"the limit is {QUERY_MAX_CHARS:,}",
        ),
        (
            "x" * (SEARCH_MAX_CHARS + 1),
            f"is 1,001 characters long; the limit is {SEARCH_MAX_CHARS:,}",
        ),
        (
            "é" * (SEARCH_MAX_CHARS + 1),
            f"is 1,001 characters long; the limit is {SEARCH_MAX_CHARS:,}",
        ),
        (nested(SEARCH_MAX_DEPTH + 1), f"nested more than {SEARCH_MAX_DEPTH} levels deep"),
        ("a=" + "[" * 300 + "]" * 300, f"the limit is {SEARCH_MAX_DEPTH}"),
        ("a." * SEARCH_MAX_DEPTH + "b=1", f"keys long; the limit is {SEARCH_MAX_DEPTH}"),
        (
            json.dumps({f"k{i}": i for i in range(SEARCH_MAX_VALUES + 1)}),
            f"matches on {SEARCH_MAX_VALUES + 1} values; the limit is {SEARCH_MAX_VALUES}",
        ),
        ("order_id=1e999", "the number at order_id is beyond the range of a float"),
        ('{"order_id": -1e999}', "the number at order_id is beyond the range of a float"),
        ("order_id=1\x00", "contains the NUL character (U+0000)"),
        ("Two\x00Waits", "contains the NUL character (U+0000)"),
        ('order_id="\\u0000"', "the value at order_id contains the NUL character"),
        ('order_id="\\ud800"', "the value at order_id contains a lone surrogate"),
        ('{"\\udfff": 1}', "contains a lone surrogate"),
    ],
)
def test_a_term_that_cannot_be_searched_is_a_message(
    admin_client: Client, storage: DjangoStorage, term: str, message: str
) -> None:
    instance = stored(storage, order_id=123)
    page, messages = searched(admin_client, term)
    assert len(messages) == 1
    assert messages[0].startswith(("Nothing was searched: ", "Nothing was listed: "))
    assert message in messages[0]
    assert str(instance.id) not in page
    assert "0 workflow instances" in page


@pytest.mark.parametrize("constant", ["NaN", "Infinity", "-Infinity"])
def test_nan_and_infinity_are_searched_as_strings(
    admin_client: Client, storage: DjangoStorage, constant: str
) -> None:
    wanted = stored(storage, order_id=constant)
    number = stored(storage, order_id=1)
    page, messages = searched(admin_client, f"order_id={constant}")
    assert messages == []
    assert str(wanted.id) in page
    assert str(number.id) not in page


def test_terms_at_the_limits_are_searched(admin_client: Client, storage: DjangoStorage) -> None:
    deep = stored(storage, a=json.loads(nested(SEARCH_MAX_DEPTH - 1)))
    many = stored(storage, **{f"k{i}": i for i in range(SEARCH_MAX_VALUES)})
    page, messages = searched(admin_client, '{"a": ' + nested(SEARCH_MAX_DEPTH - 1) + "}")
    assert messages == []
    assert str(deep.id) in page
    term = " ".join(f"k{i}={i}" for i in range(SEARCH_MAX_VALUES))
    page, messages = searched(admin_client, term + " " * (SEARCH_MAX_CHARS - len(term)))
    assert messages == []
    assert str(many.id) in page


def test_other_text_matches_registered_workflow_names(
    admin_client: Client, storage: DjangoStorage
) -> None:
    two_waits, if_else = stored(storage, flows.TwoWaits), stored(storage)
    page, _ = searched(admin_client, "twowaits")
    assert str(two_waits.id) in page
    assert str(if_else.id) not in page
    page, _ = searched(admin_client, "NoSuchWorkflow")
    assert str(two_waits.id) not in page
    assert "0 workflow instances" in page


# A mix of anything at all and text shaped like the search syntax, nested and deep.
_JSONISH = st.recursive(
    st.none() | st.booleans() | st.floats() | st.integers() | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=4), inner),
    max_leaves=30,
).map(lambda value: json.dumps(value, allow_nan=True))
_TERMS = st.one_of(
    st.text(st.characters(exclude_categories=["Cs"])),
    _JSONISH,
    st.builds(
        lambda key, value: f"{key}={value}", st.from_regex(r"[a-z_]{1,5}(\.[a-z]{1,3})*"), _JSONISH
    ),
    st.builds(lambda depth, char: char * depth, st.integers(0, 5_000), st.sampled_from('[{"=.')),
)


@settings(
    max_examples=120, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(term=_TERMS)
def test_no_search_term_is_a_server_error(admin_client: Client, term: str) -> None:
    _page, messages = searched(admin_client, term)
    assert len(messages) <= 1
    if messages:
        assert messages[0].startswith("Nothing was searched: ")


def test_a_search_that_takes_too_long_is_cancelled_with_a_message(
    admin_client: Client, storage: DjangoStorage, monkeypatch: pytest.MonkeyPatch
) -> None:
    instance = stored(storage, order_id=123)
    slow = Q(id__in=RawSQL("SELECT id FROM workflow_instances, pg_sleep(0.2)", []))
    monkeypatch.setattr(bounded_search, "search_filter", lambda term: slow)
    page, messages = searched(admin_client, "order_id=123")
    assert messages == [bounded_search.TIMED_OUT.format(limit=bounded_search.SEARCH_TIMEOUT_MS)]
    assert f"longer than {bounded_search.SEARCH_TIMEOUT_MS} ms, the limit" in messages[0]
    assert str(instance.id) not in page
    # The limit was the search's own: the rest of the test's transaction has none.
    assert statement_timeout() == "0"


def test_a_count_that_takes_too_long_leaves_the_list_uncounted(
    admin_client: Client, storage: DjangoStorage, monkeypatch: pytest.MonkeyPatch
) -> None:
    instance = stored(storage, order_id=123)
    original = CheapCountPaginator._count_filtered

    def slow_count(self: CheapCountPaginator, queryset: Any) -> int | None:
        return original(self, queryset.extra(where=["pg_sleep(0.2) IS NOT NULL"]))

    monkeypatch.setattr(CheapCountPaginator, "_count_filtered", slow_count)
    page, messages = searched(admin_client, "order_id=123")
    assert messages == []
    assert str(instance.id) in page
    assert "many workflow instances, not counted" in page


def test_a_search_within_its_time_is_listed_and_counted(
    admin_client: Client, storage: DjangoStorage
) -> None:
    instance = stored(storage, order_id=123)
    page, messages = searched(admin_client, "order_id=123")
    assert messages == []
    assert str(instance.id) in page
    assert "\n1 workflow instance\n" in page
    assert statement_timeout() == "0"  # put back: the test's transaction (a request's) goes on


def statement_timeout() -> str:
    with connection.cursor() as cursor:
        cursor.execute("SHOW statement_timeout")
        (value,) = cursor.fetchone()
    return str(value)


@pytest.mark.parametrize("version", ["²", "9" * 30, "-1", "1.0", "\x00"])
def test_a_version_that_is_no_number_is_refused(admin_client: Client, version: str) -> None:
    response = admin_client.get(CHANGELIST, {"version": version})
    assert response.status_code == 302
    assert response["Location"].endswith("?e=1")


# --- resume payloads --------------------------------------------------------------------------


def resume(client: Client, instance: Any, payload: str) -> str:
    response = client.post(
        reverse("admin:hephaestus_django_workflowinstance_resume", args=[instance.id]),
        {
            "revision": instance.revision,
            "event": json.dumps([flows.Payment.path(), "paid"]),
            "payload": payload,
        },
    )
    assert response.status_code == 200, response.status_code
    page = response.content.decode()
    assert 'class="errorlist' in page
    assert WorkflowInstance.objects.get(pk=instance.id).revision == instance.revision
    return page


@pytest.mark.parametrize(
    ("payload", "error"),
    [
        ("[" * 50_000 + "]" * 50_000, f"nested more than {PAYLOAD_MAX_DEPTH} levels deep"),
        ('{"a": ' * 40_000 + "1" + "}" * 40_000, f"the limit is {PAYLOAD_MAX_CHARS:,}"),
        ("[" * (PAYLOAD_MAX_DEPTH + 1) + "]" * (PAYLOAD_MAX_DEPTH + 1), "levels deep"),
        (json.dumps("x" * PAYLOAD_MAX_CHARS), f"the limit is {PAYLOAD_MAX_CHARS:,}"),
        ("[1e999]", "cannot store payload[0]: the float inf cannot be stored"),
    ],
)
def test_a_payload_past_the_limits_is_a_form_error(
    admin_client: Client, storage: DjangoStorage, payload: str, error: str
) -> None:
    instance = stored(storage, flows.TwoWaits)
    assert error in resume(admin_client, instance, payload)
