"""Workflow definitions: a start step and transitions, checked when the class is defined.

::

    class Fulfilment(WorkflowDefinition):
        version = 2
        start = ValidateOrder
        transitions = {
            ValidateOrder: {"valid": [ReserveStock, ChargePayment], "invalid": Reject},
            ReserveStock: {"reserved": Ship},
            ChargePayment: {"charged": Ship},
            Ship: {"shipped": Done},
            Reject: {"rejected": Done},
        }

A target is a step class, ``Step.configure(**config)``, a list of those
(fan-out: all run, and must join again before ``Done``), or a
:class:`~hephaestus_django.core.graph.Route` choosing one of several at run
time. Users normally subclass :class:`hephaestus_django.Workflow`, which adds
``start()``/``resume()``/``get()``/``list()`` on top of this class.
"""

from __future__ import annotations

from typing import Any, ClassVar

from hephaestus_django.core.errors import WorkflowDefinitionError
from hephaestus_django.core.graph import WorkflowGraph
from hephaestus_django.core.naming import dotted_path
from hephaestus_django.core.registry import Registry
from hephaestus_django.core.steps import Step, StepRef
from hephaestus_django.core.validation import build_graph

workflow_registry: Registry[type[WorkflowDefinition]] = Registry("workflow")
"""Every concrete workflow class, by dotted path."""


class WorkflowDefinition:
    """Base class of workflow definitions.

    In the class body, ``start`` names the start step (moved to
    ``start_step`` once the class is built, which leaves the name ``start``
    free for the runtime's ``Workflow.start()``), ``transitions`` maps each
    step to ``{event: target}``, and ``version`` (default 1) is written on new
    instances. Set ``abstract = True`` on an intermediate base class that is
    not a workflow by itself.
    """

    version: ClassVar[int] = 1
    transitions: ClassVar[dict[type[Step], dict[str, Any]]] = {}
    start_step: ClassVar[type[Step]]
    graph: ClassVar[WorkflowGraph]
    """The validated graph; built when the class is defined."""
    _start_spec: ClassVar[type[Step] | StepRef | None] = None

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if "start" in cls.__dict__ and not callable(
            getattr(cls.__dict__["start"], "__func__", None)
        ):
            cls._start_spec = cls.__dict__["start"]
            delattr(cls, "start")
        if cls.__dict__.get("abstract", False):
            return
        name = dotted_path(cls)
        version = cls.version
        if isinstance(version, bool) or not isinstance(version, int) or version < 1:
            raise WorkflowDefinitionError(
                name, "invalid-version", f"version must be a positive int, not {version!r}"
            )
        cls.graph = build_graph(name, cls._start_spec, cls.transitions)
        cls.start_step = cls.graph.start
        workflow_registry.register(cls)

    @classmethod
    def path(cls) -> str:
        """The dotted path the workflow is stored under."""
        return dotted_path(cls)

    @classmethod
    def is_abstract(cls) -> bool:
        """True for base classes that are not workflows by themselves."""
        return bool(cls.__dict__.get("abstract", False)) or not hasattr(cls, "graph")
