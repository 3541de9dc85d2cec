"""Fixtures shared by the integration tests."""

from __future__ import annotations

import functools
import uuid
from collections.abc import Callable, Iterator

import psycopg
import pytest
from django.contrib.auth.models import Permission, User
from django.db import connection
from django.test import Client

from hephaestus_django.storage import DjangoStorage


@pytest.fixture
def storage() -> DjangoStorage:
    """The PostgreSQL storage on the default test database."""
    return DjangoStorage()


def login_as(client: Client, *codenames: str) -> Client:
    """Log ``client`` in as a new staff user with exactly these permissions of this app."""
    user = User.objects.create_user(f"staff-{uuid.uuid4().hex[:8]}", is_staff=True)
    user.user_permissions.set(
        Permission.objects.filter(
            content_type__app_label="hephaestus_django", codename__in=codenames
        )
    )
    client.force_login(user)
    return client


@pytest.fixture
def staff_client(client: Client) -> Callable[..., Client]:
    """``staff_client("view_workflowinstance", ...)``: a client logged in with those permissions."""
    return functools.partial(login_as, client)


@pytest.fixture
def fresh_database() -> Iterator[dict[str, str]]:
    """A new, empty database on the test server, dropped afterwards: for a project the README
    or the docs set up from scratch (``HOST``, ``PORT``, ``USER`` and ``dbname`` as keys)."""
    server = connection.settings_dict
    name = f"docs_{uuid.uuid4().hex[:12]}"
    params = {
        "host": server["HOST"] or "127.0.0.1",
        "port": str(server["PORT"] or 5432),
        "user": server["USER"] or "postgres",
        "dbname": "postgres",  # the maintenance database: the test database may not exist yet
    }
    with psycopg.connect(**params, autocommit=True) as admin:  # type: ignore[arg-type]
        admin.execute(f'CREATE DATABASE "{name}"')
    try:
        yield {**params, "dbname": name}
    finally:
        with psycopg.connect(**params, autocommit=True) as admin:  # type: ignore[arg-type]
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
