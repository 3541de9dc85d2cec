"""``hephaestus_prune``: old finished instances deleted in batches, exactly the matching ones."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
import uuid
from datetime import timedelta
from io import StringIO
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
from django.core.management import CommandError, call_command
from django.db import connection, connections, transaction
from django.utils import timezone

from hephaestus_django.core import engine
from hephaestus_django.models import WorkflowInstance
from hephaestus_django.postgres.retention import INDEX, Pruner, batch_sql, parse_age
from hephaestus_django.storage import DjangoStorage
from tests import flows
from tests.support.instances import stored

pytestmark = pytest.mark.django_db

REPO = Path(__file__).resolve().parents[2]


def age_rows(days: int, *ids: object) -> None:
    with connection.cursor() as cursor:
        cursor.execute(
            "UPDATE workflow_instances SET updated_at = now() - make_interval(days => %s) "
            "WHERE id = ANY(%s)",
            [days, list(ids)],
        )


@pytest.fixture
def population() -> dict[str, list[object]]:
    storage = DjangoStorage()
    old_done = [stored(storage).id for _ in range(5)]
    new_done = [stored(storage).id for _ in range(2)]
    old_failed = [stored(storage, flows.FanOut, script={"charge": "fail"}).id]
    old_waiting = [stored(storage, flows.TwoWaits).id]
    age_rows(40, *old_done, *old_failed, *old_waiting)
    age_rows(10, *new_done)
    return {
        "old_done": old_done,
        "new_done": new_done,
        "old_failed": old_failed,
        "old_waiting": old_waiting,
    }


def remaining() -> set[object]:
    return set(WorkflowInstance.objects.values_list("id", flat=True))


def prune(*args: str) -> str:
    out = StringIO()
    call_command("hephaestus_prune", *args, stdout=out)
    return out.getvalue()


def test_a_dry_run_counts_and_changes_nothing(population: dict[str, list[object]]) -> None:
    before = remaining()
    out = prune("--status", "completed", "--older-than", "30d", "--dry-run")
    assert out.startswith("Dry run: 5 completed instances last changed before ")
    assert remaining() == before


def test_a_prune_deletes_exactly_the_matching_rows_in_batches(
    population: dict[str, list[object]],
) -> None:
    out = prune("--status", "completed", "--older-than", "30d", "--batch-size", "2")
    assert out.startswith("Deleted 5 completed instances")
    assert "in 3 batch(es) of at most 2" in out
    kept = population["new_done"] + population["old_failed"] + population["old_waiting"]
    assert remaining() == set(kept)


def test_several_statuses(population: dict[str, list[object]]) -> None:
    report = Pruner(statuses=["completed", "failed"], older_than=timedelta(days=30)).run()
    # One status at a time: a batch for each.
    assert (report.matched, report.deleted, report.batches) == (6, 6, 2)
    assert remaining() == set(population["new_done"] + population["old_waiting"])


def test_cancelled_instances_are_pruned_like_the_other_finished_ones(
    population: dict[str, list[object]],
) -> None:
    storage = DjangoStorage()
    old, new = stored(storage, flows.TwoWaits), stored(storage, flows.TwoWaits)
    for instance in (old, new):
        storage.put(engine.cancel(instance, now=timezone.now(), reason="stop"))
    age_rows(40, old.id)
    out = prune("--status", "cancelled", "--older-than", "30d")
    assert out.startswith("Deleted 1 cancelled instances")
    assert remaining() == set(population["old_done"]) | {
        *population["new_done"],
        *population["old_failed"],
        *population["old_waiting"],
        new.id,
    }
    report = Pruner(
        statuses=["completed", "failed", "cancelled"], older_than=timedelta(days=30)
    ).run(dry_run=True)
    assert report.matched == 6  # the five completed and the failed one


def test_the_status_is_never_implied() -> None:
    # A delete names what it deletes: no default, not even "every finished status".
    with pytest.raises(CommandError, match="--status"):
        prune("--older-than", "30d")


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--status", "done", "--older-than", "30d"], "unknown status 'done'"),
        (["--status", "completed", "--older-than", "30 days"], "is not an age"),
        (["--status", "completed", "--older-than", "30d", "--batch-size", "0"], "at least 1"),
    ],
)
def test_bad_arguments_are_refused(args: list[str], message: str) -> None:
    with pytest.raises(CommandError, match=message):
        prune(*args)


def test_ages() -> None:
    assert parse_age("45s") == timedelta(seconds=45)
    assert parse_age("2w") == timedelta(weeks=2)
    assert parse_age(" 12h ") == timedelta(hours=12)


def test_batches_go_on_after_the_last_row_deleted_through_ties(
    population: dict[str, list[object]],
) -> None:
    # The five old rows were aged by one statement: they share one updated_at, so each batch
    # must start after the previous one's last (updated_at, id), not after its updated_at.
    report = Pruner(statuses=["completed"], older_than=timedelta(days=30), batch_size=1).run()
    assert (report.matched, report.deleted, report.batches) == (5, 5, 6)
    assert remaining().isdisjoint(population["old_done"])


def test_a_status_the_index_does_not_cover_is_pruned_too(
    population: dict[str, list[object]],
) -> None:
    out = prune("--status", "waiting", "--older-than", "30d", "--batch-size", "1")
    assert out.startswith("Deleted 1 waiting instances")
    assert remaining().isdisjoint(population["old_waiting"])


def test_progress_is_reported_after_batches(population: dict[str, list[object]]) -> None:
    args = ("--status", "completed", "--older-than", "30d", "--batch-size", "2")
    lines = prune(*args, "--progress-every", "0").splitlines()
    assert [line.split(" in ")[0] for line in lines[:3]] == [
        "2 of 5 deleted (40%)",
        "4 of 5 deleted (80%)",
        "5 of 5 deleted (100%)",
    ]
    assert "rows/s" in lines[0]
    assert lines[3].startswith("Deleted 5 completed instances")
    # By default a line every 5 seconds: none in a prune this short.
    assert prune(*args).startswith("Deleted 0 ")


# --- which database ---------------------------------------------------------------------------

TENANT_SETTINGS = {
    "STORAGES": {
        "default": {"BACKEND": "hephaestus_django.storage.DjangoStorage"},
        "tenant": {
            "BACKEND": "hephaestus_django.storage.DjangoStorage",
            "OPTIONS": {"using": "other"},
        },
        "memory": {"BACKEND": "hephaestus_django.runtime.InMemoryStorage"},
    }
}


@pytest.mark.django_db(databases=["default", "other"])
def test_storage_names_the_database_pruned(settings: Any) -> None:
    settings.HEPHAESTUS = TENANT_SETTINGS
    here, there = stored(DjangoStorage()), stored(DjangoStorage(using="other"))
    age_rows(40, here.id)
    with connections["other"].cursor() as cursor:
        cursor.execute(
            "UPDATE workflow_instances SET updated_at = now() - interval '40 days' WHERE id = %s",
            [there.id],
        )
    out = prune("--status", "completed", "--older-than", "30d", "--storage", "tenant")
    assert out.startswith("Deleted 1 completed instances")
    assert not WorkflowInstance.objects.using("other").filter(id=there.id).exists()
    assert remaining() == {here.id}
    prune("--status", "completed", "--older-than", "30d", "--database", "default")
    assert remaining() == set()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--storage", "tenant", "--database", "other"], "Give --storage or --database, not both"),
        (["--storage", "nowhere"], "Could not find config for 'nowhere'"),
        (["--storage", "memory"], "'memory' is a InMemoryStorage, which keeps no rows"),
        (["--database", "nowhere"], "'nowhere' is not a database alias in settings.DATABASES"),
    ],
)
def test_a_wrong_storage_or_database_is_refused(
    args: list[str], message: str, settings: Any
) -> None:
    settings.HEPHAESTUS = TENANT_SETTINGS
    with pytest.raises(CommandError, match=re.escape(message)):
        prune("--status", "completed", "--older-than", "30d", *args)


# --- the index --------------------------------------------------------------------------------


@pytest.mark.parametrize("status", ["completed", "cancelled"])
@pytest.mark.parametrize("first", [True, False])
def test_a_batch_is_an_index_scan_in_key_order(first: bool, status: str) -> None:
    params = {"cutoff": timezone.now(), "limit": 1000}
    if not first:
        params.update(after_at=timezone.now() - timedelta(days=60), after_id=uuid.uuid4())
    with connection.cursor() as cursor:
        # A small table is cheap to read whatever the plan, so the planner is told to avoid
        # what the index is there to avoid at scale: scanning the table, collecting matches
        # in a bitmap, and sorting them (a sort would still appear if the index could not
        # deliver the order).
        for setting in ("enable_seqscan", "enable_bitmapscan", "enable_sort"):
            cursor.execute(f"SET LOCAL {setting} = off")
        cursor.execute("EXPLAIN " + batch_sql(status, first=first), params)
        lines = [row[0] for row in cursor.fetchall()]
    plan = "\n".join(lines)
    # Rows are locked as they come from the index, in key order: no sort in between, and
    # the keyset bound is an index condition.
    (locking,) = [n for n, line in enumerate(lines) if "LockRows" in line]
    assert f"Index Scan using {INDEX} on workflow_instances" in lines[locking + 1], plan
    condition = lines[locking + 2]
    assert f"Index Cond: (((status)::text = '{status}'::text) AND (updated_at < " in condition
    assert ("AND (ROW(updated_at, id) > ROW(" in condition) is not first, plan


def prune_index_definition() -> str | None:
    with connection.cursor() as cursor:
        cursor.execute("SELECT indexdef FROM pg_indexes WHERE indexname = %s", [INDEX])
        found = cursor.fetchone()
    return found[0] if found else None


@pytest.mark.django_db(transaction=True)
def test_the_index_migrations_are_reversible() -> None:
    finished = (
        f"CREATE INDEX {INDEX} ON public.workflow_instances USING btree (status, updated_at, id)"
        " WHERE ((status)::text = ANY ((ARRAY['completed'::character varying, "
        "'failed'::character varying, 'cancelled'::character varying])::text[]))"
    )
    assert prune_index_definition() == finished
    call_command("migrate", "hephaestus_django", "0006", verbosity=0)
    assert prune_index_definition() == finished.replace(", 'cancelled'::character varying", "")
    call_command("migrate", "hephaestus_django", "0004", verbosity=0)
    assert prune_index_definition() is None
    call_command("migrate", "hephaestus_django", verbosity=0)
    assert prune_index_definition() == finished


# --- locked rows and interruptions --------------------------------------------------------------


def insert_old_rows(count: int) -> None:
    with connection.cursor() as cursor:
        cursor.execute(
            "INSERT INTO workflow_instances (id, workflow, status, state, updated_at) "
            "SELECT gen_random_uuid(), 'tests.flows.IfElse', 'completed', '{}', "
            "now() - interval '40 days' - g * interval '1 second' "
            "FROM generate_series(1, %s) AS g",
            [count],
        )


@pytest.mark.django_db(transaction=True)
def test_rows_someone_holds_locked_are_left_and_the_rest_pruned() -> None:
    insert_old_rows(10)
    ids = sorted(WorkflowInstance.objects.order_by("updated_at", "id").values_list("id", flat=True))
    locked = [ids[3], ids[4], ids[8]]
    ready, done = threading.Event(), threading.Event()

    def hold() -> None:
        try:
            with transaction.atomic():
                list(WorkflowInstance.objects.select_for_update().filter(id__in=locked))
                ready.set()
                done.wait(30)
        finally:
            connection.close()

    holder = threading.Thread(target=hold)
    holder.start()
    try:
        assert ready.wait(30)
        report = Pruner(statuses=["completed"], older_than=timedelta(days=30), batch_size=2).run()
    finally:
        done.set()
        holder.join()
    assert (report.matched, report.deleted) == (10, 7)
    assert remaining() == set(locked)


class Prune:
    """``manage.py hephaestus_prune`` in a process of its own, on the test database."""

    def __init__(self, *args: str) -> None:
        db = connection.settings_dict
        url = (
            f"postgresql://{quote(db['USER'] or '')}:{quote(db['PASSWORD'] or '')}@"
            f"{db['HOST'] or '127.0.0.1'}:{db['PORT'] or 5432}/{quote(db['NAME'])}"
        )
        self.process = subprocess.Popen(
            [sys.executable, "-m", "django", "hephaestus_prune", *args],
            cwd=REPO,
            env={
                **os.environ,
                "DATABASE_URL": url,
                "DJANGO_SETTINGS_MODULE": "tests.settings",
                "PYTHONPATH": str(REPO),
                "PYTHONUNBUFFERED": "1",
            },
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        self.lines: list[str] = []

    def wait_for(self, text: str) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self.lines.append(line.rstrip("\n"))
            if text in line:
                return
        raise AssertionError(f"{text!r} never came: {self.lines}, {self.process.stderr}")

    def interrupt(self) -> None:
        self.process.send_signal(signal.SIGINT)

    def finish(self) -> tuple[int, list[str]]:
        out, err = self.process.communicate(timeout=60)
        assert "Traceback" not in err, err
        return self.process.returncode, self.lines + out.splitlines()

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait()


@pytest.fixture
def old_rows() -> int:
    insert_old_rows(30_000)
    return 30_000


def interrupted_totals(lines: list[str]) -> tuple[int, int]:
    """(deleted, left) from the ``Interrupted: ...`` line."""
    (line,) = [line for line in lines if line.startswith("Interrupted: deleted ")]
    found = re.match(r"Interrupted: deleted (\d+) .*; (\d+) of the (\d+) matched", line)
    assert found, line
    return int(found[1]), int(found[2])


ARGS = ("--status", "completed", "--older-than", "30d", "--batch-size", "10")


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_ctrl_c_lets_the_batch_under_way_commit_and_prints_the_totals(old_rows: int) -> None:
    prune_process = Prune(*ARGS, "--progress-every", "0")
    try:
        prune_process.wait_for(" deleted (")
        prune_process.interrupt()
        code, lines = prune_process.finish()
    finally:
        prune_process.kill()
    assert code == 130, lines
    assert any(line.startswith("Stopping after the batch under way") for line in lines)
    deleted, left = interrupted_totals(lines)
    assert 0 < deleted < old_rows
    assert deleted % 10 == 0  # whole batches only
    # The totals are exact: every batch either counted and gone, or never started.
    assert WorkflowInstance.objects.count() == left == old_rows - deleted


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_a_second_ctrl_c_abandons_the_batch_under_way(old_rows: int) -> None:
    prune_process = Prune(*ARGS, "--progress-every", "0")
    try:
        prune_process.wait_for(" deleted (")
        with transaction.atomic(), connection.cursor() as cursor:
            # Hold the next batch up on a lock, then interrupt it twice.
            cursor.execute("LOCK TABLE workflow_instances IN ACCESS EXCLUSIVE MODE")
            waiting = 0
            while not waiting:
                cursor.execute(
                    "SELECT count(*) FROM pg_locks WHERE relation = 'workflow_instances'::regclass"
                    " AND NOT granted"
                )
                (waiting,) = cursor.fetchone()
            prune_process.interrupt()
            prune_process.wait_for("Stopping after the batch under way")
            prune_process.interrupt()
            code, lines = prune_process.finish()
    finally:
        prune_process.kill()
    assert code == 130, lines
    assert "The batch under way was abandoned (rolled back)." in lines
    deleted, left = interrupted_totals(lines)
    assert WorkflowInstance.objects.count() == left == old_rows - deleted
