"""Every code block of the README is run, so the quickstart cannot rot.

The quickstart is followed word for word, as a newcomer would: a fresh virtualenv, ``pip install``
of this checkout, ``django-admin startproject``, the README's settings lines, its
``shop/workflows.py``, ``manage.py migrate``, then its Python blocks in ``manage.py shell``. Blocks
that are shell commands for contributors (``make test``, ``make demo``, ``make bench``) are what
``.ci/run`` runs. :func:`test_every_block_is_verified` fails when a block is added that nothing
here runs.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
import sys
import textwrap
import threading
import uuid
from collections.abc import Iterator
from io import StringIO
from pathlib import Path
from typing import Any

import psycopg
import pytest
from django.core.management import call_command
from django.db import connection

from hephaestus_django import storages
from hephaestus_django.conf import runner as configured_runner
from hephaestus_django.runtime import QueuedRunner, configure

REPO = Path(__file__).resolve().parents[2]
README = (REPO / "README.md").read_text()
BLOCKS = re.findall(r"^```(\w+)\n(.*?)^```", README, flags=re.DOTALL | re.MULTILINE)

# Each block is recognised by a fragment of its text, and run by the test named here.
VERIFIED = {
    "pip install ./hephaestus-django": "test_quickstart_word_for_word",
    '"ENGINE": "django.db.backends.postgresql"': "test_quickstart_word_for_word",
    '"hephaestus_django",\n]': "test_quickstart_word_for_word",
    "python manage.py migrate": "test_quickstart_word_for_word",
    "class OrderWorkflow(Workflow):": "test_quickstart_word_for_word",
    "instance_id = OrderWorkflow.start(": "test_quickstart_word_for_word",
    "from hephaestus_django.models import WorkflowInstance": "test_quickstart_word_for_word",
    'storage = storages["default"]': "test_quickstart_word_for_word",
    '"tenant_a": {': "test_quickstart_word_for_word",
    "InMemoryStorage()})  # takes precedence": "test_runtime_without_django",
    "dispatcher = InMemoryDispatcher()": "test_queued_runner_in_your_tests",
    "runner.start(Reminder": "test_a_test_moves_the_storages_clock",
    "class ChargeCard(Step):": "test_retries_section",
    "class Fulfilment(Workflow):": "test_business_keys_section",
    "async def quote_view(request):": "test_async_section",
    "class OnboardingV1(Workflow):": "test_versions_and_upgrades_section",
    "class FetchRates(Step):": "test_timeouts_section",
    "Order.cancel(order_id": "test_cancelling_section",
    "@receiver(step_failed)": "test_signals_section",
    "InMemorySpanExporter()": "test_tracing_section",
    "manage.py hephaestus_graph": "test_graph_command_prints_the_readme_graph",
    "manage.py hephaestus_status": "test_operations_section",
    "queues.procrastinate.ProcrastinateDispatcher": "test_procrastinate_settings_pass_the_checks",
    "flowchart TD": "test_graph_command_prints_the_readme_graph",
    '"django_tasks_db.DatabaseBackend"': "test_the_readmes_tasks_settings_pass_the_checks",
    "python manage.py db_worker": "test_the_readmes_tasks_commands_are_the_process_tests",
    "[Unit]": "test_the_supervisor_examples_restart_real_commands",
    "kind: Deployment": "test_the_supervisor_examples_restart_real_commands",
    "[program:hephaestus-steps]": "test_the_supervisor_examples_restart_real_commands",
    "make test": ".ci/run",
    "make demo": ".ci/run",
    "make bench": ".ci/run",
}


def block(fragment: str) -> str:
    (found,) = [code for _lang, code in BLOCKS if fragment in code]
    return found


def test_every_block_is_verified() -> None:
    for lang, code in BLOCKS:
        claims = [fragment for fragment in VERIFIED if fragment in code]
        assert len(claims) == 1, f"README {lang} block is run by no test (or by two):\n{code}"
    ci = (REPO / ".ci" / "run").read_text()
    for fragment, runner in VERIFIED.items():
        if runner == ".ci/run":
            assert fragment in ci, f".ci/run does not run the README's {fragment!r}"


def run(*command: str | Path, cwd: Path, env: dict[str, str] | None = None) -> str:
    result = subprocess.run(
        [str(part) for part in command],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        check=False,
        timeout=600,
    )
    assert result.returncode == 0, f"{command} failed:\n{result.stdout}\n{result.stderr}"
    return result.stdout


@pytest.fixture
def fresh_database() -> Iterator[dict[str, str]]:
    """A new, empty database on the test server, dropped afterwards."""
    server = connection.settings_dict
    name = f"readme_{uuid.uuid4().hex[:12]}"
    params = {
        "host": server["HOST"] or "127.0.0.1",
        "port": str(server["PORT"] or 5432),
        "user": server["USER"] or "postgres",
        "dbname": server["NAME"],
    }
    with psycopg.connect(**params, autocommit=True) as admin:  # type: ignore[arg-type]
        admin.execute(f'CREATE DATABASE "{name}"')
    try:
        yield {**params, "dbname": name}
    finally:
        with psycopg.connect(**params, autocommit=True) as admin:  # type: ignore[arg-type]
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.mark.slow
def test_quickstart_word_for_word(tmp_path: Path, fresh_database: dict[str, str]) -> None:
    venv = tmp_path / "venv"
    run(sys.executable, "-m", "venv", venv, cwd=tmp_path)
    python = venv / "bin" / "python"
    clone, install = block("pip install ./hephaestus-django").strip().splitlines()
    # No public URL yet: the README says so rather than inventing one, and this checkout is
    # installed in place of the clone (so uncommitted changes are tested too).
    assert clone == "git clone <this repository's URL> hephaestus-django"
    pip_install = shlex.split(install)
    assert pip_install[:3] == ["pip", "install", "./hephaestus-django"]
    run(python, "-m", "pip", "install", "-q", REPO, *pip_install[3:], cwd=tmp_path)
    # The settings reference the checks' hints point to is installed with the package.
    docs = run(
        python,
        "-c",
        "from hephaestus_django.conf import SETTINGS_DOCS as d; print(d)",
        cwd=tmp_path,
    )
    assert Path(docs.strip()).is_file()
    assert Path(docs.strip()).is_relative_to(venv)

    run(venv / "bin" / "django-admin", "startproject", "mysite", cwd=tmp_path)
    project = tmp_path / "mysite"
    run(python, "manage.py", "startapp", "shop", cwd=project)
    (project / "shop" / "workflows.py").write_text(block("class OrderWorkflow(Workflow):"))
    settings = project / "mysite" / "settings.py"
    apps = re.findall(r'"([\w.]+)"', block('"hephaestus_django",\n]'))
    assert apps == ["django.contrib.postgres", "hephaestus_django"]
    text = settings.read_text().replace(
        "INSTALLED_APPS = [", "INSTALLED_APPS = [\n" + "".join(f"    {a!r},\n" for a in apps)
    )
    text += "\nINSTALLED_APPS.append('shop')\n"
    settings.write_text(text)
    env = {key: value for key, value in os.environ.items() if key != "DJANGO_SETTINGS_MODULE"}
    (command,) = block("python manage.py migrate").strip().splitlines()

    # Before the database step, the check says which database to change, in those words.
    refused = subprocess.run(
        [python, *command.split()[1:]], cwd=project, env=env, capture_output=True, text=True
    )
    assert refused.returncode != 0
    assert "settings.DATABASES['default']: (hephaestus.E009)" in refused.stderr

    # The README's DATABASES block replaces startproject's, with this server's details.
    databases = block('"ENGINE": "django.db.backends.postgresql"')
    for key, value in [
        ("NAME", fresh_database["dbname"]),
        ("USER", fresh_database["user"]),
        ("PASSWORD", connection.settings_dict["PASSWORD"] or ""),
        ("HOST", fresh_database["host"]),
        ("PORT", fresh_database["port"]),
    ]:
        databases, found = re.subn(rf'"{key}": "[^"]*"', f'"{key}": {value!r}', databases)
        assert found == 1, key
    text, found = re.subn(r"^DATABASES = \{\n.*?^\}\n", databases, text, flags=re.M | re.S)
    assert found == 1
    settings.write_text(text)
    run(python, *command.split()[1:], cwd=project, env=env)
    assert "no issues" in run(python, "manage.py", "check", cwd=project, env=env)

    script = "\n".join(
        [
            block("instance_id = OrderWorkflow.start("),
            "assert OrderWorkflow.get(instance_id).status == 'completed'",
            "assert instance.context.result(Ship) == {'tracking': 'TRK-R-9'}",
            "assert [i.id for i in OrderWorkflow.list(status='completed')] == [instance_id]",
            block("from hephaestus_django.models import WorkflowInstance"),
            "assert [i.id for i in rows.to_instances()] == [instance_id]",
            block('storage = storages["default"]'),
            "print('README OK')",
        ]
    )
    out = run(python, "manage.py", "shell", "-c", script, cwd=project, env=env)
    assert "README OK" in out

    named = block('"tenant_a": {')
    settings.write_text(text + "\n" + named + "\nDATABASES['tenant_a'] = DATABASES['default']\n")
    assert "no issues" in run(python, "manage.py", "check", cwd=project, env=env)


def test_runtime_without_django(tmp_path: Path) -> None:
    code = textwrap.dedent(
        block("InMemoryStorage()})  # takes precedence")
        + """
