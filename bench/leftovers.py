"""What a worker pass would take over now: the instances a section leaves behind.

``LocalRunner.work`` (and every worker) claims three kinds of rows (``CLAIM`` in
:mod:`hephaestus_django.postgres.sql`): due timers, running instances whose lease lapsed, and
running ones never leased. A section that leaves such rows makes the next section's worker pass
do their work too, and whatever that section counts or times then includes it: section 9's
failed attempt, retried by a worker pass, once counted 205 statements instead of 8 in the full
run. So every section removes what it leaves, and a section that runs a worker pass calls
:func:`ensure_none` before it measures.
"""

from __future__ import annotations

from typing import Any

import psycopg

from hephaestus_django.postgres.sql import TABLE

_FOUND = f"""
SELECT kind, workflow, status, count(*) FROM (
    SELECT 'due timer' AS kind, workflow, status FROM {TABLE}
    WHERE due_at <= statement_timestamp() AND quarantine_reason IS NULL
      AND (lease_expires_at IS NULL OR lease_expires_at <= statement_timestamp())
    UNION ALL
    SELECT 'lapsed lease', workflow, status FROM {TABLE}
    WHERE status = 'running' AND lease_expires_at <= statement_timestamp()
      AND quarantine_reason IS NULL AND due_at IS NULL
    UNION ALL
    SELECT 'running, never leased', workflow, status FROM {TABLE}
    WHERE status = 'running' AND lease_expires_at IS NULL AND quarantine_reason IS NULL
      AND due_at IS NULL
) AS found
GROUP BY kind, workflow, status
ORDER BY kind, workflow, status
"""


def takeovers(raw: psycopg.Connection[Any]) -> list[tuple[str, str, str, int]]:
    """The rows a worker pass would claim now, counted by kind, workflow and status."""
    return [(str(k), str(w), str(s), int(n)) for k, w, s, n in raw.execute(_FOUND).fetchall()]


def describe(found: list[tuple[str, str, str, int]]) -> str:
    return "; ".join(f"{n} {kind} ({workflow}, {status})" for kind, workflow, status, n in found)


def ensure_none(raw: psycopg.Connection[Any], before: str) -> None:
    """Raise if a worker pass would take over any instance now: ``before`` (what is about to be
    measured) would count their work as its own."""
    found = takeovers(raw)
    if found:
        raise RuntimeError(
            f"{before}: a worker pass would take over instances an earlier section left "
            f"behind: {describe(found)}. Make the section that made them delete them at its "
            "end (see bench/leftovers.py), then run the bench again."
        )
