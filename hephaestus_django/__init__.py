"""hephaestus-django: durable step workflows for Django, stored in PostgreSQL.

The names below are the public API. They are imported lazily (PEP 562), so
``import hephaestus_django.core`` or ``hephaestus_django.runtime`` never pulls
Django in: only touching a Django-backed name such as ``storages`` does.
"""

from __future__ import annotations

import importlib
from importlib.metadata import PackageNotFoundError, version
from typing import TYPE_CHECKING, Any

try:
    __version__ = version("hephaestus-django")
except PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0.0.0+unknown"

_EXPORTS = {
    # core: the workflow model
    "Step": "hephaestus_django.core.steps",
    "StepRef": "hephaestus_django.core.steps",
    "Done": "hephaestus_django.core.steps",
    "Wait": "hephaestus_django.core.steps",
    "WaitForEvent": "hephaestus_django.core.steps",
    "Child": "hephaestus_django.core.children",
    "Debug": "hephaestus_django.core.steps",
    "Map": "hephaestus_django.core.maps",
    "MapItem": "hephaestus_django.core.maps",
    "Event": "hephaestus_django.core.outcomes",
    "Async": "hephaestus_django.core.outcomes",
    "Route": "hephaestus_django.core.graph",
    "Retry": "hephaestus_django.core.policies",
    "Concurrency": "hephaestus_django.core.flow",
    "RateLimit": "hephaestus_django.core.flow",
    "Upgrade": "hephaestus_django.core.upgrades",
    "KeyScope": "hephaestus_django.core.keys",
    "Status": "hephaestus_django.core.status",
    "Instance": "hephaestus_django.core.instance",
    "Context": "hephaestus_django.core.instance",
    # core: the errors (every public class of core/errors.py; tests check none is missing)
    "HephaestusError": "hephaestus_django.core.errors",
    "WorkflowDefinitionError": "hephaestus_django.core.errors",
    "StepDefinitionError": "hephaestus_django.core.errors",
    "ConcurrencyKeyError": "hephaestus_django.core.errors",
    "UnknownWorkflowError": "hephaestus_django.core.errors",
    "InvalidInstanceError": "hephaestus_django.core.errors",
    "EngineError": "hephaestus_django.core.errors",
    "InstanceNotWaitingError": "hephaestus_django.core.errors",
    "InstanceNotCancellableError": "hephaestus_django.core.errors",
    "InstanceNotCompensableError": "hephaestus_django.core.errors",
    "InstanceNotPausableError": "hephaestus_django.core.errors",
    "RewindError": "hephaestus_django.core.errors",
    "RewindPlan": "hephaestus_django.core.rewind",
    "UnexpectedEventError": "hephaestus_django.core.errors",
    "UpgradeError": "hephaestus_django.core.errors",
    "StepOutcomeError": "hephaestus_django.core.errors",
    "StepTimeout": "hephaestus_django.core.errors",
    "MapItemError": "hephaestus_django.core.errors",
    "ChildContextError": "hephaestus_django.core.errors",
    "StorageError": "hephaestus_django.core.errors",
    "InstanceNotFound": "hephaestus_django.core.errors",
    "InstanceDeletedError": "hephaestus_django.core.errors",
    "StaleInstanceError": "hephaestus_django.core.errors",
    "ScheduleError": "hephaestus_django.core.errors",
    "DebounceError": "hephaestus_django.core.errors",
    "Debounce": "hephaestus_django.core.debounce",
    "BulkOperationError": "hephaestus_django.core.errors",
    "SerializationError": "hephaestus_django.core.errors",
    "StateTooLargeError": "hephaestus_django.core.errors",
    "DuplicateInstanceError": "hephaestus_django.core.errors",
    "CorruptInstanceError": "hephaestus_django.core.errors",
    "InvalidQueryError": "hephaestus_django.core.errors",
    "InvalidJobError": "hephaestus_django.core.errors",
    "BackendNotConfigured": "hephaestus_django.core.errors",
    # runtime: running and storing
    "Workflow": "hephaestus_django.runtime.workflow",
    "VersionedWorkflow": "hephaestus_django.runtime.workflow",
    "InMemoryStorage": "hephaestus_django.runtime.memory",
    "LocalRunner": "hephaestus_django.runtime.runner",
    "QueuedRunner": "hephaestus_django.runtime.queued",
    "InMemoryDispatcher": "hephaestus_django.runtime.memory_dispatch",
    # Django integration (importing these needs configured Django settings)
    "storages": "hephaestus_django.conf",
    "DjangoStorage": "hephaestus_django.postgres.storage",
}