import sys
from hephaestus_django import Done, Step, Workflow

class Hello(Step):
    events = ("said",)

    def execute(self, instance, config, context):
        return "said"

class Greeting(Workflow):
    start_step = Hello
    transitions = {Hello: {"said": Done}}

assert Greeting.get(Greeting.start()).status == "completed"
assert "django" not in sys.modules
print("OK")
"""
    )
    env = {key: value for key, value in os.environ.items() if key != "DJANGO_SETTINGS_MODULE"}
    assert "OK" in run(
        sys.executable, "-c", code, cwd=tmp_path, env={**env, "PYTHONPATH": str(REPO)}
    )


def test_queued_runner_in_your_tests() -> None:
    """The quickstart's workflow on the in-memory queue: nothing runs until the test drains."""
    workflows = block("class OrderWorkflow(Workflow):")
    namespace: dict[str, Any] = {"__name__": "readme_queued"}
    try:
        exec(
            compile(workflows + block("dispatcher = InMemoryDispatcher()"), "README.md", "exec"),
            namespace,
        )
        instance = namespace["OrderWorkflow"].get(namespace["queued_id"])
    finally:
        configure()
    assert instance.status == "waiting"  # for the payment, after ValidateOrder ran as a job
    assert namespace["dispatcher"].jobs == []


