"""The tutorial (docs/tutorial.md), followed block by block as a reader would.

A project made with ``startproject`` and ``startapp`` in a temporary directory, with this
environment's Django and this checkout's package; the tutorial's settings, its
``shop/workflows.py``, ``migrate``; then its two workers as real processes (procrastinate's
worker and ``hephaestus_worker``, started by the very commands the page shows) and its
``manage.py shell`` blocks, until the order completed after its retry and its timer. The install
block is checked against ``pyproject.toml`` (a fresh virtualenv's ``pip install`` of this
checkout is what the README's quickstart test does).
"""

from __future__ import annotations

import os
import re
import shlex
import signal
import subprocess
import sys
import time
import tomllib
from pathlib import Path

import pytest
from django.db import connection

from tests.docblocks import REPO, block

PAGE = "docs/tutorial.md"


def tutorial(fragment: str) -> str:
    return block(PAGE, fragment)


def commands(fragment: str) -> list[list[str]]:
    return [shlex.split(line) for line in tutorial(fragment).strip().splitlines()]


def test_the_install_block_names_real_extras() -> None:
    venv, activate, clone, install_line = tutorial("git clone").strip().splitlines()
    assert shlex.split(venv) == ["python3", "-m", "venv", ".venv"]
    assert shlex.split(activate) == [".", ".venv/bin/activate"]
    # No public URL yet: the page says so rather than inventing one.
    assert clone == "git clone <repository-url> hephaestus-django"
    pip, install, target, *more = shlex.split(install_line)
    assert (pip, install, more) == ("pip", "install", ["psycopg[binary]"])
    path, extras = re.fullmatch(r"(\./hephaestus-django)\[([\w,]+)\]", target).groups()  # type: ignore[union-attr]
    assert path == "./hephaestus-django"  # the clone's directory, named two lines above
    declared = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    assert set(extras.split(",")) <= set(declared["optional-dependencies"])


