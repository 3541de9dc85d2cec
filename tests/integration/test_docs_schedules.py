"""The blocks of docs/guides/schedules.md, run."""

from __future__ import annotations

import shlex
from io import StringIO
from typing import Any

import pytest
from django.core.checks import run_checks
from django.core.management import call_command

from tests.docblocks import block
from tests.processes.workflows import Scheduled

PAGE = "docs/guides/schedules.md"
pytestmark = pytest.mark.django_db


def page_settings() -> dict[str, Any]:
    namespace: dict[str, Any] = {}
    exec(block(PAGE, '"nightly-report": {'), namespace)
    return namespace["HEPHAESTUS"]  # type: ignore[no-any-return]


def test_the_settings_block(settings: Any) -> None:
    settings.HEPHAESTUS = page_settings()
    ids = [m.id for m in run_checks() if m.id.startswith("hephaestus.E03")]
    assert ids == ["hephaestus.E033"]  # its workflow is the reader's own
    settings.HEPHAESTUS["SCHEDULES"]["nightly-report"]["WORKFLOW"] = Scheduled.path()
    assert [m.id for m in run_checks() if m.id.startswith("hephaestus.")] == []


def test_the_shell_block(settings: Any) -> None:
    settings.HEPHAESTUS = page_settings()
    settings.HEPHAESTUS["SCHEDULES"]["nightly-report"]["WORKFLOW"] = Scheduled.path()
    said = []
    for line in block(PAGE, "hephaestus_schedules list").strip().splitlines():
        argv = shlex.split(line, comments=True)
        assert argv[:2] == ["python", "manage.py"]
        out = StringIO()
        call_command(*argv[2:], stdout=out)
        said.append(out.getvalue())
    assert said[1] == "Paused nightly-report.\n"
    assert said[2] == "Resumed nightly-report.\n"
    assert said[3].startswith("Started ")
    assert said[4].endswith("Backfilled 7 tick(s): 7 started.\n")


def test_the_example() -> None:
    exec(compile(block(PAGE, "class NightlyReport("), PAGE, "exec"), {"__name__": "schedules_page"})