def test_graph_command_prints_the_readme_graph(tmp_path: Path) -> None:
    """The README's Mermaid graph is what its ``hephaestus_graph`` command prints for the
    quickstart's ``shop/workflows.py`` (a project without a database: the command needs none)."""
    (tmp_path / "shop").mkdir()
    (tmp_path / "shop" / "__init__.py").write_text("")
    (tmp_path / "shop" / "workflows.py").write_text(block("class OrderWorkflow(Workflow):"))
    (command,) = block("manage.py hephaestus_graph").strip().splitlines()
    assert command.startswith("python manage.py hephaestus_graph ")
    arguments = shlex.split(command)[2:]
    script = textwrap.dedent(
        f"""
        import django
        from django.conf import settings
        from django.core.management import call_command

        apps = ["django.contrib.contenttypes", "django.contrib.auth", "hephaestus_django"]
        settings.configure(INSTALLED_APPS=apps)
        django.setup()
        import shop.workflows
        call_command(*{arguments!r})
        """
    )
    env = {key: value for key, value in os.environ.items() if key != "DJANGO_SETTINGS_MODULE"}
    env["PYTHONPATH"] = os.pathsep.join([str(tmp_path), str(REPO)])
    assert run(sys.executable, "-c", script, cwd=tmp_path, env=env) == block("flowchart TD")


def test_a_test_moves_the_storages_clock() -> None:
    code = textwrap.dedent(
        """
from hephaestus_django import Done, Step, Wait, Workflow

class Remind(Step):
    events = ("ok",)

    def execute(self, instance, config, context):
        return "ok"

class Reminder(Workflow):
    start = Remind
    transitions = {
        Remind: {"ok": Wait.configure(duration=1, unit="hours")},
        Wait: {"timeout": Done},
    }
"""
        + block("runner.start(Reminder")
    )
    namespace: dict[str, Any] = {"__name__": "readme_clock"}
    exec(compile(code, "README.md", "exec"), namespace)
    assert namespace["fired"].status == "completed"


