"""The bench's own counting (``bench/``): what it classifies, and what it refuses to measure.

Two figures of ``make bench`` were wrong in the full run of 7 December: section 9's failed
attempt counted another section's instances taken over by its worker pass (205 statements, 8
alone), and section 11 counted the queued map's lease renewals as writes of the instance.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import pytest
from django.db import connection

from bench.leftovers import ensure_none, takeovers
from bench.tally import table_written
from hephaestus_django import Context, Done, Instance, Step, Workflow
from hephaestus_django.core import engine
from hephaestus_django.postgres.sql import RENEW
from hephaestus_django.storage import DjangoStorage


class Noop(Step):
    events = ("ok",)

    def execute(self, instance: Instance, config: Mapping[str, Any], context: Context) -> str:
        return "ok"


class LeftRunning(Workflow):
    start = Noop
    transitions = {Noop: {"ok": Done}}


def test_a_lease_renewal_is_not_counted_as_a_write_of_the_instance() -> None:
    assert table_written(RENEW) == "renewals"
    assert table_written("UPDATE workflow_instances SET state = %s WHERE id = %s") == "instance"
    assert table_written("INSERT INTO workflow_map_items (instance_id) VALUES (%s)") == "items"
    assert table_written("SELECT 1 FROM workflow_instances") is None


@pytest.mark.django_db
def test_a_running_instance_never_leased_is_found_and_refused() -> None:
    storage = DjangoStorage()
    started = engine.start(engine.new_instance(LeftRunning, {}))
    storage.put(started)
    connection.ensure_connection()
    raw = connection.connection

    assert takeovers(raw) == [("running, never leased", LeftRunning.path(), "running", 1)]
    with pytest.raises(RuntimeError, match=f"1 running, never leased \\({LeftRunning.path()}"):
        ensure_none(raw, "the measurement")

    storage.delete(started.id)
    ensure_none(raw, "the measurement")
