"""Versions side by side on PostgreSQL: the stored columns, the admin's filters and graph, and a
row naming a version that is no longer registered."""

from __future__ import annotations

from collections.abc import Iterator
from io import StringIO

import pytest
from django.core.management import CommandError, call_command
from django.db import connection
from django.test import Client
from django.urls import reverse

from hephaestus_django import LocalRunner, Status, UnknownWorkflowError
from hephaestus_django.models import WorkflowInstance
from hephaestus_django.runtime import configure
from hephaestus_django.storage import DjangoStorage
from tests.support.admin import CHANGELIST, detail_url, listed, row_of
from tests.versions import Newsletter, Onboarding, OnboardingV1, OnboardingV2

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _local() -> Iterator[None]:
    configure(storages={"default": DjangoStorage()}, runner=LocalRunner())
    yield
    configure()


def test_instances_of_each_version_share_the_umbrellas_path() -> None:
    old = Onboarding.start({"email": "a@example.com"}, version=1)
    new = Onboarding.start({"contact": {"email": "b@example.com"}})
    rows = {row.id: row for row in WorkflowInstance.objects.all()}
    assert (rows[old].workflow, rows[old].workflow_version) == ("tests.versions.Onboarding", 1)
    assert (rows[new].workflow, rows[new].workflow_version) == ("tests.versions.Onboarding", 2)
    assert Onboarding.get(old).workflow is OnboardingV1
    assert Onboarding.resume(new, "verified").status is Status.COMPLETED
    assert [i.id for i in Onboarding.list(workflow_version=1)] == [old]
    rows = WorkflowInstance.objects.of_workflow(OnboardingV2)
    assert [i.id for i in rows.to_instances()] == [new]


def test_the_admin_filters_list_the_umbrellas_versions(admin_client: Client) -> None:
    old = Onboarding.start({}, version=1)
    new = Onboarding.start({})
    page = listed(admin_client, workflow=Onboarding.path())
    assert 'href="?version=2&amp;workflow=tests.versions.Onboarding"' in page
    assert str(old) in page
    assert str(new) in page
    assert '<span class="hx-version">v1</span>' in row_of(page, old)
    only_v1 = listed(admin_client, workflow=Onboarding.path(), version="1")
    assert str(old) in only_v1
    assert str(new) not in only_v1
    # the workflow filter names the umbrella, not its version classes
    assert "?workflow=tests.versions.OnboardingV1" not in listed(admin_client)


def test_the_admin_draws_the_graph_of_the_instances_version(admin_client: Client) -> None:
    old = Onboarding.start({}, version=1)
    new = Onboarding.start({})
    old_page = admin_client.get(detail_url(old)).content.decode()
    new_page = admin_client.get(detail_url(new)).content.decode()
    assert "SendWelcome<" in graph(old_page)
    assert "SendWelcomeEmail" not in graph(old_page)
    assert "SendWelcomeEmail" in graph(new_page)
    assert "Activate" in graph(new_page)
    assert OnboardingV2.graph is not OnboardingV1.graph


def graph(page: str) -> str:
    """The instance page's graph (its SVG)."""
    return page.split('<svg xmlns="http://www.w3.org/2000/svg" class="hx-graph"', 1)[1].split(
        "</svg>", 1
    )[0]


def test_a_row_naming_an_unregistered_version(admin_client: Client, storage: DjangoStorage) -> None:
    kept = Onboarding.start({})
    gone = Onboarding.start({})
    with connection.cursor() as cursor:
        cursor.execute("UPDATE workflow_instances SET workflow_version = 9 WHERE id = %s", [gone])
    with pytest.raises(UnknownWorkflowError) as raised:
        storage.get(gone)
    assert raised.value.version == 9
    assert f"has no version 9 registered (instance {gone}); its versions are 1, 2" in str(
        raised.value
    )
    assert [i.id for i in Onboarding.list()] == [kept]
    page = admin_client.get(detail_url(gone)).content.decode()
    assert "This instance cannot be decoded: workflow" in page
    assert "has no version 9 registered" in page
    assert admin_client.get(CHANGELIST).status_code == 200
    assert reverse("admin:hephaestus_django_workflowinstance_changelist") == CHANGELIST


def test_the_graph_command_prints_a_version_of_a_versioned_workflow() -> None:
    def printed(*args: str) -> str:
        out = StringIO()
        call_command("hephaestus_graph", "tests.versions.Onboarding", *args, stdout=out)
        return out.getvalue()

    assert "SendWelcomeEmail" in printed()  # the current version
    assert "SendWelcomeEmail" not in printed("--workflow-version", "1")
    assert "SendWelcome" in printed("--workflow-version", "1")
    with pytest.raises(CommandError, match="Onboarding has no version 5; its versions are 1, 2"):
        printed("--workflow-version", "5")


def test_the_admin_filters_by_tag(admin_client: Client) -> None:
    onboarding = Onboarding.start({})
    newsletter = Newsletter.start({})
    page = listed(admin_client)
    assert 'href="?tag=eu"' in page
    assert 'href="?tag=marketing"' in page
    eu = listed(admin_client, tag="eu")
    assert str(onboarding) in eu
    assert str(newsletter) not in eu
    assert str(onboarding) not in listed(admin_client, tag="no-such-tag")
    assert [i.id for i in WorkflowInstance.objects.tagged("marketing").to_instances()] == [
        newsletter
    ]