def test_retries_section() -> None:
    """The "Retries" block runs as it is: two failed attempts, then the charge goes through."""
    namespace: dict[str, Any] = {"__name__": "readme_retries"}
    exec(compile(block("class ChargeCard(Step):"), "README.md", "exec"), namespace)
    assert namespace["instance"].status == "completed"
    assert namespace["ChargeCard"].calls == 3


@pytest.mark.django_db(transaction=True)
def test_async_section() -> None:
    """The "Async" block's view answers through Django's AsyncClient: the async step ran and
    the instance waits for its acceptance."""
    from asgiref.sync import async_to_sync
    from django.test import AsyncRequestFactory

    from hephaestus_django.runtime import LocalRunner
    from hephaestus_django.storage import DjangoStorage

    configure(storages={"default": DjangoStorage()}, runner=LocalRunner())
    try:
        namespace: dict[str, Any] = {"__name__": "readme_async"}
        exec(compile(block("async def quote_view(request):"), "README.md", "exec"), namespace)
        request = AsyncRequestFactory().get("/quote/", {"customer": "42"})
        response = async_to_sync(namespace["quote_view"])(request)
        assert response.status_code == 200
        body = json.loads(response.content)
        assert body["quote"] == {"price": pytest.approx(22.0)}
        instance = namespace["Quote"].get(key="quote-42")
        assert str(instance.id) == body["id"]
        assert instance.status == "waiting"
    finally:
        configure()


def test_business_keys_section() -> None:
    """The "Business keys" block runs as it is, on the runtime's own backends."""
    from hephaestus_django.runtime import InMemoryStorage, LocalRunner

    configure(storages={"default": InMemoryStorage()}, runner=LocalRunner())
    try:
        namespace: dict[str, Any] = {"__name__": "readme_business_keys"}
        exec(compile(block("class Fulfilment(Workflow):"), "README.md", "exec"), namespace)
        assert namespace["Fulfilment"].get(namespace["first"]).business_key == "order-A-1001"
    finally:
        configure()


def test_versions_and_upgrades_section() -> None:
    """The "Versions and upgrades" block runs as it is, on the runtime's own backends: a
    version 1 instance upgraded to version 2 (a step renamed, one added) and run on there."""
    from hephaestus_django.runtime import InMemoryStorage, LocalRunner

    configure(storages={"default": InMemoryStorage()}, runner=LocalRunner())
    try:
        namespace: dict[str, Any] = {"__name__": "readme_versions"}
        exec(compile(block("class OnboardingV1(Workflow):"), "README.md", "exec"), namespace)
        done = namespace["Onboarding"].get(namespace["old"])
        assert [entry.step.__name__ for entry in done.execution_history] == [
            "SendWelcomeEmail",
            "AwaitVerification",
            "Activate",
            "Done",
        ]
        assert namespace["preview"].workflow_version == 2
        assert done.upgrades[0].steps == {
            "readme_versions.SendWelcome": "readme_versions.SendWelcomeEmail"
        }
    finally:
        configure()


def test_cancelling_section() -> None:
    """The "Cancelling and compensating" block runs as it is, on the storage it configures: the
    order is cancelled where it waited, its charge refunded before its stock is released."""
    namespace: dict[str, Any] = {"__name__": "readme_cancelling"}
    try:
        exec(compile(block("Order.cancel(order_id"), "README.md", "exec"), namespace)
        instance = namespace["instance"]
        assert instance.cancellation.steps == (namespace["AwaitShipment"],)
        assert instance.compensation.done
        assert namespace["Order"].compensate_on_failure is True
    finally:
        configure()


def test_signals_section() -> None:
    """The "Signals" block runs as it is: its receivers get the failure, then the completion."""
    namespace: dict[str, Any] = {"__name__": "readme_signals"}
    from hephaestus_django import signals

    try:
        code = block("@receiver(step_failed)")
        exec(compile(code, "README.md", "exec"), namespace)
        printed = code.rsplit("print(seen)\n# ", 1)[1].strip()
        assert repr(namespace["seen"]) == printed
    finally:
        signals.step_failed.disconnect(namespace.get("report_failure"))
        signals.instance_completed.disconnect(
            namespace.get("invoiced"), sender=namespace.get("Invoicing")
        )
        configure()


