"""factory-boy factories for workflow instances, for your own tests.

::

    from hephaestus_django.testing.factories import InstanceFactory, WorkflowInstanceFactory

    pending = InstanceFactory.build(workflow=OrderWorkflow, context={"order_id": 1})
    running = InstanceFactory.build(workflow=OrderWorkflow, started=True)
    row = WorkflowInstanceFactory(workflow=OrderWorkflow, context={"order_id": 2})

``InstanceFactory`` builds engine instances without storing them.
``WorkflowInstanceFactory`` stores one through ``DjangoStorage`` (so its state
is exactly what the storage would write) and returns the model row; pass
``run=True`` to run the workflow's steps until it waits, completes or fails.
Needs ``factory-boy`` (``pip install "hephaestus-django[test]"``).
"""

from __future__ import annotations

from typing import Any
from uuid import uuid4

try:
    import factory
except ImportError as error:  # pragma: no cover - depends on the environment
    raise ImportError(
        "hephaestus_django.testing.factories needs factory-boy: "
        'pip install "hephaestus-django[test]"'
    ) from error

from hephaestus_django.core import engine
from hephaestus_django.core.instance import Instance


class InstanceFactory(factory.Factory):  # type: ignore[misc]
    """Engine instances of ``workflow`` (required), pending unless ``started=True``."""

    class Meta:
        model = Instance

    workflow = None
    context = factory.LazyFunction(dict)
    id = factory.LazyFunction(uuid4)
    metadata = factory.LazyFunction(dict)
    started = False

    @classmethod
    def _build(cls, model_class: type, *args: Any, **kwargs: Any) -> Instance:
        return cls._make(**kwargs)

    @classmethod
    def _create(cls, model_class: type, *args: Any, **kwargs: Any) -> Instance:
        return cls._make(**kwargs)

    @classmethod
    def _make(
        cls,
        *,
        workflow: Any,
        context: dict[str, Any],
        id: Any,
        metadata: dict[str, Any],
        started: bool,
    ) -> Instance:
        if workflow is None:
            raise TypeError("InstanceFactory needs workflow=YourWorkflow")
        instance = engine.new_instance(workflow, context, id=id, metadata=metadata)
        return engine.start(instance) if started else instance


class WorkflowInstanceFactory(factory.django.DjangoModelFactory):  # type: ignore[misc]
    """Stored instances: written through ``DjangoStorage``, returned as model rows."""

    class Meta:
        model = "hephaestus_django.WorkflowInstance"

    workflow = None
    context = factory.LazyFunction(dict)
    id = factory.LazyFunction(uuid4)
    using = "default"
    run = False

    @classmethod
    def _create(cls, model_class: Any, *args: Any, **kwargs: Any) -> Any:
        from hephaestus_django.postgres.storage import DjangoStorage
        from hephaestus_django.runtime.runner import LocalRunner

        workflow, using = kwargs.pop("workflow"), kwargs.pop("using")
        if workflow is None:
            raise TypeError("WorkflowInstanceFactory needs workflow=YourWorkflow")
        storage = DjangoStorage(using=using)
        if kwargs.pop("run"):
            instance = LocalRunner().start(
                workflow, kwargs.pop("context"), storage=storage, id=kwargs.pop("id")
            )
        else:
            instance = engine.new_instance(workflow, kwargs.pop("context"), id=kwargs.pop("id"))
            storage.put(instance)
        if kwargs:
            raise TypeError(f"WorkflowInstanceFactory got unexpected fields {sorted(kwargs)}")
        return model_class._default_manager.using(using).get(id=instance.id)
