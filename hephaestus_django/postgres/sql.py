"""Every statement the app writes by hand, each named and described, in one place.

The modules beside this one run them: :mod:`~hephaestus_django.postgres.storage` (the instances
table's reads and writes), :mod:`~hephaestus_django.postgres.snapshot` (``hephaestus_status`` and
the dashboard), :mod:`~hephaestus_django.postgres.retention` (``hephaestus_prune``),
:mod:`~hephaestus_django.postgres.worker_passes` (what workers record of their passes),
:mod:`~hephaestus_django.postgres.step_workers` (the job engines' own tables),
:mod:`~hephaestus_django.postgres.budget` and :mod:`~hephaestus_django.postgres.estimates` (the
admin's limits and counts). A statement built at run time (a filter's ``WHERE``, a batch of a
given status) is a template here, filled in by the module that runs it.

Time is the database's throughout: ``statement_timestamp()`` (fixed for the statement, the
statement's own inside a longer transaction) or ``clock_timestamp()`` where several writes of
one transaction must keep their order.
"""

from __future__ import annotations

# --- the instances table: DjangoStorage ------------------------------------------------------

TABLE = "workflow_instances"
FIELDS = (
    "id",
    "workflow",
    "status",
    "workflow_version",
    "state",
    "revision",
    "inserted_at",
    "updated_at",
    "due_at",
    "lease_owner",
    "lease_expires_at",
    "quarantine_reason",
    "business_key",
    "running",
)
"""The columns every read selects, in the order :func:`stored_row` reads them: the order of
the model's fields, so a queryset selecting whole rows reads them in this order too."""
# The state and the running marks are read as text, for the codec to decode.
_SELECTED = tuple(f"{field}::text" if field in ("state", "running") else field for field in FIELDS)
COLUMNS = ", ".join(_SELECTED)

