"""Fixtures shared by the integration tests."""

from __future__ import annotations

import functools
import uuid
from collections.abc import Callable

import pytest
from django.contrib.auth.models import Permission, User
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
