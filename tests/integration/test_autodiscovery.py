"""Every installed app's ``workflows`` module is imported when Django starts.

``tests.testapp`` is in ``INSTALLED_APPS`` and its ``workflows.py`` is imported by nothing but
``hephaestus_django``'s ``AppConfig.ready()``: this module must never import it, or the tests
below would pass without autodiscovery.
"""

from __future__ import annotations

import sys

from hephaestus_django import InMemoryStorage, Status
from hephaestus_django.core.workflow import workflow_registry

DISCOVERED = "tests.testapp.workflows.Discovered"


def test_the_workflows_module_of_an_installed_app_is_imported() -> None:
    assert "tests.testapp.workflows" in sys.modules


def test_the_registry_resolves_a_discovered_workflow_by_its_dotted_path() -> None:
    workflow = workflow_registry.resolve(DISCOVERED)

    assert workflow.__module__ == "tests.testapp.workflows"
    assert workflow.__qualname__ == "Discovered"
    assert DISCOVERED in workflow_registry.names()


def test_a_discovered_workflow_runs_and_reads_back_by_name() -> None:
    storage = InMemoryStorage()
    workflow = workflow_registry.resolve(DISCOVERED)

    instance_id = workflow.start({}, storage=storage)
    instance = workflow.get(instance_id, storage=storage)

    assert instance.workflow is workflow
    assert instance.status == Status.COMPLETED
