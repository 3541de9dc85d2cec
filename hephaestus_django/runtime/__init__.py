"""Running and storing workflows: the storage contract, storages, the runners.

Pure Python like the core; Django comes in only through the integration
layer, which plugs its storages into :data:`backends`.
"""

from hephaestus_django.runtime.config import Backends, backends, configure
from hephaestus_django.runtime.contract import Storage
from hephaestus_django.runtime.dispatch import Dispatcher, StepJob, WakeUp
from hephaestus_django.runtime.filters import FILTER_NAMES, QueryFilters, parse_filters
from hephaestus_django.runtime.memory import InMemoryStorage
from hephaestus_django.runtime.memory_dispatch import InMemoryDispatcher
from hephaestus_django.runtime.queued import QueuedRunner
from hephaestus_django.runtime.runner import LocalRunner
from hephaestus_django.runtime.verbs import Runner
from hephaestus_django.runtime.workflow import Workflow

__all__ = [
    "FILTER_NAMES",
    "Backends",
    "Dispatcher",
    "InMemoryDispatcher",
    "InMemoryStorage",
    "LocalRunner",
    "QueryFilters",
    "QueuedRunner",
    "Runner",
    "StepJob",
    "Storage",
    "WakeUp",
    "Workflow",
    "backends",
    "configure",
    "parse_filters",
]
