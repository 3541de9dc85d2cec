"""Operations: the shared status queries, ``hephaestus_status``, worker passes, the dashboard.

Rows are written with SQL, so each test says exactly which statuses, times, leases and errors
the table holds; times are the database's, like the queries'.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from datetime import timedelta
from io import StringIO
from typing import Any

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from hephaestus_django.admin.dashboard import hourly_chart
from hephaestus_django.core import engine
from hephaestus_django.core.flow import SlotRequest
from hephaestus_django.postgres import snapshot as status_module
from hephaestus_django.postgres.snapshot import COUNT_LIMIT, Count, Hour, snapshot
from hephaestus_django.postgres.worker_passes import PassRecorder
from hephaestus_django.runtime import InMemoryStorage
from hephaestus_django.storage import DjangoStorage
from tests.support.flow_control import LimitedFlow

pytestmark = pytest.mark.django_db

DASHBOARD = reverse("admin:hephaestus_django_workflowinstance_dashboard")
CHANGELIST = reverse("admin:hephaestus_django_workflowinstance_changelist")
SHOP = "shop.workflows.OrderFulfilment"
SIGNUP = "accounts.workflows.Signup"


def add(
    status: str = "completed",
    workflow: str = SHOP,
    *,
    inserted: str = "0 seconds",
    updated: str = "0 seconds",
    due: str | None = None,
    lease: str | None = None,
    quarantine: str | None = None,
    error: dict[str, str] | None = None,
    n: int = 1,
) -> None:
    """``n`` rows; times are intervals before the database's now (``"5 minutes"``)."""
    state = json.dumps({"error": error} if error else {})
    with connection.cursor() as cursor:
        cursor.execute(
            """
            INSERT INTO workflow_instances
                (id, workflow, status, workflow_version, state, revision, inserted_at,
                 updated_at, due_at, lease_owner, lease_expires_at, quarantine_reason)
            SELECT gen_random_uuid(), %s, %s, 1, %s::jsonb, 1, now() - %s::interval,
                   now() - %s::interval, now() - %s::interval,
                   CASE WHEN %s::interval IS NULL THEN NULL ELSE 'runner-1' END,
                   now() - %s::interval, %s
            FROM generate_series(1, %s)
            """,
            [
                workflow,
                status,
                state,
                inserted,
                updated,
                due,
                lease,
                lease,
                quarantine,
                n,
            ],
        )


def worker_seen(ago: str, worker: str = "host-a:41", storage: str = "default") -> None:
    with connection.cursor() as cursor:
        cursor.execute(
            "INSERT INTO hephaestus_worker_passes (worker, storage, host, pid, started_at, "
            "last_pass_at, passes, handled) VALUES (%s, %s, 'host-a', 41, now() - interval "
            "'1 hour', now() - %s::interval, 12, 3)",
            [worker, storage, ago],
        )


def status(*args: str) -> tuple[int, str, str]:
    """Run the command: (exit status, stdout, the error's message)."""
    out = StringIO()
    try:
        call_command("hephaestus_status", *args, stdout=out)
    except CommandError as error:
        return error.returncode, out.getvalue(), str(error)
    return 0, out.getvalue(), ""


# --- the shared queries ------------------------------------------------------------------------


def test_an_empty_table_and_no_worker() -> None:
    found = snapshot()
    assert found.total == Count(0)
    assert found.by_workflow == []
    assert found.worst_lateness is None
    assert found.last_pass is None
    assert found.worker_silence is None
    assert found.errors == []
    assert len(found.hours) == 24
    assert all(h.started == Count(0) for h in found.hours)


