"""Reading the admin's pages in the integration tests: URLs, changelist rows, page sections,
messages, and an instance read back from its row."""

from __future__ import annotations

import re

from django.contrib.messages import get_messages
from django.http import HttpResponse
from django.test import Client
from django.urls import reverse

from hephaestus_django import Instance
from hephaestus_django.models import WorkflowInstance

CHANGELIST = reverse("admin:hephaestus_django_workflowinstance_changelist")

SECTIONS = (
    "graph",
    "overview",
    "steps",
    "children",
    "workflow-metadata",
    "metadata",
    "history",
    "initial",
    "results",
    "raw",
)
"""The sections of the instance page, in order (each ``id="hx-<name>"``)."""


def detail_url(instance_id: object) -> str:
    return reverse("admin:hephaestus_django_workflowinstance_change", args=[instance_id])


def url(name: str, instance_id: object) -> str:
    return reverse(f"admin:hephaestus_django_workflowinstance_{name}", args=[instance_id])


# --- the changelist ---------------------------------------------------------------------------


def listed(client: Client, **params: str) -> str:
    response = client.get(CHANGELIST, params)
    assert response.status_code == 200
    return response.content.decode()


def row_of(page: str, instance_id: object) -> str:
    """The changelist row (``<tr>``) of one instance."""
    match = re.search(rf"<tr>(?:(?!</tr>).)*{instance_id}(?:(?!</tr>).)*</tr>", page, re.DOTALL)
    assert match, f"no row for {instance_id}"
    return match.group(0)


# --- the instance page ------------------------------------------------------------------------


def shown(client: Client, instance_id: object) -> str:
    response = client.get(detail_url(instance_id))
    assert response.status_code == 200
    return response.content.decode()


def section(page: str, name: str) -> str:
    """The HTML of the page's section ``id="hx-<name>"``, up to the next section."""
    start = page.index(f'id="hx-{name}"')
    following = [page.find(f'id="hx-{other}"', start + 1) for other in SECTIONS if other != name]
    end = min([i for i in following if i > start], default=len(page))
    return page[start:end]


# --- the operations ---------------------------------------------------------------------------


def messages_of(response: HttpResponse) -> list[tuple[str, str]]:
    return [(m.level_tag, str(m)) for m in get_messages(response.wsgi_request)]  # type: ignore[attr-defined]


def reloaded(instance: Instance) -> Instance:
    return WorkflowInstance.objects.get(pk=instance.id).to_instance()
