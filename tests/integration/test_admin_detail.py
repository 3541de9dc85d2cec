"""The admin's read-only instance page: its sections, escaping, broken rows, buttons."""

from __future__ import annotations

import re
import uuid
from collections.abc import Callable, Mapping
from datetime import UTC, datetime, timedelta
from html import unescape
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from django.db import connection
from django.test import Client, override_settings
from django.utils import timezone

from hephaestus_django import Context, Done, Event, Instance, Step, WaitForEvent, Workflow
from hephaestus_django.admin import times
from hephaestus_django.core import engine
from hephaestus_django.core.flow import SlotRequest
from hephaestus_django.models import WorkflowInstance
from hephaestus_django.storage import DjangoStorage
from tests import flows
from tests.support.admin import detail_url, section, shown
from tests.support.flow_control import Limited, LimitedFlow
from tests.support.instances import stored

pytestmark = pytest.mark.django_db

SCRIPT = "<script>alert(1)</script>"
ESCAPED = "&lt;script&gt;alert(1)&lt;/script&gt;"


class Echo(Step):
    """Stores the note it was started with as its result and in the runtime metadata."""

    events = ("echoed",)

    def execute(self, instance: Instance, config: Mapping[str, Any], context: Context) -> Any:
        note = context.initial["note"]
        if context.initial.get("fail"):
            raise RuntimeError(f"cannot echo {note}")
        return Event("echoed", updates={"note": note}, metadata={"echoed_by": note})


class Confirm(WaitForEvent):
    events = ("<confirmed>", "rejected")


class EchoFlow(Workflow):
    start = Echo
    transitions = {Echo: {"echoed": Confirm}, Confirm: {"<confirmed>": Done, "rejected": Done}}


def test_every_section_of_a_waiting_instance(admin_client: Client, storage: DjangoStorage) -> None:
    instance = stored(storage, EchoFlow, note="hello")
    page = shown(admin_client, instance.id)
    assert re.search(r'<pre class="hx-json">\{\n  &quot;note&quot;: &quot;hello&quot;', page)
    assert "echo (Echo)" in section(page, "results")
    history = section(page, "history")
    for header in ("step", "event", "time", "result (context updates)", "next"):
        assert f"<th>{header}</th>" in history
    assert re.search(r"<td>1</td>\s*<td><span title=\"[^\"]+\.Echo\">Echo</span></td>", history)
    assert "<td>echoed</td>" in history
    assert "<td>Confirm</td>" in history
    steps = section(page, "steps")
    assert re.search(
        r"waiting</th><td>\s*<span class=\"hx-step hx-step-waiting\"[^>]*>Confirm", steps
    )
    assert "accepts &lt;confirmed&gt;, rejected" in steps
    assert re.search(
        r"completed</th><td>\s*<span class=\"hx-step hx-step-completed\"[^>]*>Echo", steps
    )
    assert "&quot;echoed_by&quot;: &quot;hello&quot;" in section(page, "metadata")
    raw = section(page, "raw")
    assert raw.startswith('id="hx-raw">')
    assert "<summary>" in raw
    assert "&quot;execution_history&quot;" in raw
    assert "current step</th><td>Confirm</td>" in section(page, "overview")
    assert 'id="hx-resume"' in page
    assert 'id="hx-delete"' in page
    assert 'id="hx-retry"' not in page
    assert 'name="_save"' not in page


def test_the_graph_shows_the_instance_progress(
    admin_client: Client, storage: DjangoStorage
) -> None:
    instance = stored(storage, EchoFlow, note="hello")
    graph = section(shown(admin_client, instance.id), "graph")
    assert '<svg xmlns="http://www.w3.org/2000/svg" class="hx-graph"' in graph
    assert re.search(r'<g class="hx-node hx-state-completed" data-step="[^"]+\.Echo">', graph)
    assert re.search(r'<g class="hx-node hx-state-waiting" data-step="[^"]+\.Confirm">', graph)
    assert (
        'class="hx-node hx-state-not-reached" data-step="hephaestus_django.core.steps.Done"'
        in graph
    )
    assert "<script" not in graph.replace("<script>", "")  # no JavaScript in the SVG


def test_timers_of_waiting_steps(admin_client: Client, storage: DjangoStorage) -> None:
    instance = stored(storage, flows.Timed)
    steps = section(shown(admin_client, instance.id), "steps")
    assert "timer fires “timeout” at" in steps


