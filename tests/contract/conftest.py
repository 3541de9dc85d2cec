"""The ``storage`` fixture: every contract test runs once per storage backend."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from hephaestus_django.runtime import InMemoryStorage
from hephaestus_django.runtime.contract import Storage


@pytest.fixture(
    params=[
        "memory",
        pytest.param("postgresql", marks=pytest.mark.django_db),
    ]
)
def storage(request: pytest.FixtureRequest) -> Iterator[Storage]:
    if request.param == "memory":
        yield InMemoryStorage()
    else:
        from hephaestus_django.storage import DjangoStorage

        yield DjangoStorage(using="default")
