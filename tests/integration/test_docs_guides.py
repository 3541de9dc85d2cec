"""The guides' and reference pages' code blocks, run as they are written.

The self-contained examples ("Example (runs as it is)") are executed in a namespace of their
own; settings blocks are applied with pytest-django's ``settings`` and must pass ``manage.py
check``; shell lines run as management commands; the testing guide's files run under pytest in a
project of their own.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
import sys
import threading
import tomllib
import types
from io import StringIO
from pathlib import Path
from typing import Any, ClassVar

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError

from hephaestus_django import Done, WaitForEvent, Workflow, storages
from hephaestus_django.conf import runner as configured_runner
from hephaestus_django.runtime import QueuedRunner, configure
from tests.docblocks import REPO, block


def run_example(page: str, fragment: str, name: str) -> dict[str, Any]:
    """Execute the block as a module named ``name`` would run, and return its names."""
    namespace: dict[str, Any] = {"__name__": name}
    try:
        exec(compile(block(page, fragment), page, "exec"), namespace)
    finally:
        configure()
    return namespace


def check() -> None:
    call_command("check", fail_level="WARNING", stdout=StringIO(), stderr=StringIO())


# --- Getting started ------------------------------------------------------------------------


def test_installation() -> None:
    """The install lines are the README's quickstart's, which its test runs in a fresh
    virtualenv; the extras they name exist; the apps are the quickstart's."""
    readme = block("README.md", "pip install ./hephaestus-django")
    install = block("docs/installation.md", "git clone")
    assert install.replace("'", '"').strip().split("\n")[1] == readme.strip().split("\n")[1]
    assert install.split("\n")[0] == "git clone <repository-url> hephaestus-django"
    (line,) = block("docs/installation.md", "[procrastinate,otel]").strip().splitlines()
    extras = re.fullmatch(r"pip install '\./hephaestus-django\[([\w,]+)\]'", line)
    assert extras is not None
    declared = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    assert set(extras[1].split(",")) <= set(declared["optional-dependencies"])
    apps = block("docs/installation.md", '"hephaestus_django",\n]')
    assert apps == block("README.md", '"hephaestus_django",\n]')


# --- Guides -----------------------------------------------------------------------------------


def test_procrastinate_settings(settings: Any) -> None:
    """The procrastinate settings, added to this suite's (which install procrastinate's app
    already: changing INSTALLED_APPS in a test would run its ready() twice)."""
    namespace: dict[str, Any] = {
        "INSTALLED_APPS": [app for app in settings.INSTALLED_APPS if "procrastinate" not in app]
    }
    exec(block("docs/guides/workers.md", "ProcrastinateDispatcher"), namespace)
    assert sorted(namespace["INSTALLED_APPS"]) == sorted(settings.INSTALLED_APPS)
    settings.HEPHAESTUS = namespace["HEPHAESTUS"]
    check()
    built = configured_runner.get()
    assert isinstance(built, QueuedRunner)
    assert built.dispatcher.joins_transaction(storages["default"])


def test_testing_guide_under_pytest(tmp_path: Path) -> None:
    """The guide's three files make a test directory of their own; pytest runs it green."""
    tests = tmp_path / "tests"
    tests.mkdir()
    for fragment, name in [
        ("def workflows_in_memory", "conftest.py"),
        ("class Reminder(", "test_reminders.py"),
        ("InMemoryDispatcher()", "test_queued.py"),
    ]:
        found = block("docs/guides/testing.md", fragment)
        (tests / name).write_text(found)
    env = {key: value for key, value in os.environ.items() if key != "DJANGO_SETTINGS_MODULE"}
    env["PYTHONPATH"] = str(REPO)
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-q",
            "-p",
            "no:cacheprovider",
            "-p",
            "no:django",
            "tests",
        ],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "2 passed" in result.stdout  # the conftest.py holds a fixture, not a test


def test_business_keys() -> None:
    namespace = run_example("docs/guides/business-keys.md", "class Fulfilment(", "docs_keys")
    assert namespace["first"] == namespace["again"]