SELECT_ONE = f"SELECT {COLUMNS} FROM {TABLE} WHERE id = %s"
# statement_timestamp(): the database's time, fixed for the statement (so an index bound), and
# the statement's own even inside a longer transaction (now() would be the transaction's).
CLOCK = "SELECT clock_timestamp()"
RENEW = f"""
UPDATE {TABLE} SET lease_expires_at = statement_timestamp() + %s
WHERE id = %s AND lease_owner = %s
"""
# One statement hands each row to one worker: SKIP LOCKED keeps concurrent workers off the rows
# another is claiming, and the revision bump makes every write based on an older read stale.
# Three candidate sets, each served by an index and read only up to the limit: due timers (the
# partial index on due_at), running instances whose lease lapsed, and running ones never leased
# (both the partial index on lease_expires_at of running rows). A lease is live while its
# expiry is in the future. An OR of these in one WHERE is served by no index at scale.
# A quarantined row (one a worker could not decode) is left alone until a write clears it.
_FREE = (
    "(lease_expires_at IS NULL OR lease_expires_at <= statement_timestamp())"
    " AND quarantine_reason IS NULL"
)
CLAIM = f"""
WITH due AS (
    SELECT id, due_at AS since FROM {TABLE}
    WHERE due_at <= statement_timestamp() AND {_FREE}
    ORDER BY due_at
    LIMIT %(limit)s
    FOR UPDATE SKIP LOCKED
), lapsed AS (
    SELECT id, lease_expires_at AS since FROM {TABLE}
    WHERE status = 'running' AND lease_expires_at <= statement_timestamp()
      AND quarantine_reason IS NULL
    ORDER BY lease_expires_at
    LIMIT %(limit)s
    FOR UPDATE SKIP LOCKED
), unleased AS (
    SELECT id, updated_at AS since FROM {TABLE}
    WHERE status = 'running' AND lease_expires_at IS NULL AND quarantine_reason IS NULL
    LIMIT %(limit)s
    FOR UPDATE SKIP LOCKED
), candidates AS (
    SELECT id, min(since) AS since
    FROM (
        SELECT * FROM due UNION ALL SELECT * FROM lapsed UNION ALL SELECT * FROM unleased
    ) AS found
    GROUP BY id
    ORDER BY since, id
    LIMIT %(limit)s
)
UPDATE {TABLE} AS claimed
SET lease_owner = %(owner)s,
    lease_expires_at = statement_timestamp() + %(lease)s,
    revision = claimed.revision + 1
FROM candidates
WHERE claimed.id = candidates.id
RETURNING {", ".join(f"claimed.{field}" for field in _SELECTED)}
"""
# Rows a claim could not decode: set aside, unless written since (the revision the claim gave).
QUARANTINE = f"""
UPDATE {TABLE} AS stored
SET quarantine_reason = marked.reason, lease_owner = NULL, lease_expires_at = NULL
FROM unnest(%s::uuid[], %s::integer[], %s::text[]) AS marked(id, revision, reason)
WHERE stored.id = marked.id AND stored.revision = marked.revision
"""
# A job starting a queued step: the step marked running (where, since when: ISO 8601 in UTC, as
# the runtime writes times) and a new revision; only while the step is runnable at the job's
# attempt and nobody else runs it (runtime.leases.runs_elsewhere: a mark under a live lease, or
# a live lease that is not a queue lease). It is also the job's read of the instance.
# The mark is the `running` column alone (with the revision): no index covers either, and the
# table keeps room on its pages (fillfactor, migration 0012), so PostgreSQL can write the new
# row version in place (a HOT update: no index entry, the GIN index on `state` untouched). It
# leaves `updated_at` and the lease alone, both indexed: the job's heartbeat renews the lease.
_UTC_ISO = (
    """to_char(statement_timestamp() AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"+00:00"')"""
)
MARK_RUNNING = f"""
UPDATE {TABLE} SET
    running = coalesce(running, '{{}}'::jsonb) || jsonb_build_object(
        %(step)s::text, jsonb_build_object('on', %(on)s::text, 'since', {_UTC_ISO})
    ),
    revision = revision + 1
WHERE id = %(id)s AND status = 'running' AND state->'active_steps' ? %(step)s
  AND NOT state->'waiting_steps' ? %(step)s
  AND (%(attempt)s::integer IS NULL
       OR coalesce((state->'attempts'->>%(step)s::text)::integer, 0) + 1 = %(attempt)s::integer)
  AND NOT coalesce(
      lease_owner IS NOT NULL AND lease_expires_at > statement_timestamp()
      AND (lease_owner NOT LIKE 'queued:%%'
           OR coalesce(running ? %(step)s, state->'running' ? %(step)s, false)),
      false
  )
RETURNING {COLUMNS}
"""
# The same, committed without waiting for the WAL to reach the disk: the mark is a display,
# and one lost in a crash is harmless (the job's write after it is then stale, and goes through
# the locked update). Only for a statement that is its own transaction: set_config(..., true)
# lasts until the transaction ends, and must never relax a caller's transaction.
MARK_RUNNING_RELAXED = MARK_RUNNING.replace(
    "WHERE id = %(id)s",
    "WHERE set_config('synchronous_commit', 'off', true) = 'off' AND id = %(id)s",
)
DELETE = f"DELETE FROM {TABLE} WHERE id = %s"
WRITTEN_COLUMNS = "revision, workflow_version, inserted_at, updated_at"
"""What INSERT and UPDATE return (and a statement around either selects from ``written``)."""
# Only an instance's first write inserts (revision 0: never stored). It inserts unless its id,
# or its business key, is taken, which is then found out without an error, so a caller's
# transaction is not aborted by a unique violation; the unique index on key_claim makes
# concurrent starts with one key wait for each other.
# clock_timestamp(), not now(): several writes in one transaction keep their order.
INSERT = f"""
INSERT INTO {TABLE} (
    id, workflow, status, workflow_version, state, revision, inserted_at, updated_at,
    lease_owner, lease_expires_at, due_at, business_key, key_claim, running
)
VALUES (
    %s, %s, %s, %s, %s::jsonb, 1, clock_timestamp(), clock_timestamp(), %s, %s, %s, %s, %s,
    %s::jsonb
)
ON CONFLICT DO NOTHING
RETURNING {WRITTEN_COLUMNS}
"""
# Every later write updates the row at the revision it read, and never inserts: a row deleted
# (or pruned) since stays deleted, and the write comes back empty. inserted_at and
# business_key are left alone; workflow_version changes only by an upgrade of the stored
# version (the instance's latest upgrade came from it).
UPDATE = f"""
UPDATE {TABLE} AS stored SET
    workflow = %s,
    status = %s,
    state = %s::jsonb,
    revision = stored.revision + 1,
    updated_at = clock_timestamp(),
    lease_owner = %s,
    lease_expires_at = %s,
    due_at = %s,
    key_claim = %s,
    running = %s::jsonb,
    quarantine_reason = NULL,
    workflow_version = CASE
        WHEN stored.workflow_version = %s THEN %s
        ELSE stored.workflow_version
    END
WHERE stored.id = %s AND stored.revision = %s
RETURNING {WRITTEN_COLUMNS}
"""
KEY_HOLDER = f"SELECT id FROM {TABLE} WHERE key_claim = %s"
# After a lost connection: is the row what a put of revision %s wrote? (What INSERT and
# UPDATE return.)
WRITTEN = f"""
SELECT revision, workflow_version, inserted_at, updated_at FROM {TABLE}
WHERE id = %s AND revision = %s AND state = %s::jsonb
  AND lease_owner IS NOT DISTINCT FROM %s AND status = %s
"""
REVISION = f"SELECT revision FROM {TABLE} WHERE id = %s"


