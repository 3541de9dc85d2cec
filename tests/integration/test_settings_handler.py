"""``settings.HEPHAESTUS`` at run time: the ``storages`` handler, the runner, and the facade.

The handler builds each backend lazily, once per alias, and forgets them all when the setting
changes; the ``Workflow`` facade finds its backends through it, unless code configured others
with ``hephaestus_django.runtime.configure()``.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any
from uuid import UUID

import pytest
from django.test import override_settings

from hephaestus_django import InMemoryStorage, InstanceNotFound, LocalRunner, Status
from hephaestus_django.conf import (
    InvalidBackendError,
    InvalidRunnerBackendError,
    InvalidStorageBackendError,
    runner,
    storages,
)
from hephaestus_django.core.errors import BackendNotConfigured
from hephaestus_django.models import WorkflowInstance
from hephaestus_django.runtime import backends, configure
from hephaestus_django.storage import DjangoStorage
from tests import flows

if TYPE_CHECKING:
    from pytest_django import Settings

DJANGO_STORAGE = "hephaestus_django.storage.DjangoStorage"
LOCAL_RUNNER = "hephaestus_django.runtime.LocalRunner"
IN_MEMORY = "hephaestus_django.runtime.InMemoryStorage"


def storage(using: str) -> dict[str, Any]:
    return {"BACKEND": DJANGO_STORAGE, "OPTIONS": {"using": using}}


TWO_TENANTS = {"STORAGES": {"default": storage("default"), "tenant_a": storage("other")}}


# --- the storages handler -------------------------------------------------------------------


def test_without_the_setting_default_is_a_django_storage_on_the_default_database(
    settings: Settings,
) -> None:
    del settings.HEPHAESTUS

    default = storages["default"]

    assert isinstance(default, DjangoStorage)
    assert default.using == "default"


def test_backends_are_built_once_per_alias(settings: Settings) -> None:
    settings.HEPHAESTUS = TWO_TENANTS

    assert storages["default"] is storages["default"]
    assert storages["tenant_a"] is storages["tenant_a"]
    assert storages["default"] is not storages["tenant_a"]


def test_an_unknown_alias_names_the_configured_ones(settings: Settings) -> None:
    settings.HEPHAESTUS = TWO_TENANTS

    with pytest.raises(InvalidStorageBackendError) as raised:
        storages["nope"]

    message = str(raised.value)
    assert "Could not find config for 'nope'" in message
    assert "'default', 'tenant_a'" in message


def test_an_unknown_alias_without_the_setting_names_default(settings: Settings) -> None:
    del settings.HEPHAESTUS

    with pytest.raises(
        InvalidStorageBackendError, match=r"Could not find config for 'nope'.*'default'"
    ):
        storages["nope"]


def test_overriding_the_setting_rebuilds_the_backends_and_ending_it_restores_them(
    settings: Settings,
) -> None:
    del settings.HEPHAESTUS
    before = storages["default"]
    assert before.using == "default"

    with override_settings(
        HEPHAESTUS={"STORAGES": {"default": storage("other"), "tenant_a": storage("other")}}
    ):
        during = storages["default"]
        assert during.using == "other"
        assert storages["tenant_a"].using == "other"

    after = storages["default"]
    assert after.using == "default"
    assert after is not during
    with pytest.raises(InvalidStorageBackendError, match="tenant_a"):
        storages["tenant_a"]


def test_the_settings_fixture_is_seen_by_the_handler(settings: Settings) -> None:
    settings.HEPHAESTUS = TWO_TENANTS

    tenant = storages["tenant_a"]

    assert isinstance(tenant, DjangoStorage)
    assert tenant.using == "other"


def test_an_invalid_backend_names_where_it_is_configured(settings: Settings) -> None:
    settings.HEPHAESTUS = {
        "STORAGES": {"default": storage("default"), "x": {"BACKEND": "no_such_module.Storage"}}
    }

    with pytest.raises(
        InvalidStorageBackendError, match=re.escape("settings.HEPHAESTUS['STORAGES']['x']")
    ) as raised:
        storages["x"]

    assert raised.value.check_id == "hephaestus.E005"
    assert isinstance(storages["default"], DjangoStorage)


def test_options_that_do_not_fit_raise_the_settings_error(settings: Settings) -> None:
    settings.HEPHAESTUS = {
        "STORAGES": {"default": {"BACKEND": DJANGO_STORAGE, "OPTIONS": {"usin": "default"}}}
    }

    with pytest.raises(InvalidStorageBackendError, match="'usin'"):
        storages["default"]


def test_a_backend_that_is_not_a_string_raises_the_settings_error(settings: Settings) -> None:
    settings.HEPHAESTUS = {"STORAGES": {"default": {"BACKEND": 3}}}

    with pytest.raises(InvalidStorageBackendError, match="must be a dotted path string"):
        storages["default"]


# --- the runner -----------------------------------------------------------------------------


def test_the_runner_honours_its_options(settings: Settings) -> None:
    settings.HEPHAESTUS = {"RUNNER": {"BACKEND": LOCAL_RUNNER, "OPTIONS": {"max_workers": 3}}}

    built = runner.get()

    assert isinstance(built, LocalRunner)
    assert built.max_workers == 3
    assert runner.get() is built
    assert backends.runner() is built


def test_a_runner_setting_change_builds_a_new_runner(settings: Settings) -> None:
    settings.HEPHAESTUS = {"RUNNER": {"BACKEND": LOCAL_RUNNER, "OPTIONS": {"max_workers": 3}}}
    first = runner.get()

    settings.HEPHAESTUS = {"RUNNER": {"BACKEND": LOCAL_RUNNER, "OPTIONS": {"max_workers": 5}}}

    assert runner.get() is not first
    assert runner.get().max_workers == 5


def test_an_invalid_runner_raises_the_runner_settings_error(settings: Settings) -> None:
    settings.HEPHAESTUS = {"RUNNER": {"BACKEND": LOCAL_RUNNER, "OPTIONS": {"max_workers": 0}}}

    with pytest.raises(InvalidRunnerBackendError, match=re.escape("settings.HEPHAESTUS['RUNNER']")):
        runner.get()


# --- the Workflow facade inside Django ------------------------------------------------------


def stored_in(alias: str, instance_id: UUID) -> bool:
    return WorkflowInstance.objects.using(alias).filter(id=instance_id).exists()


def test_the_facade_resolves_aliases_through_the_handler(settings: Settings) -> None:
    settings.HEPHAESTUS = TWO_TENANTS

    assert backends.storage("default") is storages["default"]
    assert backends.storage("tenant_a") is storages["tenant_a"]


def test_the_facade_reports_an_unknown_alias_as_not_configured(settings: Settings) -> None:
    settings.HEPHAESTUS = TWO_TENANTS

    with pytest.raises(BackendNotConfigured, match="Could not find config for 'tenant_b'"):
        flows.IfElse.start({"script": {}}, storage="tenant_b")


@pytest.mark.django_db(databases=["default", "other"])
def test_start_stores_in_the_default_database(settings: Settings) -> None:
    del settings.HEPHAESTUS

    instance_id = flows.IfElse.start({"script": {}})

    assert stored_in("default", instance_id)
    assert not stored_in("other", instance_id)
    assert flows.IfElse.get(instance_id).status == Status.COMPLETED


@pytest.mark.django_db(databases=["default", "other"])
def test_two_named_storages_on_two_database_aliases_stay_separate(settings: Settings) -> None:
    settings.HEPHAESTUS = TWO_TENANTS

    in_default = flows.IfElse.start({"script": {}})
    in_tenant = flows.IfElse.start({"script": {}}, storage="tenant_a")

    assert stored_in("default", in_default)
    assert not stored_in("other", in_default)
    assert stored_in("other", in_tenant)
    assert not stored_in("default", in_tenant)
    assert flows.IfElse.get(in_tenant, storage="tenant_a").status == Status.COMPLETED
    with pytest.raises(InstanceNotFound):
        flows.IfElse.get(in_tenant)
    with pytest.raises(InstanceNotFound):
        flows.IfElse.get(in_default, storage="tenant_a")
    listed_in_tenant = [instance.id for instance in flows.IfElse.list(storage="tenant_a")]
    listed_in_default = [instance.id for instance in flows.IfElse.list()]
    assert in_tenant in listed_in_tenant
    assert in_default not in listed_in_tenant
    assert in_default in listed_in_default
    assert in_tenant not in listed_in_default


@pytest.fixture
def configured_in_code() -> Iterator[InMemoryStorage]:
    memory = InMemoryStorage()
    configure(storages={"default": memory})
    try:
        yield memory
    finally:
        configure()


@pytest.mark.django_db(databases=["default", "other"])
def test_configure_in_code_takes_precedence_over_the_settings(
    settings: Settings, configured_in_code: InMemoryStorage
) -> None:
    settings.HEPHAESTUS = TWO_TENANTS

    in_memory = flows.IfElse.start({"script": {}})
    in_tenant = flows.IfElse.start({"script": {}}, storage="tenant_a")

    assert configured_in_code.get(in_memory).status == Status.COMPLETED
    assert not stored_in("default", in_memory)
    # An alias that code did not configure still comes from the settings.
    assert stored_in("other", in_tenant)


def test_configure_without_storages_hands_back_to_the_settings(
    configured_in_code: InMemoryStorage,
) -> None:
    assert backends.storage("default") is configured_in_code

    configure()

    assert backends.storage("default") is storages["default"]


def test_a_storage_is_one_object_for_every_thread(settings: Any) -> None:
    settings.HEPHAESTUS = {"STORAGES": {"default": {"BACKEND": IN_MEMORY}}}
    seen: list[object] = []
    worker = threading.Thread(target=lambda: seen.append(storages["default"]))
    worker.start()
    worker.join()
    assert seen == [storages["default"]]


@pytest.mark.parametrize(
    ("value", "check_id"),
    [
        (["not", "a", "dict"], "hephaestus.E001"),
        ({"STORAGES": "default"}, "hephaestus.E003"),
    ],
)
def test_a_malformed_setting_is_refused_at_run_time_too(
    settings: Any, value: object, check_id: str
) -> None:
    settings.HEPHAESTUS = value
    with pytest.raises(InvalidBackendError) as caught:
        storages["default"]
    assert caught.value.check_id == check_id