def test_tracing_section(capsys: pytest.CaptureFixture[str]) -> None:
    """The "Tracing and metrics" block runs as it is and prints what it says it prints."""
    from hephaestus_django import telemetry

    was = telemetry.installed()
    namespace: dict[str, Any] = {"__name__": "readme_tracing"}
    try:
        code = block("InMemorySpanExporter()")
        exec(compile(code, "README.md", "exec"), namespace)
        expected = [line[2:] for line in code.splitlines() if line.startswith("# hephaestus.")]
        assert capsys.readouterr().out.splitlines() == expected
    finally:
        telemetry.uninstall()
        if was:
            telemetry.install()
        configure()


def test_timeouts_section() -> None:
    """The "Timeouts" block runs as it is: attempt 1 hangs past its timeout and is abandoned,
    attempt 2 completes, and attempt 1's late result, once its thread ended, is not recorded."""
    namespace: dict[str, Any] = {"__name__": "readme_timeouts"}
    exec(compile(block("class FetchRates(Step):"), "README.md", "exec"), namespace)
    instance = namespace["instance"]
    assert instance.status == "completed"
    assert namespace["FetchRates"].calls == 2
    for thread in threading.enumerate():  # attempt 1's thread, unless it ended already
        if thread.name == f"hephaestus-attempt FetchRates of {instance.id}":
            thread.join(timeout=30)
    stored = namespace["storage"].get(instance.id)
    assert stored.revision == instance.revision
    assert stored.context.result(namespace["FetchRates"]) == {"attempt": 2}


def test_procrastinate_settings_pass_the_checks(settings: Any) -> None:
    """The "Running on workers" settings, added to this suite's (which install procrastinate's
    app already: changing INSTALLED_APPS in a test would run its ready() twice)."""
    namespace: dict[str, Any] = {
        "INSTALLED_APPS": [app for app in settings.INSTALLED_APPS if "procrastinate" not in app]
    }
    exec(block("queues.procrastinate.ProcrastinateDispatcher"), namespace)
    assert sorted(namespace["INSTALLED_APPS"]) == sorted(settings.INSTALLED_APPS)
    settings.HEPHAESTUS = namespace["HEPHAESTUS"]
    call_command("check", fail_level="WARNING", stdout=StringIO(), stderr=StringIO())
    built = configured_runner.get()
    assert isinstance(built, QueuedRunner)
    assert built.dispatcher.joins_transaction(storages["default"])


@pytest.mark.django_db
def test_operations_section() -> None:
    """The README's ``hephaestus_status`` lines run as written: the report, its JSON, and the
    check, which fails while no worker was ever seen and passes after a worker's pass."""
    import json

    from django.core.management.base import CommandError

    from hephaestus_django.worker import run_once

    lines = block("manage.py hephaestus_status").strip().splitlines()
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
    report, document, check = outputs
    assert "Overdue timers:" in report
    assert "Last worker pass:" in report
    assert json.loads(document)["instances"]["total"] == {"count": 0, "kind": "exact"}
    assert "CROSSED" not in check
    assert check.count("ok") == 4  # overdue, stalled, quarantined, worker silence


def test_the_supervisor_examples_restart_real_commands() -> None:
    """Each supervisor example restarts its worker whatever its exit status, and every command
    line in it (the commented procrastinate one too) is a command of this project whose
    options parse."""
    from django.core.management import get_commands, load_command_class

    examples = {
        "[Unit]": "Restart=always",
        "kind: Deployment": "restartPolicy: Always",
        "[program:hephaestus-steps]": "autorestart=true",
    }
    commands = get_commands()
    for fragment, restarts in examples.items():
        text = block(fragment)
        assert restarts in text, fragment
        lines = re.findall(r"/manage\.py ([^\n]+)", text)
        lines += [
            " ".join(json.loads(f"[{match}]"))
            for match in re.findall(r'\["python", "manage\.py", ([^\]]+)\]', text, re.DOTALL)
        ]
        assert lines, fragment
        for line in lines:
            name, *arguments = shlex.split(line)
            if name == "procrastinate":  # procrastinate's command parses its own subcommands
                assert arguments[0] == "worker"
                continue
            command = load_command_class(commands[name], name)
            command.create_parser("manage.py", name).parse_args(arguments)