# --- the status snapshot: hephaestus_status, the admin's dashboard ---------------------------

STATISTICS = "workflow_instances_wf_status"
"""The extended statistics on (workflow, status) the snapshot's estimates read."""
HOURS = 24
"""The hours the snapshot's chart covers."""

SNAPSHOT_BEGIN = """
SELECT statement_timestamp(), current_setting('statement_timeout'),
       current_setting('enable_seqscan'), current_setting('enable_sort'), current_setting('jit'),
       set_config('statement_timeout', %s, true), set_config('enable_seqscan', 'off', true),
       set_config('enable_sort', 'off', true), set_config('jit', 'off', true)
"""
# Sequential scans and sorts are discouraged: every question below reads an index in its order
# and stops early. Statistics can be stale (a burst of failures since the last ANALYZE, which
# still says there are none), and the planner would then read every row of a status through
# the status index and sort them; with sorts off it takes the index that gives the order.
# JIT is off: the cost of a discouraged plan node (10^10) would otherwise make PostgreSQL
# compile every statement, ~0.9 s each, for queries that take milliseconds.
SNAPSHOT_RESTORE = """
SELECT set_config('statement_timeout', %s, true), set_config('enable_seqscan', %s, true),
       set_config('enable_sort', %s, true), set_config('jit', %s, true)
"""

# Each status counted up to the limit through idx_workflow_instances_status.
STATUS_COUNTS = f"""
SELECT s.status,
       (SELECT count(*) FROM (SELECT 1 FROM {TABLE} i WHERE i.status = s.status LIMIT %s) c)
FROM unnest(%s::text[]) AS s(status)
"""

# Only statuses already known to hold at most COUNT_LIMIT rows: a bounded read.
PER_WORKFLOW = f"""
SELECT workflow, status, count(*) FROM {TABLE}
WHERE status = ANY(%s::text[]) GROUP BY workflow, status
"""

# PostgreSQL's statistics: the table's size as the planner estimates it (reltuples scaled to
# the pages the table has now), and the frequencies of the (workflow, status) pairs sampled
# by the extended statistics and of each status (pg_stats, for a status's total).
ESTIMATES = f"""
SELECT 'table', NULL, NULL,
       CASE WHEN c.relpages > 0 AND c.reltuples >= 0
            THEN c.reltuples / c.relpages
                 * (pg_relation_size(c.oid) / current_setting('block_size')::int)
            ELSE c.reltuples END
FROM pg_class c WHERE c.oid = to_regclass('{TABLE}')
UNION ALL
SELECT 'status', NULL, v.status, v.freq
FROM pg_stats s, unnest(s.most_common_vals::text::text[], s.most_common_freqs) AS v(status, freq)
WHERE s.schemaname = current_schema() AND s.tablename = '{TABLE}' AND s.attname = 'status'
UNION ALL
SELECT 'pair', e.most_common_vals[i][1], e.most_common_vals[i][2], e.most_common_freqs[i]
FROM pg_stats_ext e, generate_subscripts(e.most_common_vals, 1) AS i
WHERE e.schemaname = current_schema() AND e.tablename = '{TABLE}'
  AND e.statistics_name = '{STATISTICS}'
"""

# Each an index scan that stops at the limit, or reads the first entry of an index.
HEALTH = f"""
SELECT
  (SELECT count(*) FROM (SELECT 1 FROM {TABLE}
     WHERE due_at <= %(now)s AND quarantine_reason IS NULL
     ORDER BY due_at LIMIT %(limit)s) c),
  (SELECT due_at FROM {TABLE} WHERE due_at <= %(now)s AND quarantine_reason IS NULL
     ORDER BY due_at LIMIT 1),
  (SELECT count(*) FROM (SELECT 1 FROM {TABLE}
     WHERE status = 'running' AND lease_expires_at <= %(stalled)s
       AND quarantine_reason IS NULL ORDER BY lease_expires_at LIMIT %(limit)s) c),
  (SELECT lease_expires_at FROM {TABLE}
     WHERE status = 'running' AND lease_expires_at <= %(stalled)s
       AND quarantine_reason IS NULL ORDER BY lease_expires_at LIMIT 1),
  (SELECT count(*) FROM (SELECT 1 FROM {TABLE}
     WHERE quarantine_reason IS NOT NULL ORDER BY updated_at LIMIT %(limit)s) c),
  (SELECT count(*) FROM (SELECT 1 FROM {TABLE}
     WHERE status = 'failed' AND updated_at > %(hour_ago)s
     ORDER BY updated_at DESC LIMIT %(limit)s) c)
"""