def manage(project: Path, env: dict[str, str], *arguments: str, stdin: str | None = None) -> str:
    result = subprocess.run(
        [sys.executable, "manage.py", *arguments],
        cwd=project,
        env=env,
        input=stdin,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert result.returncode == 0, f"{arguments}:\n{result.stdout}\n{result.stderr}"
    return result.stdout


@pytest.fixture
def project(tmp_path: Path, fresh_database: dict[str, str]) -> tuple[Path, dict[str, str]]:
    """Sections 1 to 3: the project, its settings and workflow, migrated."""
    env = {key: value for key, value in os.environ.items() if key != "DJANGO_SETTINGS_MODULE"}
    env["PYTHONPATH"] = str(REPO)  # this checkout's package, as the clone's install would be
    startproject, cd, startapp = commands("django-admin startproject mysite")
    assert startproject == ["django-admin", "startproject", "mysite"]
    subprocess.run(
        [sys.executable, "-m", "django", *startproject[1:]], cwd=tmp_path, env=env, check=True
    )
    assert cd == ["cd", "mysite"]
    project = tmp_path / "mysite"
    assert startapp[:2] == ["python", "manage.py"]
    manage(project, env, *startapp[2:])

    settings = project / "mysite" / "settings.py"
    databases = tutorial('"ENGINE": "django.db.backends.postgresql"')
    for key, value in [
        ("NAME", fresh_database["dbname"]),
        ("USER", fresh_database["user"]),
        ("PASSWORD", connection.settings_dict["PASSWORD"] or ""),
        ("HOST", fresh_database["host"]),
        ("PORT", fresh_database["port"]),
    ]:
        databases, found = re.subn(rf'"{key}": "[^"]*"', f'"{key}": {value!r}', databases)
        assert found == 1, key
    text, found = re.subn(
        r"^DATABASES = \{\n.*?^\}\n", databases, settings.read_text(), flags=re.M | re.S
    )
    assert found == 1
    settings.write_text(text + "\n" + tutorial("INSTALLED_APPS += ["))
    (project / "shop" / "workflows.py").write_text(tutorial("class OrderWorkflow(Workflow):"))

    (migrate,) = commands("python manage.py migrate")
    manage(project, env, *migrate[2:])
    assert "no issues" in manage(project, env, "check")
    return project, env


def shell(project: Path, env: dict[str, str], code: str) -> str:
    return manage(project, env, "shell", "-c", code)


def wait_for(project: Path, env: dict[str, str], expression: str, expected: str) -> None:
    """Poll ``expression`` in ``manage.py shell`` (after the tutorial's first block's names)
    until it prints ``expected``: the workers move the order on in their own time."""
    deadline = time.monotonic() + 90
    seen = ""
    while time.monotonic() < deadline:
        seen = shell(project, env, f"{SETUP}\nprint({expression})").strip().splitlines()[-1]
        if seen == expected:
            return
        time.sleep(0.5)
    raise AssertionError(f"{expression} is {seen!r}, not {expected!r}, after 90 s")


SETUP = (
    "from shop.workflows import OrderWorkflow, Ship\n"
    "import uuid\n"
    "order_id = uuid.UUID(open('order').read())"
)


@pytest.mark.slow
def test_the_tutorial_runs_on_workers(project: tuple[Path, dict[str, str]]) -> None:
    directory, env = project
    workers = []
    try:
        for fragment in ["procrastinate worker", "hephaestus_worker"]:
            (command,) = commands(fragment)
            assert command[:2] == ["python", "manage.py"]
            workers.append(
                subprocess.Popen(
                    [sys.executable, *command[1:]],
                    cwd=directory,
                    env=env,
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.PIPE,
                    text=True,
                    start_new_session=True,
                )
            )
        start = tutorial("order_id = OrderWorkflow.start(")
        shell(directory, env, start + "\nopen('order', 'w').write(str(order_id))")
        wait_for(directory, env, "OrderWorkflow.get(order_id).status", "waiting")

        shell(directory, env, SETUP + "\n" + tutorial('OrderWorkflow.resume(order_id, "paid"'))
        wait_for(directory, env, "OrderWorkflow.get(order_id).status", "completed")

        # The last block, each commented line's value as its comment says.
        statements = [line for line in tutorial("order = OrderWorkflow.get(").splitlines() if line]
        checks = [statements[0]]
        for line in statements[1:]:
            expression, comment = line.split("  # ")
            checks.append(f"assert {expression} == {comment}, {expression}")
        shell(directory, env, SETUP + "\n" + "\n".join(checks))
        history = shell(
            directory,
            env,
            SETUP
            + "\nprint([e.step.__name__ for e in OrderWorkflow.get(order_id).execution_history])",
        )
        assert history.strip().splitlines()[-1] == repr(
            [
                "ValidateOrder",
                "AwaitPayment",
                "ReserveStock",
                "SendInvoice",
                "Ship",
                "Ship",
                "AfterDelivery",
                "AskForReview",
                "Done",
            ]
        )
    finally:
        for process in workers:
            os.killpg(process.pid, signal.SIGTERM)
        for process in workers:
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()


def test_the_graph_is_what_the_command_prints(tmp_path: Path) -> None:
    """The Mermaid output shown is what ``hephaestus_graph`` prints for the tutorial's workflow
    (it needs no database)."""
    (tmp_path / "shop").mkdir()
    (tmp_path / "shop" / "__init__.py").write_text("")
    (tmp_path / "shop" / "workflows.py").write_text(tutorial("class OrderWorkflow(Workflow):"))
    (command,) = commands("manage.py hephaestus_graph")
    script = (
        "import django\n"
        "from django.conf import settings\n"
        "from django.core.management import call_command\n"
        "settings.configure(INSTALLED_APPS=['django.contrib.contenttypes',"
        " 'django.contrib.auth', 'hephaestus_django'])\n"
        "django.setup()\n"
        "import shop.workflows\n"
        f"call_command(*{command[2:]!r})\n"
    )
    env = {key: value for key, value in os.environ.items() if key != "DJANGO_SETTINGS_MODULE"}
    env["PYTHONPATH"] = os.pathsep.join([str(tmp_path), str(REPO)])
    printed = subprocess.run(
        [sys.executable, "-c", script], cwd=tmp_path, env=env, capture_output=True, text=True
    )
    assert printed.returncode == 0, printed.stderr
    assert printed.stdout == tutorial("flowchart TD")


def test_the_admin_commands_are_djangos() -> None:
    from django.core.management import get_commands

    for command in commands("python manage.py runserver"):
        assert command[:2] == ["python", "manage.py"]
        assert get_commands()[command[2]] in {
            "django.contrib.auth",
            "django.contrib.staticfiles",
            "django.core",
        }
