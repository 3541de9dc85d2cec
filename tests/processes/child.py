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
        # unset unless the test names one: Django's own default, AutoField
        **(
            {"DEFAULT_AUTO_FIELD": os.environ["DEFAULT_AUTO_FIELD"]}
            if "DEFAULT_AUTO_FIELD" in os.environ
            else {}
        ),
        HEPHAESTUS={
            "RUNNER": {
                "BACKEND": "hephaestus_django.runtime.LocalRunner",
                "OPTIONS": {"lease": float(os.environ.get("LEASE", "300"))},
            },
            # the schedule tests name theirs
            "SCHEDULES": json.loads(os.environ.get("SCHEDULES", "{}")),
        },
    )
    django.setup()
    # registers the workflows
    import tests.dispatchers.workflows
    import tests.processes.workflows  # noqa: F401


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
    wait_for_go(args.get("go"))
    key = args.get("key")
    extra = {"version": args["version"]} if "version" in args else {}
    ids = [
        str(workflow.start(args.get("context", {}), key=key, **extra))
        for _ in range(args.get("count", 1))
    ]
    return {"ids": ids}


def debounce(args: dict[str, Any]) -> dict[str, Any]:
    """``count`` debounced starts of one key, each with this process's number and its own."""
    from datetime import timedelta

    from tests.processes.workflows import Debounced

    wait_for_go(args.get("go"))
    window = timedelta(seconds=args["window"])
    ids = {
        str(Debounced.start({"process": args["process"], "n": n}, key=args["key"], debounce=window))
        for n in range(args["count"])
    }
    return {"ids": sorted(ids)}


def load(args: dict[str, Any]) -> dict[str, Any]:
    """Start ``Restartable`` instances and resume them, until the ``stop`` file exists.

    Whatever the database does meanwhile: a call that fails is counted and tried again
    later. Ids are chosen here, so that an instance whose start failed half-way (it may be
    stored) is still resumed. After ``stop``, every start still unresumed is resumed before
    the child ends. Prints what was acknowledged.
    """
    import uuid

    from hephaestus_django import HephaestusError, InstanceNotFound
    from tests.processes.workflows import Hold, Restartable

    stop = Path(args["stop"])
    started: list[str] = []  # acknowledged: start() returned
    unsure: list[str] = []  # start() raised: stored or not
    pending: list[str] = []  # to resume
    resumed: list[str] = []  # acknowledged: resume() returned (or found delivered)
    lost: list[str] = []  # acknowledged, then not found
    errors: dict[str, int] = {}

    def failed(error: Exception) -> None:
        errors[type(error).__name__] = errors.get(type(error).__name__, 0) + 1

    def resume_oldest() -> None:
        target = pending.pop(0)
        try:
            Restartable.resume(target, "go")
        except InstanceNotFound:
            if target in started:
                lost.append(target)
            return  # else a start that failed before anything was stored
        except HephaestusError as error:
            try:
                delivered = Hold in Restartable.get(target).completed_steps
            except Exception as again:
                failed(again)
                delivered = False
            if not delivered:  # not waiting yet: its start failed half-way, a worker takes over
                failed(error)
                pending.append(target)
                return
        except Exception as error:
            failed(error)
            pending.append(target)
            return
        resumed.append(target)

    while not stop.exists():
        instance_id = str(uuid.uuid4())
        try:
            Restartable.start({}, id=instance_id)
            started.append(instance_id)
        except Exception as error:
            failed(error)
            unsure.append(instance_id)
        pending.append(instance_id)
        if len(pending) > 5:
            resume_oldest()
        time.sleep(0.01)
    deadline = time.monotonic() + args.get("drain", 120)
    while pending and time.monotonic() < deadline:
        resume_oldest()
        time.sleep(0.05)
    return {
        "started": started,
        "unsure": unsure,
        "resumed": resumed,
        "unresumed": pending,
        "lost": lost,
        "errors": errors,
    }


def operate(args: dict[str, Any]) -> dict[str, Any]:
    """One operation on one instance (``cancel``, ``retry``, ``upgrade`` or ``resume`` with
    ``go``), at the
    same moment as the other children: whether it was done, or the error that refused it."""
    from hephaestus_django import HephaestusError, Workflow

    wait_for_go(args.get("go"))
    instance_id, operation = args["id"], args["operation"]
    try:
        if operation == "cancel":
            Workflow.cancel(instance_id, "raced", compensate=args.get("compensate", False))
        elif operation == "retry":
            Workflow.retry(instance_id)
        elif operation == "upgrade":
            umbrella = Workflow.get(instance_id).workflow.umbrella()
            assert umbrella is not None
            umbrella.upgrade(instance_id)  # type: ignore[attr-defined]
        else:
            Workflow.resume(instance_id, "go")
    except HephaestusError as error:
        return {"ok": False, "error": f"{type(error).__name__}: {error}"}
    return {"ok": True, "error": None}


COMMANDS = {
    "resume": resume,
    "work": work,
    "start": start,
    "debounce": debounce,
    "manage": manage,
    "load": load,
    "operate": operate,
}

if __name__ == "__main__":
    setup()
    command, payload = sys.argv[1], json.loads(sys.argv[2])
    print(json.dumps(COMMANDS[command](payload)), flush=True)