__all__ = [
    "Async",
    "BackendNotConfigured",
    "BulkOperationError",
    "Child",
    "ChildContextError",
    "Concurrency",
    "ConcurrencyKeyError",
    "Context",
    "CorruptInstanceError",
    "Debounce",
    "DebounceError",
    "Debug",
    "DjangoStorage",
    "Done",
    "DuplicateInstanceError",
    "EngineError",
    "Event",
    "HephaestusError",
    "InMemoryDispatcher",
    "InMemoryStorage",
    "Instance",
    "InstanceDeletedError",
    "InstanceNotCancellableError",
    "InstanceNotCompensableError",
    "InstanceNotFound",
    "InstanceNotPausableError",
    "InstanceNotWaitingError",
    "InvalidInstanceError",
    "InvalidJobError",
    "InvalidQueryError",
    "KeyScope",
    "LocalRunner",
    "Map",
    "MapItem",
    "MapItemError",
    "QueuedRunner",
    "RateLimit",
    "Retry",
    "RewindError",
    "RewindPlan",
    "Route",
    "ScheduleError",
    "SerializationError",
    "StaleInstanceError",
    "StateTooLargeError",
    "Status",
    "Step",
    "StepDefinitionError",
    "StepOutcomeError",
    "StepRef",
    "StepTimeout",
    "StorageError",
    "UnexpectedEventError",
    "UnknownWorkflowError",
    "Upgrade",
    "UpgradeError",
    "VersionedWorkflow",
    "Wait",
    "WaitForEvent",
    "Workflow",
    "WorkflowDefinitionError",
    "__version__",
    "storages",
]


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'hephaestus_django' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(__all__)


if TYPE_CHECKING:
    from hephaestus_django.conf import storages
    from hephaestus_django.core.children import Child
    from hephaestus_django.core.debounce import Debounce
    from hephaestus_django.core.errors import (
        BackendNotConfigured,
        BulkOperationError,
        ChildContextError,
        ConcurrencyKeyError,
        CorruptInstanceError,
        DebounceError,
        DuplicateInstanceError,
        EngineError,
        HephaestusError,
        InstanceDeletedError,
        InstanceNotCancellableError,
        InstanceNotCompensableError,
        InstanceNotFound,
        InstanceNotPausableError,
        InstanceNotWaitingError,
        InvalidInstanceError,
        InvalidJobError,
        InvalidQueryError,
        MapItemError,
        RewindError,
        ScheduleError,
        SerializationError,
        StaleInstanceError,
        StateTooLargeError,
        StepDefinitionError,
        StepOutcomeError,
        StepTimeout,
        StorageError,
        UnexpectedEventError,
        UnknownWorkflowError,
        UpgradeError,
        WorkflowDefinitionError,
    )
    from hephaestus_django.core.flow import Concurrency, RateLimit
    from hephaestus_django.core.graph import Route
    from hephaestus_django.core.instance import Context, Instance
    from hephaestus_django.core.keys import KeyScope
    from hephaestus_django.core.maps import Map, MapItem
    from hephaestus_django.core.outcomes import Async, Event
    from hephaestus_django.core.policies import Retry
    from hephaestus_django.core.rewind import RewindPlan
    from hephaestus_django.core.status import Status
    from hephaestus_django.core.steps import Debug, Done, Step, StepRef, Wait, WaitForEvent
    from hephaestus_django.core.upgrades import Upgrade
    from hephaestus_django.postgres.storage import DjangoStorage
    from hephaestus_django.runtime.memory import InMemoryStorage
    from hephaestus_django.runtime.memory_dispatch import InMemoryDispatcher
    from hephaestus_django.runtime.queued import QueuedRunner
    from hephaestus_django.runtime.runner import LocalRunner
    from hephaestus_django.runtime.workflow import VersionedWorkflow, Workflow