QUARANTINED = f"""
SELECT id, workflow, left(quarantine_reason, %s), updated_at FROM {TABLE}
WHERE quarantine_reason IS NOT NULL ORDER BY updated_at DESC LIMIT %s
"""


def _series(name: str, column: str, where: str) -> str:
    """One series of the chart for one hour: the newest rows (at most the sample), the time
    they span, and the oldest row of the hour; index-ordered reads that stop early."""
    bounds = f"{where} {column} >= h.lo AND {column} < h.hi"
    return f"""
CROSS JOIN LATERAL (
    SELECT count(*) AS n, max(t) AS newest, min(t) AS nth,
           CASE WHEN count(*) >= %(sample)s
                THEN (SELECT {column} FROM {TABLE} WHERE {bounds}
                      ORDER BY {column} LIMIT 1) END AS oldest
    FROM (SELECT {column} AS t FROM {TABLE} WHERE {bounds}
          ORDER BY {column} DESC LIMIT %(sample)s) x
) AS {name}"""


HOURLY = f"""
WITH h AS (
    SELECT g, %(first)s::timestamptz + g * interval '1 hour' AS lo,
           %(first)s::timestamptz + (g + 1) * interval '1 hour' AS hi
    FROM generate_series(0, {HOURS - 1}) AS g
)
SELECT h.lo, s.n, s.newest, s.nth, s.oldest, c.n, c.newest, c.nth, c.oldest,
       f.n, f.newest, f.nth, f.oldest
FROM h
{_series("s", "inserted_at", "")}
{_series("c", "updated_at", "status = 'completed' AND")}
{_series("f", "updated_at", "status = 'failed' AND")}
ORDER BY h.g
"""

ERRORS = f"""
SELECT e.type, count(*), max(e.at),
       (array_agg(e.message ORDER BY e.at DESC))[1], (array_agg(e.step ORDER BY e.at DESC))[1],
       sum(count(*)) OVER ()
FROM (SELECT coalesce(state->'error'->>'type', '?') AS type,
             left(coalesce(state->'error'->>'message', ''), %(chars)s) AS message,
             coalesce(state->'error'->>'step', '') AS step, updated_at AS at
      FROM {TABLE} WHERE status = 'failed' AND updated_at > %(day_ago)s
      ORDER BY updated_at DESC LIMIT %(sample)s) e
GROUP BY e.type ORDER BY count(*) DESC, max(e.at) DESC LIMIT %(top)s
"""

WORKERS = """
SELECT worker, storage, host, pid, started_at, last_pass_at, passes, handled
FROM hephaestus_worker_passes WHERE role = %s {where} ORDER BY last_pass_at DESC LIMIT %s
"""


# --- pruning: hephaestus_prune ---------------------------------------------------------------

# One batch of one status, formatted with the status as a literal and, after a status's first
# batch, PRUNE_AFTER: it starts after the last (updated_at, id) the previous batch deleted.
PRUNE_BATCH = (
    "WITH gone AS (DELETE FROM workflow_instances WHERE id IN ("
    "SELECT id FROM workflow_instances"
    " WHERE status = {status} AND updated_at < %(cutoff)s{after}"
    " ORDER BY updated_at, id LIMIT %(limit)s FOR UPDATE SKIP LOCKED"
    ") RETURNING updated_at, id)"
    " SELECT count(*) OVER (), updated_at, id FROM gone ORDER BY updated_at DESC, id DESC LIMIT 1"
)
PRUNE_AFTER = " AND (updated_at, id) > (%(after_at)s, %(after_id)s)"


# --- worker passes: hephaestus_worker, and the job engines' workers --------------------------

FORGET_AFTER = "7 days"
"""Rows of workers not seen for this long are deleted (a PostgreSQL interval)."""

WORKER_PASSES = "hephaestus_worker_passes"