def test_coming_from_hephaestus() -> None:
    """version_for chooses by tenant; metadata and the original's retry policy are accepted."""
    namespace = run_example(
        "docs/guides/coming-from-hephaestus.md", "class Pricing(", "docs_coming"
    )
    assert namespace["Pricing"].metadata["owner"] == "billing"
    assert namespace["Quote"].retry.max_attempts == 5


def test_child_workflows() -> None:
    namespace = run_example("docs/guides/child-workflows.md", "class Ship(Child)", "docs_children")
    assert namespace["order"].children["ship"] == namespace["child_id"]


def test_versions_and_upgrades() -> None:
    """Version 1's instance upgraded to version 2 (a step renamed, one added) and run there."""
    namespace = run_example("docs/guides/versions.md", "class OnboardingV1(", "docs_versions")
    assert namespace["preview"].workflow_version == 2
    assert namespace["upgraded"].upgrades[0].steps == {
        "docs_versions.SendWelcome": "docs_versions.SendWelcomeEmail"
    }


def test_retries() -> None:
    """Two failed attempts, then the charge goes through."""
    namespace = run_example("docs/guides/retries.md", "class ChargeCard(", "docs_retries")
    assert namespace["instance"].status == "completed"
    assert namespace["ChargeCard"].calls == 3


def test_flow_control() -> None:
    """Five charges at once through the gateway; the urgent one first in line."""
    namespace = run_example("docs/guides/flow-control.md", "STRIPE = Concurrency(", "docs_flow")
    assert namespace["ChargeCard"].charged[5] == "urgent"
    assert all(use.holding == 0 for use in namespace["storage"].limits())


def test_debounce() -> None:
    """Three saves of one customer, one sync with the last name."""
    namespace = run_example("docs/guides/flow-control.md", "class SyncCustomer(", "docs_debounce")
    assert len(namespace["ids"]) == 1
    assert namespace["storage"].due_starts(10) == []


def test_rate_limits() -> None:
    """Two receipts a second per account: the third waits for the worker; the sixth import
    waits for its minute."""
    namespace = run_example("docs/guides/flow-control.md", "class SendReceipt(", "docs_rates")
    assert namespace["SendReceipt"].sent == [0, 1, "other", 2]
    storage = namespace["storage"]
    [waiting] = [i for i in namespace["imports"] if storage.get(i).status == "running"]
    assert [place.position for place in storage.places(waiting)] == [1]
    namespace["runner"].close()


def test_workflow_limits() -> None:
    """Two onboardings at a time: the third starts when the first ends."""
    namespace = run_example("docs/guides/flow-control.md", "class Onboarding(", "docs_running")
    storage = namespace["storage"]
    assert storage.get(namespace["first"]).status == "completed"
    assert [use.holding for use in storage.limits()] == [2]
    namespace["runner"].close()


def test_timeouts() -> None:
    """Attempt 1 hangs past its timeout and is abandoned, attempt 2 completes, and attempt 1's
    late result, once its thread ended, is not recorded."""
    namespace = run_example("docs/guides/retries.md", "class FetchRates(", "docs_timeouts")
    instance = namespace["instance"]
    assert instance.status == "completed"
    assert namespace["FetchRates"].calls == 2
    for thread in threading.enumerate():  # attempt 1's thread, unless it ended already
        if thread.name == f"hephaestus-attempt FetchRates of {instance.id}":
            thread.join(timeout=30)
    stored = namespace["storage"].get(instance.id)
    assert stored.revision == instance.revision
    assert stored.context.result(namespace["FetchRates"]) == {"attempt": 2}


def test_maps() -> None:
    """Three lines charged, the second after a retry of its own, the total sent once."""
    namespace = run_example("docs/guides/maps.md", "class ChargeLine(", "docs_maps")
    instance = namespace["instance"]
    assert instance.status == "completed"
    sent = [entry for entry in instance.execution_history if entry.event == "sent"]
    assert len(sent) == 1
    assert namespace["ChargeLine"].attempts == {"A-1": 1, "B-2": 2, "C-3": 1}


