"""The worker's claim on PostgreSQL: index scans only, and quarantine for rows it cannot decode."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from django.db import connection, transaction
from django.test.utils import CaptureQueriesContext

from hephaestus_django.core import engine
from hephaestus_django.models import WorkflowInstance
from hephaestus_django.storage import DjangoStorage
from tests import flows

pytestmark = pytest.mark.django_db

TABLE = "workflow_instances"


def plan_of(sql: str) -> dict[str, Any]:
    """The plan PostgreSQL chooses for ``sql`` when scanning a whole table or sorting rows read
    from it is made as expensive as it gets: what no index can serve still shows up."""
    with transaction.atomic(), connection.cursor() as cursor:
        for setting in ("enable_seqscan", "enable_sort", "enable_bitmapscan"):
            cursor.execute(f"SET LOCAL {setting} = off")
        cursor.execute(f"EXPLAIN (FORMAT JSON) {sql}")
        (plan,) = cursor.fetchone()[0]
        return plan["Plan"]  # type: ignore[no-any-return]


def table_reads(node: dict[str, Any]) -> list[str]:
    """The node types that read the table below ``node``, not counting reads of CTE results."""
    found = [node["Node Type"]] if node.get("Relation Name") == TABLE else []
    for child in node.get("Plans", []):
        if child.get("Parent Relationship") != "InitPlan" and child["Node Type"] != "CTE Scan":
            found.extend(table_reads(child))
    return found


def problems(node: dict[str, Any]) -> list[str]:
    """Seq Scans of the table, and sorts of rows read from it: a claim that reads (or orders)
    every due or running row instead of stopping at its limit."""
    found = []
    if node["Node Type"] == "Seq Scan" and node.get("Relation Name") == TABLE:
        found.append("Seq Scan on the table")
    if node["Node Type"] == "Sort":
        reads = [read for child in node.get("Plans", []) for read in table_reads(child)]
        if reads:
            found.append(f"Sort over {', '.join(reads)} of the table")
    for child in node.get("Plans", []):
        found.extend(problems(child))
    return found


def test_the_claim_reads_every_candidate_from_an_index_in_order() -> None:
    storage = DjangoStorage()
    storage.put(engine.start(engine.new_instance(flows.IfElse, {"script": {}})))
    with CaptureQueriesContext(connection) as captured:
        storage.claim("worker", lease=timedelta(minutes=1), limit=10)
    (claim,) = [query["sql"] for query in captured.captured_queries]  # the statement it ran
    assert claim.lstrip().startswith("WITH due AS")
    plan = plan_of(claim)
    assert problems(plan) == []
    assert "Index Scan" in str(plan)


def test_the_check_would_see_a_claim_no_index_serves() -> None:
    """The old claim (one WHERE with an OR, ordered by an expression) reads and sorts every row
    that might need a worker; the check above must catch that."""
    old = f"""
        SELECT id FROM {TABLE}
        WHERE (lease_owner IS NULL OR lease_expires_at <= now())
          AND ((due_at IS NOT NULL AND due_at <= now()) OR status = 'running')
        ORDER BY COALESCE(due_at, updated_at), id LIMIT 10 FOR UPDATE SKIP LOCKED
    """
    assert problems(plan_of(old)) != []
    assert problems(plan_of(f"SELECT id FROM {TABLE} WHERE state::text LIKE '%x%'")) != []


def test_a_corrupt_claimed_row_is_quarantined_with_its_reason() -> None:
    storage = DjangoStorage()
    corrupt = engine.start(engine.new_instance(flows.IfElse, {"script": {}}))
    storage.put(corrupt)
    WorkflowInstance.objects.filter(id=corrupt.id).update(state={"context": {}})
    assert storage.claim("worker", lease=timedelta(minutes=1), limit=10) == []
    row = WorkflowInstance.objects.get(id=corrupt.id)
    assert row.quarantine_reason is not None
    assert "CorruptInstanceError" in row.quarantine_reason
    assert "missing keys" in row.quarantine_reason
    assert (row.lease_owner, row.lease_expires_at, row.revision) == (None, None, 2)
    assert storage.claim("worker", lease=timedelta(minutes=1), limit=10) == []
    with CaptureQueriesContext(connection) as captured:
        storage.claim("worker", lease=timedelta(minutes=1), limit=10)
    assert len(captured.captured_queries) == 1  # nothing more to quarantine: one statement
