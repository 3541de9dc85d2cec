"""A child process for the process tests: ``python -m tests.processes.child COMMAND JSON``.

It connects to the test database named by ``$HEPHAESTUS_TEST_DB`` (a JSON object of Django
database settings), runs one command and prints its result as JSON on its last line.
"""

from __future__ import annotations

import io
import json
import os
import sys
import time
from pathlib import Path
from typing import Any


def setup() -> None:
    import django
    from django.conf import settings

    settings.configure(
        DATABASES={"default": json.loads(os.environ["HEPHAESTUS_TEST_DB"])},
        INSTALLED_APPS=[
            "django.contrib.contenttypes",
            "django.contrib.auth",
            "django.contrib.postgres",
            "hephaestus_django",
        ],
        USE_TZ=True,
        HEPHAESTUS={
            "RUNNER": {
                "BACKEND": "hephaestus_django.runtime.LocalRunner",
                "OPTIONS": {"lease": float(os.environ.get("LEASE", "300"))},
            }
        },
    )
    django.setup()
    import tests.processes.workflows  # noqa: F401  (registers the workflows)


def wait_for_go(go: str | None) -> None:
    """Start together: every child blocks until the test creates the ``go`` file."""
    while go and not Path(go).exists():
        time.sleep(0.005)


def resume(args: dict[str, Any]) -> dict[str, Any]:
    from hephaestus_django import HephaestusError, storages
    from hephaestus_django.conf import runner

    wait_for_go(args.get("go"))
    ok, errors = 0, []
    for instance_id, step in args["pairs"]:
        try:
            runner.get().resume(
                instance_id, "go", {"pid": os.getpid()}, step=step, storage=storages["default"]
            )
            ok += 1
        except HephaestusError as error:
            errors.append(f"{type(error).__name__}: {error}")
    return {"ok": ok, "errors": errors}


def work(args: dict[str, Any]) -> dict[str, Any]:
    """One worker pass, as ``hephaestus_django.worker.run_once`` (cron, task queues) does it."""
    from hephaestus_django.worker import run_once

    wait_for_go(args.get("go"))
    handled = run_once(batch_size=args.get("batch_size", 100))
    return {"handled": [str(instance.id) for instance in handled]}


def manage(args: dict[str, Any]) -> dict[str, Any]:
    """A management command, e.g. the ``hephaestus_worker`` loop, until it ends."""
    from django.core.management import call_command

    out = io.StringIO()
    call_command(*args["argv"], stdout=out)
    return {"stdout": out.getvalue()}


def start(args: dict[str, Any]) -> dict[str, Any]:
    from hephaestus_django.core.workflow import workflow_registry

    workflow = workflow_registry.resolve(args["workflow"])
    ids = [str(workflow.start(args.get("context", {}))) for _ in range(args.get("count", 1))]
    return {"ids": ids}


COMMANDS = {"resume": resume, "work": work, "start": start, "manage": manage}

if __name__ == "__main__":
    setup()
    command, payload = sys.argv[1], json.loads(sys.argv[2])
    print(json.dumps(COMMANDS[command](payload)), flush=True)