def test_map_over_children() -> None:
    """A shipment child per warehouse, Lyon's retried as a new child, the order confirmed once."""
    namespace = run_example("docs/guides/maps.md", "class ShipFromWarehouses(", "docs_map_children")
    order = namespace["order"]
    assert order.status == "completed"
    confirmed = [entry for entry in order.execution_history if entry.event == "confirmed"]
    assert len(confirmed) == 1


def test_cancelling() -> None:
    """The order is cancelled where it waited, its charge refunded before its stock released."""
    namespace = run_example("docs/guides/cancelling.md", "Order.cancel(order_id", "docs_cancel")
    instance = namespace["instance"]
    assert instance.cancellation.steps == (namespace["AwaitShipment"],)
    assert instance.compensation.done
    assert namespace["Order"].compensate_on_failure is True


def test_fixing_instances(capsys: pytest.CaptureFixture[str]) -> None:
    """The failed order rewound after the fix, forked with another context, a second failed
    order compensated, a third paused and unpaused, the workflow held: the page's five blocks,
    run in order in one namespace."""
    page = "docs/guides/fixing-instances.md"
    namespace: dict[str, Any] = {"__name__": "docs_fixing"}
    try:
        for fragment in (
            "TAX_RATE = 20  # the bug",
            "copy = Order.fork(",
            "failed_id = ",
            "Order.pause(",
            "Order.pause_all(",
        ):
            exec(compile(block(page, fragment), page, "exec"), namespace)
    finally:
        configure()
    assert "cannot be rewound to step Done: it was never reached" in capsys.readouterr().out
    assert namespace["copy"].status == "waiting"
    assert namespace["instance"].compensation.done
    assert namespace["held"].status == "running"
    assert namespace["later_id"] != namespace["shipping_id"]


def test_signals() -> None:
    """The receivers get the failure, then the completion, as the block's last comment says."""
    from hephaestus_django import signals

    namespace: dict[str, Any] = {}
    try:
        namespace = run_example(
            "docs/guides/observability.md", "@receiver(step_failed)", "docs_sig"
        )
        code = block("docs/guides/observability.md", "@receiver(step_failed)")
        printed = code.rsplit("print(seen)\n# ", 1)[1].strip()
        assert repr(namespace["seen"]) == printed
    finally:
        signals.step_failed.disconnect(namespace.get("report_failure"))
        signals.instance_completed.disconnect(
            namespace.get("invoiced"), sender=namespace.get("Invoicing")
        )


def test_tracing(capsys: pytest.CaptureFixture[str]) -> None:
    """The tracing block prints what its comments say it prints."""
    from hephaestus_django import telemetry

    was = telemetry.installed()
    try:
        code = block("docs/guides/observability.md", "InMemorySpanExporter()")
        run_example("docs/guides/observability.md", "InMemorySpanExporter()", "docs_tracing")
        expected = [line[2:] for line in code.splitlines() if line.startswith("# hephaestus.")]
        assert capsys.readouterr().out.splitlines() == expected
    finally:
        telemetry.uninstall()
        if was:
            telemetry.install()


@pytest.mark.django_db
def test_operations() -> None:
    """The ``hephaestus_status`` lines run as written: the report, its JSON, and the check,
    which fails while no worker was ever seen and passes after a worker's pass."""
    from hephaestus_django.worker import run_once

    lines = block("docs/guides/operations.md", "hephaestus_status").strip().splitlines()
    assert len(lines) == 3
    outputs = []
    for line in lines:
        assert line.startswith("python manage.py hephaestus_status")
        arguments = shlex.split(line)[2:]
        out = StringIO()
        if "--check" in arguments:
            with pytest.raises(CommandError, match="--max-worker-silence") as failed:
                call_command(*arguments, stdout=StringIO())
            assert failed.value.returncode == 1
            run_once("default")
        call_command(*arguments, stdout=out)
        outputs.append(out.getvalue())
    report, document, checked = outputs
    assert "Overdue timers:" in report
    assert json.loads(document)["instances"]["total"] == {"count": 0, "kind": "exact"}
    assert "CROSSED" not in checked