def test_step_configuration_is_shown(admin_client: Client, storage: DjangoStorage) -> None:
    instance = stored(storage, flows.Timed)
    page = shown(admin_client, instance.id)
    assert re.search(r'id="hx-configs".*&quot;duration&quot;: 5,', page, re.DOTALL)


def test_a_failed_instance_shows_its_error(admin_client: Client, storage: DjangoStorage) -> None:
    instance = stored(storage, EchoFlow, note="hello", fail=True)
    page = shown(admin_client, instance.id)
    error = page.split('id="hx-error"')[1].split("</div>")[0]
    assert "<strong>Echo failed</strong>" in error
    assert "RuntimeError" in error
    assert "cannot echo hello" in error
    assert 'id="hx-retry"' in page
    assert 'id="hx-resume"' not in page
    assert re.search(r'<g class="hx-node hx-state-failed" data-step="[^"]+\.Echo">', page)
    steps = section(page, "steps")
    assert re.search(r'running</th><td>\s*<span class="hx-empty">none</span>', steps)


def test_a_failed_instance_shows_its_traceback_collapsed(
    admin_client: Client, storage: DjangoStorage
) -> None:
    instance = stored(storage, EchoFlow, note=SCRIPT, fail=True)
    page = shown(admin_client, instance.id)
    assert SCRIPT not in page
    found = re.search(
        r'<details class="hx-traceback" id="hx-traceback">\s*<summary>Traceback</summary>\s*'
        r"<pre>(.*?)</pre>\s*</details>",
        page,
        re.DOTALL,
    )
    assert found is not None
    shown_text = found.group(1)
    assert shown_text.startswith("Traceback (most recent call last):")
    assert "test_admin_detail.py" in shown_text
    assert "raise RuntimeError(f&quot;cannot echo {note}&quot;)" in shown_text
    assert shown_text.endswith(f"RuntimeError: cannot echo {ESCAPED}")
    assert unescape(shown_text) == instance.error.traceback  # type: ignore[union-attr]


def test_a_failure_stored_without_a_traceback_shows_none(
    admin_client: Client, storage: DjangoStorage
) -> None:
    instance = stored(storage, EchoFlow, note="hello", fail=True)
    with connection.cursor() as cursor:
        cursor.execute(
            "UPDATE workflow_instances SET state = state #- '{error,traceback}' WHERE id = %s",
            [instance.id],
        )
    page = shown(admin_client, instance.id)
    assert "cannot echo hello" in page.split('id="hx-error"')[1]
    assert "hx-traceback" not in page


def test_times_are_shown_to_the_second_in_the_current_time_zone(
    admin_client: Client, storage: DjangoStorage
) -> None:
    instance = stored(storage, EchoFlow, note="hello")
    row = WorkflowInstance.objects.get(pk=instance.id)
    with timezone.override(ZoneInfo("Asia/Kathmandu")):  # UTC+05:45: no whole-hour offset
        page = shown(admin_client, instance.id)
    inserted = row.inserted_at.astimezone(ZoneInfo("Asia/Kathmandu"))
    overview = section(page, "overview")
    assert f"<td>{time_element(row.inserted_at, inserted, zone=True)}</td>" in overview
    stamp = instance.execution_history[0].timestamp
    assert time_element(stamp, stamp.astimezone(ZoneInfo("Asia/Kathmandu"))) in section(
        page, "history"
    )
    since = instance.waiting_steps[Confirm].since.astimezone(ZoneInfo("Asia/Kathmandu"))
    assert "since <time datetime=" in section(page, "steps")
    assert f">{since:%Y-%m-%d %H:%M:%S}</time>" in section(page, "steps")


def time_element(value: datetime, local: datetime, *, zone: bool = False) -> str:
    text = f"{local:%Y-%m-%d %H:%M:%S}" + (" +0545" if zone else "")
    return (
        f'<time datetime="{value.isoformat()}" title="{local:%Y-%m-%d %H:%M:%S.%f} +0545">'
        f"{text}</time>"
    )


