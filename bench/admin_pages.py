"""Item 5: the admin's changelist and instance page through Django's test client.

A logged-in superuser requests each page repeatedly: latency, the number of SQL statements
(``CaptureQueriesContext``), and whether any statement counts the whole table. The baseline is
raw psycopg executing the same SELECT statements the page executed (as Django logged them), so
``db_share`` says how much of a page is the database and how much is Python.
"""

from __future__ import annotations

import json
import re
import time
from typing import Any
from urllib.parse import urlencode

import psycopg
from django.contrib.auth import get_user_model
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from bench.data import BULK_ORDER_BASE
from bench.measure import latency_ms, repeat

# A COUNT over the table with neither WHERE nor LIMIT after it: a count of the whole table.
_FULL_COUNT = re.compile(r'SELECT COUNT\(\*\).*FROM "workflow_instances"(?!.*(WHERE|LIMIT))', re.S)


def _client() -> Client:
    user_model = get_user_model()
    user = user_model.objects.filter(username="bench").first()
    if user is None:
        user = user_model.objects.create_superuser("bench", "bench@example.com", "bench")
    client = Client()
    client.force_login(user)
    return client


def pages(rows: int) -> dict[str, str]:
    changelist = reverse("admin:hephaestus_django_workflowinstance_changelist")
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT id FROM workflow_instances WHERE state @> %s::jsonb",
            [json.dumps({"context": {"initial": {"order_id": BULK_ORDER_BASE + rows // 2}}})],
        )
        (detail_id,) = cursor.fetchone()
    return {
        "changelist": changelist,
        "changelist_page_50": changelist + "?" + urlencode({"p": 50}),
        "changelist_status_filter": changelist + "?" + urlencode({"status__exact": "completed"}),
        "changelist_context_search": changelist
        + "?"
        + urlencode({"q": f"order_id={BULK_ORDER_BASE + rows // 3}"}),
        "detail": reverse("admin:hephaestus_django_workflowinstance_change", args=[detail_id]),
    }


def _raw_replay(raw: psycopg.Connection[Any], statements: list[str]) -> list[float]:
    """Milliseconds raw psycopg takes for each SELECT the page ran."""
    found = []
    for sql in statements:
        start = time.perf_counter()
        with raw.cursor() as cursor:
            cursor.execute(sql.replace("%", "%%"))
            cursor.fetchall()
        found.append((time.perf_counter() - start) * 1e3)
    return found


def _requests(client: Client, url: str, n: int, budget_s: float = 20.0) -> list[int]:
    """Latencies of ``n`` requests, or of as many as fit in ``budget_s`` (at least 3)."""
    found: list[int] = []
    deadline = time.perf_counter() + budget_s
    while len(found) < n and (len(found) < 3 or time.perf_counter() < deadline):
        found.extend(repeat(lambda i: client.get(url), 1))
    return found


def run(raw: psycopg.Connection[Any], *, rows: int, n: int) -> dict[str, Any]:
    client = _client()
    results: dict[str, Any] = {"rows": rows}
    for name, url in pages(rows).items():
        response = client.get(url)
        assert response.status_code == 200, (url, response.status_code)
        with CaptureQueriesContext(connection) as captured:
            client.get(url)
        statements = [q["sql"] for q in captured.captured_queries]
        selects = [sql for sql in statements if sql.lstrip().upper().startswith("SELECT")]

        page_ns = _requests(client, url, n)
        replay = [_raw_replay(raw, selects) for _ in range(min(len(page_ns), 5))]
        db_ms = sorted(sum(times) for times in replay)[len(replay) // 2]
        slowest = max(range(len(selects)), key=lambda i: replay[-1][i]) if selects else None
        page = latency_ms(page_ns)
        results[name] = {
            "url": url,
            "latency_ms": page,
            "statements": len(statements),
            "full_table_count": any(_FULL_COUNT.search(sql) for sql in statements),
            "raw_replay_ms": db_ms,
            "db_share": db_ms / page["p50"],
            "slowest_statement": None if slowest is None else selects[slowest][:600],
            "slowest_statement_ms": None if slowest is None else replay[-1][slowest],
        }
    return results
