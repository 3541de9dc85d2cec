"""Step bases for tests that only build graphs."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from hephaestus_django import Step


class GraphOnly(Step):
    """A step for definition tests: it has an ``execute`` (every step must), which no test
    runs."""

    abstract = True

    def execute(self, instance: Any, config: Mapping[str, Any], context: Any) -> Any:
        raise AssertionError(f"{type(self).__qualname__} is for graphs only and never runs")