@pytest.mark.parametrize("use_tz", [True, False])
def test_times_follow_use_tz_as_django_templates_do(use_tz: bool) -> None:
    aware = datetime(2026, 11, 24, 5, 43, 12, 345678, tzinfo=UTC)
    naive = datetime(2026, 11, 24, 5, 43, 12)
    with override_settings(USE_TZ=use_tz), timezone.override(ZoneInfo("America/New_York")):
        assert times.as_text(naive) == "2026-11-24 05:43:12"
        if use_tz:  # to the current time zone
            assert times.as_text(aware) == "2026-11-24 00:43:12 EST"
            assert times.as_text(aware, zone=False) == "2026-11-24 00:43:12"
        else:  # as stored
            assert times.as_text(aware) == "2026-11-24 05:43:12 UTC"
        element = times.moment(aware)
    assert element.startswith('<time datetime="2026-11-24T05:43:12.345678+00:00" title="2026-11-24')
    assert times.moment(None) == "—"


def test_a_script_in_the_context_is_escaped_everywhere(
    admin_client: Client, storage: DjangoStorage
) -> None:
    instance = stored(storage, EchoFlow, note=SCRIPT)
    page = shown(admin_client, instance.id)
    assert SCRIPT not in page
    for name in ("initial", "results", "history", "metadata", "raw", "graph"):
        assert ESCAPED in section(page, name), name
    assert "&lt;confirmed&gt;" in section(page, "graph")  # an event name, in the SVG
    failed = stored(storage, EchoFlow, note=SCRIPT, fail=True)
    page = shown(admin_client, failed.id)
    assert SCRIPT not in page
    assert ESCAPED in page.split('id="hx-error"')[1].split("</div>")[0]
    assert ESCAPED in section(page, "graph")  # the failed step's tooltip


def test_a_corrupt_row_of_a_known_workflow(admin_client: Client) -> None:
    row_id = uuid.uuid4()
    with connection.cursor() as cursor:
        cursor.execute(
            "INSERT INTO workflow_instances (id, workflow, status, state) VALUES "
            '(%s, %s, \'waiting\', \'{"context": {"initial": {"x": "<b>"}}}\'::jsonb)',
            [row_id, EchoFlow.path()],
        )
    page = shown(admin_client, row_id)
    assert "This instance cannot be decoded" in page
    assert "missing keys" in page
    graph = section(page, "graph")
    assert "hx-state-plain" in graph
    assert "hx-state-waiting" not in graph
    assert "&quot;x&quot;: &quot;&lt;b&gt;&quot;" in section(page, "raw")
    assert 'id="hx-delete"' in page
    assert 'id="hx-resume"' not in page


def test_a_row_nested_too_deep_to_parse(admin_client: Client) -> None:
    row_id = uuid.uuid4()
    deep = "[" * 12_000 + "]" * 12_000  # see test_django_storage's corrupt rows
    with connection.cursor() as cursor:
        cursor.execute(
            "INSERT INTO workflow_instances (id, workflow, status, state) "
            "VALUES (%s, %s, 'waiting', %s::jsonb)",
            [row_id, EchoFlow.path(), deep],
        )
    page = shown(admin_client, row_id)
    assert "This instance cannot be decoded" in page
    assert "nested too deep to read" in page
    raw = section(page, "raw")
    assert deep[:20_000] + "…</pre>" in raw  # cut, with a link to the whole
    assert "Showing the first 20,000 of 24,000 characters." in raw
    assert 'id="hx-delete"' in page


def test_a_row_whose_workflow_is_gone(admin_client: Client) -> None:
    row_id = uuid.uuid4()
    with connection.cursor() as cursor:
        cursor.execute(
            "INSERT INTO workflow_instances (id, workflow, status, state) "
            "VALUES (%s, 'shop.flows.Retired', 'failed', '{}'::jsonb)",
            [row_id],
        )
    page = shown(admin_client, row_id)
    assert "This instance cannot be decoded: no workflow is registered as" in page
    assert "is not registered in this process, so its graph cannot be drawn" in page
    assert 'id="hx-retry"' not in page


@pytest.mark.parametrize(
    ("permissions", "buttons"),
    [
        ((), set()),
        (("resume_workflowinstance",), {"resume"}),
        (("retry_workflowinstance",), {"retry"}),
        (("delete_workflowinstance",), {"delete"}),
        (
            ("resume_workflowinstance", "retry_workflowinstance", "delete_workflowinstance"),
            {"resume", "retry", "delete"},
        ),
    ],
)
def test_buttons_follow_the_permissions(
    staff_client: Callable[..., Client],
    storage: DjangoStorage,
    permissions: tuple[str, ...],
    buttons: set[str],
) -> None:
    client = staff_client("view_workflowinstance", *permissions)
    waiting, failed = (
        stored(storage, EchoFlow, note="x"),
        stored(storage, EchoFlow, note="x", fail=True),
    )
    for instance, possible in ((waiting, {"resume", "delete"}), (failed, {"retry", "delete"})):
        page = shown(client, instance.id)
        found = {name for name in ("resume", "retry", "delete") if f'id="hx-{name}"' in page}
        assert found == buttons & possible