def test_counts_overdue_stalled_quarantined_failures_and_errors() -> None:
    add("completed", n=3)
    add("completed", SIGNUP, n=2)
    add("waiting", due="10 minutes")  # overdue by ten minutes
    add("waiting", due="-1 hour")  # due in an hour: not overdue
    add("running", lease="5 minutes")  # lapsed five minutes ago: stalled
    add("running", lease="10 seconds")  # lapsed within the grace: not yet
    add("running", lease="-5 minutes")  # a live lease
    add("waiting", due="3 hours", quarantine="cannot decode: bad JSON")
    declined = {"type": "CardDeclined", "message": "card declined", "step": "shop.Charge"}
    add("failed", updated="5 minutes", error=declined, n=2)
    add("failed", updated="3 hours", error={"type": "Timeout", "message": "slow"})
    add("failed", updated="2 days", error={"type": "Old", "message": "long ago"})

    found = snapshot()
    assert found.by_status["completed"] == Count(5)
    assert found.by_status["running"] == Count(3)
    assert found.by_status["failed"] == Count(4)
    shop = next(row for row in found.by_workflow if row.workflow == SHOP)
    assert shop.statuses["completed"] == Count(3)
    assert shop.statuses["pending"] == Count(0)
    assert found.overdue == Count(1)
    lateness = found.worst_lateness
    assert lateness is not None
    assert timedelta(minutes=9) < lateness < timedelta(minutes=11)
    assert found.stalled == Count(1)
    stall = found.longest_stall
    assert stall is not None
    assert timedelta(minutes=4) < stall < timedelta(minutes=6)
    assert found.quarantined == Count(1)
    assert found.quarantined_latest[0].reason == "cannot decode: bad JSON"
    assert found.failed_last_hour == Count(2)
    assert [(e.type, e.count) for e in found.errors] == [("CardDeclined", 2), ("Timeout", 1)]
    assert found.errors[0].message == "card declined"
    assert found.errors[0].step == "shop.Charge"
    assert found.errors_sampled == 3
    assert sum(h.started.value for h in found.hours) == 15  # every row was inserted now


def test_hours_count_started_completed_and_failed_by_their_times() -> None:
    add("completed", inserted="2 hours", updated="1 hour", n=2)
    add("failed", inserted="30 hours", updated="1 hour")
    found = snapshot()
    assert sum(h.started.value for h in found.hours) == 2  # the failed one started 30 h ago
    assert sum(h.completed.value for h in found.hours) == 2
    assert sum(h.failed.value for h in found.hours) == 1
    assert all(h.started.kind == "exact" for h in found.hours)


