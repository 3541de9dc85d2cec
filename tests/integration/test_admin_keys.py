"""Business keys in the admin: shown in the list and on the instance page, searched."""

from __future__ import annotations

from html import escape

import pytest
from django.test import Client

from hephaestus_django.core import engine
from hephaestus_django.storage import DjangoStorage
from tests.support.admin import CHANGELIST, detail_url, listed, row_of
from tests.support.instances import keyed
from tests.support.workflows import KEYED

pytestmark = pytest.mark.django_db


def test_the_list_shows_the_key_under_the_id(admin_client: Client, storage: DjangoStorage) -> None:
    instance = keyed(storage, "active", "order-A-1001")
    long = keyed(storage, "none", "k" * 40)
    page = listed(admin_client)
    assert '<span class="hx-key" title="business key: order-A-1001">order-A-1001</span>' in (
        row_of(page, instance.id)
    )
    assert f'title="business key: {"k" * 40}">{"k" * 23}…</span>' in row_of(page, long.id)


def test_the_instance_page_shows_the_key(admin_client: Client, storage: DjangoStorage) -> None:
    instance = keyed(storage, "active", "<order & co>")
    page = admin_client.get(detail_url(instance.id)).content.decode()
    assert f'<th scope="row">business key</th><td>{escape("<order & co>")}</td>' in page


@pytest.mark.parametrize("term", ["key:order-7", "order-7", "key: order-7"])
def test_a_search_finds_the_key(admin_client: Client, storage: DjangoStorage, term: str) -> None:
    found = keyed(storage, "active", "order-7")
    other = keyed(storage, "active", "order-8")
    page = listed(admin_client, q=term)
    assert str(found.id) in page
    assert str(other.id) not in page


def test_key_prefix_takes_a_key_that_looks_like_a_context_search(
    admin_client: Client, storage: DjangoStorage
) -> None:
    found = keyed(storage, "active", "tier=gold")
    page = listed(admin_client, q="key:tier=gold")
    assert str(found.id) in page


def test_an_empty_key_search_is_a_message_not_an_error(admin_client: Client) -> None:
    response = admin_client.get(CHANGELIST, {"q": "key:"})
    assert response.status_code == 200
    assert "key: needs the business key after it" in response.content.decode()


def test_an_instance_without_a_key_shows_none(admin_client: Client, storage: DjangoStorage) -> None:
    instance = engine.start(engine.new_instance(KEYED["active"], {}))
    storage.put(instance)
    assert "hx-key" not in row_of(listed(admin_client), instance.id)