def test_the_page_needs_the_view_permission(
    staff_client: Callable[..., Client], storage: DjangoStorage
) -> None:
    instance = stored(storage)
    assert staff_client().get(detail_url(instance.id)).status_code == 403


def test_an_unknown_id_redirects_with_a_message(admin_client: Client) -> None:
    response = admin_client.get(detail_url(uuid.uuid4()), follow=True)
    assert "doesn\u2019t exist" in response.content.decode()  # Django's curly apostrophe


def test_a_quarantined_row_says_why_and_what_lifts_it(admin_client: Client) -> None:
    row_id = uuid.uuid4()
    with connection.cursor() as cursor:
        cursor.execute(
            "INSERT INTO workflow_instances (id, workflow, status, state, due_at) VALUES "
            "(%s, %s, 'waiting', '{}'::jsonb, now() - interval '1 minute')",
            [row_id, EchoFlow.path()],
        )
    assert DjangoStorage().claim("worker", lease=timedelta(minutes=5), limit=10) == []
    page = shown(admin_client, row_id)
    note = page.split('id="hx-quarantine">')[1].split("</p>")[0]
    assert "no worker claims it again until it is written" in note
    assert "missing keys" in note  # the reason the worker stored


def test_a_queued_instance_tells_queued_steps_from_running_ones(
    admin_client: Client, storage: DjangoStorage
) -> None:
    """On a job engine: a step whose job started runs on a worker (named), the others wait in
    the queue."""
    instance = flows_fan_out_on_the_queue(storage)
    marked = storage.mark_running(instance.id, flows.Pack.path(), "worker-3:4242")
    assert marked is not None
    steps = section(shown(admin_client, instance.id), "steps")
    queued = steps[steps.index(">queued<") : steps.index(">running<")]
    running = steps[steps.index(">running<") : steps.index(">completed<")]
    assert "Charge" in queued
    assert "Notify" in queued
    assert "Pack" not in queued
    assert "Pack" in running
    assert "on worker-3:4242 since" in running


def test_a_local_runners_steps_are_running_with_no_queue_row(
    admin_client: Client, storage: DjangoStorage
) -> None:
    instance = flows_fan_out_on_the_queue(storage, owner="host:1:runner")
    steps = section(shown(admin_client, instance.id), "steps")
    assert ">queued<" not in steps
    assert "Pack" in steps[steps.index(">running<") : steps.index(">completed<")]


def flows_fan_out_on_the_queue(storage: DjangoStorage, owner: str = "queued:x") -> Instance:
    """A fan-out whose three branches are runnable (none has run), leased to ``owner``."""
    from hephaestus_django.core import engine

    started = engine.start(engine.new_instance(flows.FanOut, {"script": {}}))
    split = engine.apply(
        started,
        [engine.Executed(flows.Split, outcome=Event("ok"))],
        now=storage.now(),
    )
    split.lease_owner, split.lease_expires_at = owner, storage.now() + timedelta(minutes=5)
    storage.put(split)
    return split


def test_a_step_in_line_for_a_concurrency_slot_says_where_it_stands(
    admin_client: Client, storage: DjangoStorage
) -> None:
    gateway = SlotRequest("stripe", "acme", 1)
    lease = timedelta(minutes=5)
    ids = []
    for _ in range(4):
        instance = engine.start(engine.new_instance(LimitedFlow, {}))
        storage.put(instance)
        storage.admit(instance.id, Limited.path(), gateway, priority=0, lease=lease)
        ids.append(instance.id)
    steps = section(shown(admin_client, ids[3]), "steps")
    assert re.search(
        r"in line</th><td>\s*<span class=\"hx-step hx-step-queued\"[^>]*>Limited", steps
    )
    assert "3rd in line for stripe, key acme" in steps
    assert "in line</th>" not in section(shown(admin_client, ids[0]), "steps")  # it holds it
    assert "1st in line for stripe, key acme" in section(shown(admin_client, ids[1]), "steps")