# One worker's passes on one storage added up, and the rows of workers long gone deleted.
RECORD_PASSES = f"""
WITH forgotten AS (
    DELETE FROM {WORKER_PASSES}
    WHERE last_pass_at < statement_timestamp() - interval '{FORGET_AFTER}'
)
INSERT INTO {WORKER_PASSES} AS w
    (worker, storage, role, host, pid, started_at, last_pass_at, passes, handled)
VALUES (%s, %s, %s, %s, %s, statement_timestamp(), statement_timestamp(), %s, %s)
ON CONFLICT (worker, storage, role) DO UPDATE SET
    last_pass_at = statement_timestamp(),
    passes = w.passes + EXCLUDED.passes,
    handled = w.handled + EXCLUDED.handled
"""


# --- the job engines' queues: is anyone taking QueuedRunner's jobs? --------------------------

QUEUE_SAMPLE = 1_000
"""Oldest waiting jobs read to find the longest wait."""

_PROCRASTINATE_DUE = """procrastinate_jobs
    WHERE queue_name = %(queue)s AND status = 'todo'
      AND (scheduled_at IS NULL OR scheduled_at <= statement_timestamp())"""
# No CTE: one referenced twice is materialized, reading every due job; each subquery here
# stops at its LIMIT.
PROCRASTINATE_QUEUE = f"""
SELECT statement_timestamp(),
  (SELECT count(*) FROM (SELECT 1 FROM {_PROCRASTINATE_DUE} LIMIT %(limit)s) c),
  (SELECT min(greatest(j.scheduled_at, (SELECT min(e.at) FROM procrastinate_events e
                                         WHERE e.job_id = j.id AND e.type = 'deferred')))
     FROM (SELECT id, scheduled_at FROM {_PROCRASTINATE_DUE} ORDER BY id LIMIT {QUEUE_SAMPLE}) j),
  (SELECT max(last_heartbeat) FROM procrastinate_workers)
"""

_TASKS_DUE = """{table}
    WHERE status = 'READY' AND backend_name = %(backend)s AND queue_name = %(queue)s
      AND (run_after = %(never)s OR run_after <= statement_timestamp())"""
TASKS_QUEUE = f"""
SELECT statement_timestamp(),
  (SELECT count(*) FROM (SELECT 1 FROM {_TASKS_DUE} LIMIT %(limit)s) c),
  (SELECT min(CASE WHEN run_after = %(never)s THEN enqueued_at
                   ELSE greatest(enqueued_at, run_after) END)
     FROM (SELECT enqueued_at, run_after FROM {_TASKS_DUE}
           ORDER BY enqueued_at LIMIT {QUEUE_SAMPLE}) j),
  NULL::timestamptz
"""


# --- the admin -------------------------------------------------------------------------------

# One round trip for the unfiltered list: the rows, counted up to the limit, and PostgreSQL's
# estimate (pg_class.reltuples; -1 before the table is first analysed).
COUNT_AND_ESTIMATE = """
SELECT (SELECT count(*) FROM (SELECT 1 FROM {table} LIMIT %s) AS page),
       coalesce((SELECT reltuples::bigint FROM pg_class WHERE oid = to_regclass(%s)), -1)
"""

# This transaction's statement_timeout set, and the one it replaced returned (to put it back).
SWAP_STATEMENT_TIMEOUT = (
    "SELECT current_setting('statement_timeout'), set_config('statement_timeout', %s, true)"
)


# --- procrastinate's tables: ProcrastinateDispatcher ------------------------------------------

DEFER_FUNCTION = "procrastinate_defer_jobs_v1"
"""procrastinate's SQL function that inserts jobs: what its own ``defer`` and ``batch_defer``
call (``procrastinate.sql.queries["defer_jobs"]``), since procrastinate 3.2."""
JOB_TYPE = "procrastinate_job_to_defer_v1"
"""The composite type of the function's argument, one element per job."""
# One job of the function's argument: queue, task, priority, no lock, no queueing lock, the
# task's keyword arguments, scheduled_at; each parameter cast, so server-side binding works too.
PROCRASTINATE_JOB_ROW = (
    "ROW(%s::varchar, %s::varchar, %s::integer, NULL::text, NULL::text, %s::jsonb, %s::timestamptz)"
)

PROCRASTINATE_PENDING_STEPS = """
SELECT args->'payload' FROM procrastinate_jobs
WHERE status = 'todo' AND task_name = %s AND args->'payload'->>'instance' = ANY(%s::text[])
"""
"""The payloads of the step jobs of some instances that wait for a worker. ``todo`` rows are
few (what waits), and procrastinate's partial index on them (``status = 'todo'``) finds them."""