@pytest.mark.django_db(transaction=True)
def test_async_view() -> None:
    """The view answers through Django's request factory: the async step ran, and the instance
    waits for its acceptance."""
    from asgiref.sync import async_to_sync
    from django.test import AsyncRequestFactory

    from hephaestus_django.runtime import LocalRunner
    from hephaestus_django.storage import DjangoStorage

    configure(storages={"default": DjangoStorage()}, runner=LocalRunner())
    try:
        # a module every process could import, as a project's views.py is (a durable storage
        # refuses workflows defined anywhere else)
        module = types.ModuleType("docs_async")
        module.__file__ = str(REPO / "docs" / "guides" / "async.md")
        sys.modules[module.__name__] = module
        namespace: dict[str, Any] = module.__dict__
        exec(
            compile(block("docs/guides/async.md", "async def quote_view("), "async", "exec"),
            namespace,
        )
        request = AsyncRequestFactory().get("/quote/", {"customer": "42"})
        response = async_to_sync(namespace["quote_view"])(request)
        assert response.status_code == 200
        body = json.loads(response.content)
        assert body["quote"] == {"price": pytest.approx(22.0)}
        instance = namespace["Quote"].get(key="quote-42")
        assert str(instance.id) == body["id"]
        assert instance.status == "waiting"
    finally:
        sys.modules.pop("docs_async", None)
        configure()


def test_named_storages(tmp_path: Path) -> None:
    """The setting passes the checks in a project whose DATABASES has both aliases (a test
    cannot add a database alias to a running suite, so a process of its own checks it)."""
    from django.db import connection

    script = f"""
import django
from django.conf import settings
from django.core.management import call_command

database = {{**{connection.settings_dict!r}, "NAME": "postgres"}}
settings.configure(
    INSTALLED_APPS=["django.contrib.contenttypes", "django.contrib.auth",
                    "django.contrib.postgres", "hephaestus_django"],
    DATABASES={{"default": database, "tenant_a": database}},
    DEFAULT_AUTO_FIELD="django.db.models.BigAutoField",  # as startproject sets it
)
django.setup()
{block("docs/guides/storages.md", '"tenant_a": {')}
settings.HEPHAESTUS = HEPHAESTUS
call_command("check", fail_level="WARNING")
from hephaestus_django import storages
assert storages["tenant_a"] is not storages["default"]
print("checked")
"""
    env = {key: value for key, value in os.environ.items() if key != "DJANGO_SETTINGS_MODULE"}
    env["PYTHONPATH"] = str(REPO)
    result = subprocess.run(
        [sys.executable, "-c", script], cwd=tmp_path, env=env, capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr
    assert "checked" in result.stdout


# --- Reference and explanation -------------------------------------------------------------------


def test_api_import() -> None:
    exec(block("docs/reference/api.md", "from hephaestus_django import"), {})


def test_settings_reference(settings: Any) -> None:
    """The settings reference's two examples pass the checks as they are."""
    for fragment in ["LocalRunner", "TasksDispatcher"]:
        namespace: dict[str, Any] = {}
        exec(block("hephaestus_django/docs/settings.md", fragment), namespace)
        settings.HEPHAESTUS = namespace["HEPHAESTUS"]
        if "TASKS" in namespace:
            settings.TASKS = namespace["TASKS"]
        check()


class AwaitAnything(WaitForEvent):
    events = ("go",)


class OrderWorkflow(Workflow):
    start_step = AwaitAnything
    transitions: ClassVar = {AwaitAnything: {"go": Done}}


@pytest.mark.django_db
def test_storage_api() -> None:
    """The storage API block, on the settings' storage, against an instance it can find."""
    instance_id = OrderWorkflow.start({})
    instance = OrderWorkflow.get(instance_id)
    namespace = {"instance_id": instance_id, "instance": instance, "OrderWorkflow": OrderWorkflow}
    exec(block("docs/explanation/how-it-works.md", 'storages["default"]'), namespace)
    assert OrderWorkflow.list() == []  # the block deleted it
