"""Workflow classes that more than one test module runs.

Each registers under its dotted path in this module (``tests.support.workflows.<name>``);
no test compares that path with a literal.
"""

from __future__ import annotations

from hephaestus_django import Done, KeyScope, WaitForEvent, Workflow

# --- business keys through the public API (tests/unit/test_business_keys.py and its Django twin)


class AwaitPayment(WaitForEvent):
    events = ("paid",)


class Fulfilment(Workflow):
    start_step = AwaitPayment
    transitions = {AwaitPayment: {"paid": Done}}


# --- one workflow per key scope (the storage contract, the admin's key column) -----------------


class AwaitKeyed(WaitForEvent):
    events = ("go",)


def _keyed_workflow(scope: str, name: str = "") -> type[Workflow]:
    return type(
        name or f"Keyed{scope.title()}",
        (Workflow,),
        {
            "key_scope": scope,
            "start_step": AwaitKeyed,
            "transitions": {AwaitKeyed: {"go": Done}},
            "__module__": __name__,
        },
    )


KEYED = {scope.value: _keyed_workflow(scope.value) for scope in KeyScope}
"""A workflow per :class:`KeyScope`, by the scope's value."""
OTHER_GLOBAL = _keyed_workflow("global", "OtherGlobal")
"""A second workflow under the global scope."""
