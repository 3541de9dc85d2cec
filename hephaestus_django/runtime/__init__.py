"""Running and storing workflows: the storage contract, storages, the runner.

Pure Python like the core; Django comes in only through the integration
layer, which plugs its storages into :data:`backends`.
"""

from hephaestus_django.runtime.config import Backends, backends, configure
from hephaestus_django.runtime.filters import FILTER_NAMES, QueryFilters, parse_filters
from hephaestus_django.runtime.memory import InMemoryStorage
from hephaestus_django.runtime.runner import LocalRunner, Runner
from hephaestus_django.runtime.storage import Storage
from hephaestus_django.runtime.workflow import Workflow

__all__ = [
    "FILTER_NAMES",
    "Backends",
    "InMemoryStorage",
    "LocalRunner",
    "QueryFilters",
    "Runner",
    "Storage",
    "Workflow",
    "backends",
    "configure",
    "parse_filters",
]
