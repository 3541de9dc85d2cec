"""Users' workflow modules type-check: mypy accepts ``start_step = X`` (and refuses ``start = X``).

``start = X`` assigns a step class over the ``Workflow.start()`` classmethod, which mypy reports
as an incompatible override; ``start_step`` is declared on the base class for that reason. mypy
runs on a small user module in a subprocess, against the installed package (its ``py.typed``).
"""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

pytest.importorskip("mypy")

USER_MODULE = """
from datetime import timedelta
from typing import Any

from hephaestus_django import Async, Done, Event, Instance, Step, Wait, WaitForEvent, Workflow
from hephaestus_django.core.instance import Context


class ValidateOrder(Step):
    events = ("valid", "invalid")

    def execute(self, instance: Instance, config: Any, context: Context) -> str | Event:
        if context.initial["total"] > 0:
            return "valid"
        return Event("invalid", updates={"reason": "empty order"})


class AwaitPayment(WaitForEvent):
    events = ("paid",)


class Remind(Step):
    events = ("reminded",)

    def execute(self, instance: Instance, config: Any, context: Context) -> Async:
        return Async(after=timedelta(hours=1), timer_event="reminded")


class Rejected(Done):
    pass


class OrderWorkflow(Workflow):
    START
    transitions = {
        ValidateOrder: {"valid": AwaitPayment, "invalid": Rejected},
        AwaitPayment: {"paid": Remind},
        Remind: {"reminded": Wait.configure(duration=1, unit="hours")},
        Wait: {"timeout": Done},
    }


def place_order(total: int) -> str:
    instance_id = OrderWorkflow.start({"total": total})
    return OrderWorkflow.get(instance_id).status.value
"""


def write_module(tmp_path: Path, name: str, start_line: str) -> Path:
    module = tmp_path / f"{name}.py"
    module.write_text(textwrap.dedent(USER_MODULE).replace("START", start_line))
    return module


@pytest.mark.slow
def test_mypy_accepts_start_step_in_a_users_workflow_and_refuses_start(tmp_path: Path) -> None:
    spelled = write_module(tmp_path, "spelled", "start_step = ValidateOrder")
    legacy = write_module(tmp_path, "legacy", "start = ValidateOrder")
    # One mypy run over both modules (it is the slow part); --strict, as a careful user runs it.
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "mypy",
            "--strict",
            "--no-incremental",
            "--config-file",
            "/dev/null",
            "--cache-dir",
            str(tmp_path / ".mypy_cache"),
            spelled.name,
            legacy.name,
        ],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        check=False,
    )
    errors = [line for line in result.stdout.splitlines() if ": error:" in line]
    assert errors, result.stdout + result.stderr
    assert all(line.startswith(f"{legacy.name}:") for line in errors), result.stdout
    assert any('base class "Workflow" defined the type as' in line for line in errors)

    # Both spellings also define a working workflow when the module is imported.
    for name in ("spelled", "legacy"):
        imported = subprocess.run(
            [sys.executable, "-c", f"import {name}; print({name}.OrderWorkflow.graph.start)"],
            cwd=tmp_path,
            capture_output=True,
            text=True,
            check=False,
        )
        assert imported.returncode == 0, imported.stderr
        assert "ValidateOrder" in imported.stdout