def test_a_busy_hour_is_extrapolated_from_its_newest_rows(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(status_module, "HOUR_SAMPLE", 10)
    with connection.cursor() as cursor:  # 40 starts spread evenly over 40 seconds
        cursor.execute(
            "INSERT INTO workflow_instances (id, workflow, status, state, inserted_at, "
            "updated_at) SELECT gen_random_uuid(), %s, 'pending', '{}', "
            "date_trunc('hour', now()) + g * interval '1 second', now() "
            "FROM generate_series(0, 39) g",
            [SHOP],
        )
    hour = snapshot().hours[-1]
    assert hour.started.kind == "about"
    assert 30 <= hour.started.value <= 50


def test_a_status_past_the_limit_is_estimated_per_workflow_from_statistics(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(status_module, "COUNT_LIMIT", 20)
    add("completed", n=60)
    add("completed", SIGNUP, n=30)
    add("failed", n=3)
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE workflow_instances")
    found = snapshot()
    assert found.by_status["completed"] == Count(90, "about")
    assert found.by_status["failed"] == Count(3)
    shop = next(row for row in found.by_workflow if row.workflow == SHOP)
    assert shop.statuses["completed"] == Count(60, "about")
    assert found.total.kind == "about"


def test_the_number_of_statements_is_bounded() -> None:
    add("completed", n=5)
    add("failed", error={"type": "E", "message": "m"})
    add("waiting", due="1 hour", quarantine="bad")
    with CaptureQueriesContext(connection) as captured:
        snapshot()
    statements = [q for q in captured.captured_queries if "SAVEPOINT" not in q["sql"]]
    assert len(statements) <= 11  # 10, and the concurrency limits' use


def test_every_question_is_answered_through_an_index() -> None:
    """With a few thousand rows and sequential scans off, no statement reads the table whole."""
    add("completed", n=3000)
    add("failed", updated="10 minutes", error={"type": "E", "message": "m"}, n=200)
    add("waiting", due="5 minutes", n=100)
    add("running", lease="5 minutes", n=50)
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE workflow_instances")
    with CaptureQueriesContext(connection) as captured:
        snapshot()
    statements = [q["sql"] for q in captured.captured_queries if "workflow_instances" in q["sql"]]
    assert statements
    with connection.cursor() as cursor:
        cursor.execute("SET enable_seqscan = off")
        try:
            for sql in statements:
                cursor.execute("EXPLAIN " + sql.replace("%", "%%"))
                plan = "\n".join(row[0] for row in cursor.fetchall())
                assert "Seq Scan on workflow_instances" not in plan, (sql, plan)
        finally:
            cursor.execute("RESET enable_seqscan")


# --- worker passes -----------------------------------------------------------------------------


def test_a_worker_records_its_passes_at_most_every_few_seconds() -> None:
    recorder = PassRecorder(every=3600, worker="test-host:1")
    storage = DjangoStorage()
    recorder("default", storage, [])
    recorder("default", storage, [])  # within the interval: not written
    recorder("default", InMemoryStorage(), [])  # no database: ignored
    found = snapshot()
    assert [(w.worker, w.passes) for w in found.workers] == [("test-host:1", 1)]
    recorder.every = 0
    recorder("default", storage, [])
    (seen,) = snapshot().workers
    assert seen.passes == 3
    assert seen.storage == "default"
    silence = snapshot().worker_silence
    assert silence is not None
    assert silence < timedelta(seconds=5)


def test_a_worker_pass_through_run_once_is_recorded() -> None:
    from hephaestus_django.worker import run_once

    run_once("default")
    assert snapshot().last_pass is not None


def test_a_failed_record_never_stops_the_worker(caplog: pytest.LogCaptureFixture) -> None:
    recorder = PassRecorder(every=0)
    with connection.cursor() as cursor:
        cursor.execute("ALTER TABLE hephaestus_worker_passes RENAME TO gone")
    try:
        recorder("default", DjangoStorage(), [])  # logged, not raised
    finally:
        with connection.cursor() as cursor:
            cursor.execute("ALTER TABLE gone RENAME TO hephaestus_worker_passes")
    assert "could not record the worker's pass" in caplog.text


# --- the command -------------------------------------------------------------------------------


def test_the_report_of_an_empty_table() -> None:
    code, out, _ = status()
    assert code == 0
    assert "total" in out
    assert "Overdue timers:    none" in out
    assert "never recorded: is hephaestus_worker running?" in out


def test_the_report_lists_workflows_counts_and_errors() -> None:
    add("completed", n=2)
    add("failed", error={"type": "CardDeclined", "message": "card declined", "step": "a.B"})
    worker_seen("5 seconds")
    code, out, _ = status()
    assert code == 0
    assert re.search(r"OrderFulfilment\s+0\s+0\s+0\s+2\s+1\s+0", out)
    assert "1  CardDeclined at B: card declined" in out
    assert "by host-a:41 on default" in out


def test_json_shape() -> None:
    add("waiting", due="2 minutes")
    worker_seen("1 second")
    code, out, _ = status("--json")
    assert code == 0
    document = json.loads(out)
    assert set(document) == {
        "database",
        "at",
        "instances",
        "overdue_timers",
        "stalled",
        "quarantined",
        "failed_last_hour",
        "hours",
        "errors",
        "workers",
        "queue",
        "concurrency",
    }
    assert document["instances"]["by_status"]["waiting"] == {"count": 1, "kind": "exact"}
    assert document["overdue_timers"]["count"] == 1
    assert 100 < document["overdue_timers"]["worst_lateness_s"] < 140
    assert len(document["hours"]) == 24
    assert document["workers"]["seen"][0]["worker"] == "host-a:41"
    assert "check" not in document
    code, out, _ = status("--json", "--check")
    assert code == 0
    assert json.loads(out)["check"]["ok"] is True


def test_concurrency_limits_are_reported_with_their_slots_and_lines() -> None:
    storage = DjangoStorage()
    gateway = SlotRequest("stripe", "acme", 2)
    for _ in range(3):
        instance = engine.start(engine.new_instance(LimitedFlow, {}))
        storage.put(instance)
        storage.admit(instance.id, "s.Charge", gateway, priority=0, lease=timedelta(minutes=5))
    _, out, _ = status("--json")
    assert json.loads(out)["concurrency"] == [
        {"limit": "stripe", "key": "acme", "slots": 2, "in_use": 2, "waiting": 1}
    ]
    _code, out, _ = status()
    assert "Concurrency limits (slots in use / slots, waiting):" in out
    assert "  stripe, key 'acme': 2/2 in use, 1 waiting" in out


def test_check_passes_when_nothing_is_past_its_threshold() -> None:
    worker_seen("10 seconds")
    add("waiting", due="1 minute")
    code, out, _ = status("--check")
    assert code == 0, out
    assert out.count("ok") == 4  # overdue, stalled, quarantined, worker silence
    assert "CROSSED" not in out


def test_check_with_no_worker_ever_seen_fails() -> None:
    code, out, message = status("--check")
    assert code == 1
    assert "CROSSED --max-worker-silence 2m00s: no worker pass was ever recorded" in out
    assert "--max-worker-silence" in message
    assert status("--check", "--max-worker-silence", "off")[0] == 0


@pytest.mark.parametrize(
    ("rows", "option", "limit", "crossing"),
    [
        ({"status": "waiting", "due": "10 minutes"}, "--max-overdue", "5m", True),
        ({"status": "waiting", "due": "10 minutes"}, "--max-overdue", "15m", False),
        ({"status": "running", "lease": "5 minutes"}, "--max-stalled", "0", True),
        ({"status": "running", "lease": "5 minutes", "n": 2}, "--max-stalled", "2", False),
        ({"status": "waiting", "quarantine": "bad row"}, "--max-quarantined", "0", True),
        ({"status": "waiting", "quarantine": "bad row"}, "--max-quarantined", "1", False),
        ({"status": "failed", "updated": "5 minutes", "n": 3}, "--max-failed-last-hour", "2", True),
        (
            {"status": "failed", "updated": "5 minutes", "n": 3},
            "--max-failed-last-hour",
            "3",
            False,
        ),
        ({"status": "failed", "updated": "2 hours", "n": 3}, "--max-failed-last-hour", "0", False),
    ],
)
def test_each_threshold(rows: dict[str, Any], option: str, limit: str, crossing: bool) -> None:
    worker_seen("1 second")
    add(**rows)
    code, out, message = status("--check", option, limit)
    line = next(line for line in out.splitlines() if option in line)
    if crossing:
        assert code == 1, out
        assert line.startswith("CROSSED"), out
        assert option in message
    else:
        assert code == 0, out
        assert line.startswith("ok"), out


def test_worker_silence_threshold() -> None:
    worker_seen("3 minutes")
    assert status("--check")[0] == 1
    assert status("--check", "--max-worker-silence", "5m")[0] == 0


def test_bad_options_are_refused() -> None:
    for args in (["--max-overdue", "soon"], ["--max-stalled", "-1"], ["--max-stalled", "x"]):
        with pytest.raises(CommandError):
            call_command("hephaestus_status", *args, stdout=StringIO())
    with pytest.raises(CommandError, match="not both"):
        call_command("hephaestus_status", "--storage", "default", "--database", "default")
    with pytest.raises(CommandError, match="not a database alias"):
        call_command("hephaestus_status", "--database", "nope")


def test_storage_limits_the_workers_listed() -> None:
    worker_seen("1 second", storage="default")
    worker_seen("1 second", worker="host-b:7", storage="tenant_b")
    document = json.loads(status("--json", "--storage", "default")[1])
    assert [w["storage"] for w in document["workers"]["seen"]] == ["default"]
    assert len(json.loads(status("--json")[1])["workers"]["seen"]) == 2


# --- the dashboard -----------------------------------------------------------------------------


def test_the_dashboard_shows_counts_chart_errors_and_workers(admin_client: Client) -> None:
    add("completed", n=2)
    add("waiting", due="10 minutes")
    add("failed", updated="5 minutes", error={"type": "CardDeclined", "message": "no <b>"})
    worker_seen("4 seconds")
    response = admin_client.get(DASHBOARD)
    assert response.status_code == 200
    page = response.content.decode()
    assert "Operations dashboard" in page
    assert f'href="{CHANGELIST}?workflow={SHOP}&amp;status__exact=completed"' in page
    assert f'href="{CHANGELIST}?status__exact=failed&amp;error_type=CardDeclined"' in page
    assert "no &lt;b&gt;" in page
    assert "no <b>" not in page
    content = page[page.index('id="content-main"') :]
    assert '<svg class="hx-chart"' in content
    assert "<script" not in content
    assert '<title id="hx-chart-title">' in page
    assert 'id="hx-hours-table"' in page
    assert "host-a:41" in page
    assert re.search(r"the worst by 10m\d\ds", page)


def test_the_dashboard_without_workers_or_instances(admin_client: Client) -> None:
    page = admin_client.get(DASHBOARD).content.decode()
    assert "No instances yet." in page
    assert "No worker pass was ever recorded" in page


def test_the_error_links_filter_the_list(admin_client: Client) -> None:
    add("failed", error={"type": "CardDeclined", "message": "declined"}, n=2)
    add("failed", error={"type": "Timeout", "message": "slow"})
    page = admin_client.get(
        CHANGELIST, {"status__exact": "failed", "error_type": "CardDeclined"}
    ).content.decode()
    assert "2 workflow instances" in page
    assert admin_client.get(CHANGELIST, {"error_type": "x" * 300}).status_code in (200, 302)


def test_the_dashboard_needs_the_view_permission(
    client: Client, staff_client: Callable[..., Client]
) -> None:
    assert client.get(DASHBOARD).status_code == 302  # to the login page
    assert staff_client().get(DASHBOARD).status_code == 403
    assert staff_client("view_workflowinstance").get(DASHBOARD).status_code == 200


def test_linked_from_the_index_and_the_changelist(admin_client: Client) -> None:
    index = admin_client.get(reverse("admin:index")).content.decode()
    entry = reverse("admin:hephaestus_django_operationsdashboard_changelist")
    assert entry in index
    assert "Operations dashboard" in index
    assert admin_client.get(entry)["Location"] == DASHBOARD
    changelist = admin_client.get(CHANGELIST).content.decode()
    assert f'href="{DASHBOARD}"' in changelist


def test_the_index_entry_follows_the_view_permission(
    staff_client: Callable[..., Client],
) -> None:
    entry = reverse("admin:hephaestus_django_operationsdashboard_changelist")
    assert entry not in staff_client().get(reverse("admin:index")).content.decode()
    viewer = staff_client("view_workflowinstance")
    assert entry in viewer.get(reverse("admin:index")).content.decode()


def test_the_dashboards_queries_are_bounded(admin_client: Client) -> None:
    admin_client.get(DASHBOARD)
    with CaptureQueriesContext(connection) as few:
        admin_client.get(DASHBOARD)
    add("completed", n=500)
    add("failed", error={"type": "E", "message": "m"}, n=50)
    add("waiting", due="1 hour", quarantine="bad", n=20)
    worker_seen("1 second")
    with CaptureQueriesContext(connection) as many:
        admin_client.get(DASHBOARD)
    assert len(many.captured_queries) <= len(few.captured_queries) + 2  # +QUARANTINED, +group
    # 14, the concurrency limits' use, and the limits' card (its transaction: 4 statements)
    assert len(many.captured_queries) <= 19


def held_and_waiting(request: SlotRequest, holders: int, waiters: int, step: str = "s.Charge"):
    """``holders`` instances holding a slot of ``request`` and ``waiters`` waiting for one."""
    storage = DjangoStorage()
    for _ in range(holders + waiters):
        instance = engine.start(engine.new_instance(LimitedFlow, {}))
        storage.put(instance)
        storage.admit(instance.id, step, request, priority=0, lease=timedelta(minutes=5))


def test_the_dashboard_shows_each_limit_with_its_slots_line_and_oldest_waiter(
    admin_client: Client,
) -> None:
    assert 'id="hx-limits"' not in admin_client.get(DASHBOARD).content.decode()  # none in use
    held_and_waiting(SlotRequest("stripe", "acme", 2), holders=2, waiters=3)
    held_and_waiting(SlotRequest("tests.flows.Sync", "", 4), holders=1, waiters=0)
    with connection.cursor() as cursor:  # the oldest waiter joined the line 5 minutes ago
        cursor.execute(
            "UPDATE hephaestus_slots SET enqueued_at = now() - interval '5 minutes'"
            " WHERE id = (SELECT min(id) FROM hephaestus_slots WHERE state = 'waiting')"
        )
    page = admin_client.get(DASHBOARD).content.decode()
    card = page[page.index('id="hx-limits"') : page.index('id="hx-workers"')]
    rows = re.findall(r"<tr>(.*?)</tr>", card)
    assert len(rows) == 3  # the header, and one row per limit and key
    cells = [
        re.sub(r"<[^>]+>", "", cell) for cell in re.findall(r"<t[dh][^>]*>(.*?)</t[dh]>", rows[1])
    ]
    assert cells[:4] == ["stripe", "acme", "2 / 2", "3"]
    assert cells[4].startswith("waiting 5m")
    cells = [
        re.sub(r"<[^>]+>", "", cell) for cell in re.findall(r"<t[dh][^>]*>(.*?)</t[dh]>", rows[2])
    ]
    assert cells == ["Sync", "—", "1 / 4", "0", "nobody waits"]


def test_the_limits_card_is_bounded_and_caps_the_keys_shown(
    admin_client: Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    from hephaestus_django.postgres import slots

    held_and_waiting(SlotRequest("mail", "k00", 1), holders=1, waiters=1)
    admin_client.get(DASHBOARD)
    with CaptureQueriesContext(connection) as few:
        admin_client.get(DASHBOARD)
    for n in range(1, 12):
        held_and_waiting(SlotRequest("mail", f"k{n:02d}", 1), holders=1, waiters=4)
    monkeypatch.setattr(slots, "LINES_SHOWN", 5)
    monkeypatch.setattr(slots, "LINE_COUNT_CAP", 3)
    with CaptureQueriesContext(connection) as many:
        page = admin_client.get(DASHBOARD).content.decode()
    assert len(many.captured_queries) == len(few.captured_queries)
    card = page[page.index('id="hx-limits"') : page.index('id="hx-workers"')]
    assert card.count("<tr>") == 6  # the header and the first 5 keys
    assert ">k04<" in card
    assert ">k05<" not in card
    assert ">3+<" in card  # 4 waiters, counted up to 3
    assert "there may be more" in card
    [statement] = [q["sql"] for q in many.captured_queries if "WITH RECURSIVE pairs" in q["sql"]]
    with connection.cursor() as cursor:  # index reads only: no pass over the slots table
        cursor.execute("SET LOCAL enable_seqscan = off")
        cursor.execute("EXPLAIN " + statement)
        plan = "\n".join(row[0] for row in cursor.fetchall())
    assert "Seq Scan" not in plan, plan


def test_a_dashboard_that_runs_out_of_time_says_so(
    admin_client: Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(status_module, "STATEMENT_TIMEOUT_MS", 1)
    monkeypatch.setattr(
        status_module, "HEALTH", status_module.HEALTH.replace("SELECT", "SELECT pg_sleep(0.05),", 1)
    )
    response = admin_client.get(DASHBOARD)
    assert response.status_code == 200
    assert "took longer than" in response.content.decode()


def test_the_chart_draws_estimates_hatched_and_escapes_nothing_unsafe() -> None:
    from datetime import UTC, datetime

    start = datetime(2026, 1, 1, tzinfo=UTC)
    hours = [Hour(start + timedelta(hours=i), Count(i), Count(i // 2), Count(0)) for i in range(23)]
    hours.append(Hour(start + timedelta(hours=23), Count(COUNT_LIMIT, "about"), Count(1), Count(1)))
    svg = hourly_chart(hours)
    assert svg.startswith("<svg")
    assert svg.endswith("</svg>")
    assert 'fill="url(#hx-hatch)"' in svg
    assert "<desc" in svg
    assert 'role="img"' in svg
