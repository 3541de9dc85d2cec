"""Imported only by ``hephaestus_django``'s autodiscovery; no test imports this module."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from hephaestus_django import Context, Done, Instance, Step, Workflow


class Greet(Step):
    events = ("greeted",)

    def execute(self, instance: Instance, config: Mapping[str, Any], context: Context) -> str:
        return "greeted"


class Discovered(Workflow):
    start = Greet
    transitions = {Greet: {"greeted": Done}}
