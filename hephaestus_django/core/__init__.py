"""The workflow model and engine: pure Python, no Django, no I/O.

Define steps and workflows, validate them when the class is defined, and move
instances through pure state transitions. The runtime layer
(:mod:`hephaestus_django.runtime`) executes steps and persists instances.
"""

from hephaestus_django.core.errors import (
    CorruptInstanceError,
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
    RewindError,
    SerializationError,
    StaleInstanceError,
    StateTooLargeError,
    StepDefinitionError,
    StepOutcomeError,
    StepTimeout,
    StorageError,
    UnexpectedEventError,
    UnknownWorkflowError,
    WorkflowDefinitionError,
)
from hephaestus_django.core.graph import Route, WorkflowGraph
from hephaestus_django.core.instance import (
    Cancellation,
    Compensation,
    Context,
    Failure,
    HistoryEntry,
    Instance,
    Waiting,
)
from hephaestus_django.core.keys import KeyScope
from hephaestus_django.core.outcomes import Async, Event
from hephaestus_django.core.policies import Retry
from hephaestus_django.core.status import Status
from hephaestus_django.core.steps import Debug, Done, Step, StepRef, Wait, WaitForEvent
from hephaestus_django.core.workflow import WorkflowDefinition

__all__ = [
    "Async",
    "Cancellation",
    "Compensation",
    "Context",
    "CorruptInstanceError",
    "Debug",
    "Done",
    "DuplicateInstanceError",
    "EngineError",
    "Event",
    "Failure",
    "HephaestusError",
    "HistoryEntry",
    "Instance",
    "InstanceDeletedError",
    "InstanceNotCancellableError",
    "InstanceNotCompensableError",
    "InstanceNotFound",
    "InstanceNotPausableError",
    "InstanceNotWaitingError",
    "InvalidInstanceError",
    "InvalidJobError",
    "KeyScope",
    "Retry",
    "RewindError",
    "Route",
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
    "Wait",
    "WaitForEvent",
    "Waiting",
    "WorkflowDefinition",
    "WorkflowDefinitionError",
    "WorkflowGraph",
]
