"""Instances run by the pure engine and put into a storage, as the storage tests set them up."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from hephaestus_django import Workflow
from hephaestus_django.core import engine
from hephaestus_django.core.instance import Instance
from hephaestus_django.runtime.contract import Storage
from tests import flows
from tests.support.engine import run_waves
from tests.support.workflows import KEYED


def stored(storage: Storage, workflow: type[Workflow] = flows.IfElse, **initial: Any) -> Instance:
    instance = run_waves(engine.start(engine.new_instance(workflow, {"script": {}, **initial})))
    storage.put(instance)
    return instance


def keyed(
    storage: Storage, scope: str, key: str, workflow: type[Workflow] | None = None
) -> Instance:
    instance = run_waves(engine.start(engine.new_instance(workflow or KEYED[scope], {}, key=key)))
    storage.put(instance)
    return instance


def flows_now() -> datetime:
    return datetime(2026, 11, 24, 12, 30, tzinfo=UTC)
