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
# The instance's held concurrency slots are renewed with its lease (hephaestus_slots, below);
# never shortened (a running instance's slot of its workflow's limit lasts until it ends).
RENEW = f"""
WITH held AS (
    UPDATE hephaestus_slots
    SET expires_at = GREATEST(expires_at, statement_timestamp() + %(lease)s)
    WHERE instance_id = %(id)s AND state = 'holding' AND expires_at > statement_timestamp()
      AND EXISTS (SELECT 1 FROM {TABLE} WHERE id = %(id)s AND lease_owner = %(owner)s)
)
UPDATE {TABLE} SET lease_expires_at = statement_timestamp() + %(lease)s
WHERE id = %(id)s AND lease_owner = %(owner)s
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
# A deleted instance's concurrency slots and places in line go with it.
DELETE = f"""
WITH slots AS (DELETE FROM hephaestus_slots WHERE instance_id = %(id)s)
DELETE FROM {TABLE} WHERE id = %(id)s
"""
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
# The common later write: an instance without a business key (its stored key_claim is NULL
# and stays so) that was never upgraded (its workflow_version cannot move). UPDATE less the key
# claim and the upgrade check, so the server evaluates and binds only what this write needs.
UPDATE_PLAIN = f"""
UPDATE {TABLE} AS stored SET
    workflow = %s,
    status = %s,
    state = %s::jsonb,
    revision = stored.revision + 1,
    updated_at = clock_timestamp(),
    lease_owner = %s,
    lease_expires_at = %s,
    due_at = %s,
    running = %s::jsonb,
    quarantine_reason = NULL
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


# --- concurrency slots: postgres/slots.py (see runtime/slots.py for the rules) --------------

SLOTS = "hephaestus_slots"
SPENT = "00000000-0000-0000-0000-000000000000"  # runtime.slots.SPENT: a rate limit's spent slot

# Every operation on one limit and key runs after this, in its transaction: they are
# serialized, and each statement's snapshot (taken after the lock) sees the ones before it.
SLOT_LOCK = "SELECT pg_advisory_xact_lock(hashtext(%s), hashtext(%s))"
# The same, sent in one query string before the operation (postgres/slots.py): the statements
# of one query run in one transaction, each with a snapshot of its own.
SLOT_LOCK_NAMED = "SELECT pg_advisory_xact_lock(hashtext(%(name)s), hashtext(%(key)s))"

_SAME_SLOT = "instance_id = %(id)s AND step = %(step)s"
_OF_LIMIT = "name = %(name)s AND key = %(key)s"
_LIVE_HOLDER = "state = 'holding' AND expires_at > statement_timestamp()"
_RUNS = f"EXISTS (SELECT 1 FROM {TABLE} i WHERE i.id = w.instance_id AND i.status = 'running')"
_LIVES = (
    f"EXISTS (SELECT 1 FROM {TABLE} i WHERE i.id = w.instance_id"
    " AND i.status IN ('pending', 'running', 'waiting'))"
)

# Take (or keep) a slot, or wait in line. Admitted when this step holds a live slot already,
# or when the live holders and the waiters ahead (of a higher priority, or of the same and
# earlier in line; a new request is behind every one of its priority) leave room. A waiter
# keeps its place when asked again; waiters of instances that no longer run do not count.
ADMIT = f"""
WITH mine AS (
    SELECT state, enqueued_at, id, expires_at FROM {SLOTS} WHERE {_OF_LIMIT} AND {_SAME_SLOT}
), live AS (
    SELECT count(*) AS n FROM {SLOTS}
    WHERE {_OF_LIMIT} AND {_LIVE_HOLDER} AND NOT ({_SAME_SLOT})
), ahead AS (
    SELECT count(*) AS n FROM {SLOTS} w LEFT JOIN mine m ON m.state = 'waiting'
    WHERE w.name = %(name)s AND w.key = %(key)s AND w.state = 'waiting'
      AND NOT (w.instance_id = %(id)s AND w.step = %(step)s)
      AND (w.priority > %(priority)s OR (w.priority = %(priority)s
           AND (m.id IS NULL OR (w.enqueued_at, w.id) < (m.enqueued_at, m.id))))
      AND {_RUNS}
), decided AS (
    SELECT COALESCE(
        (SELECT m.state = 'holding' AND m.expires_at > statement_timestamp() FROM mine m), false
    ) OR (SELECT n FROM live) + (SELECT n FROM ahead) < %(limit)s AS admitted
)
INSERT INTO {SLOTS} AS s
    (name, key, instance_id, step, state, priority, capacity, enqueued_at, acquired_at,
     expires_at, per)
SELECT %(name)s, %(key)s, %(id)s, %(step)s,
    CASE WHEN d.admitted THEN 'holding' ELSE 'waiting' END, %(priority)s, %(limit)s,
    statement_timestamp(),
    CASE WHEN d.admitted THEN statement_timestamp() END,
    CASE WHEN d.admitted THEN statement_timestamp() + %(lease)s END,
    %(per)s::interval
FROM decided d
ON CONFLICT (name, key, instance_id, step) DO UPDATE SET
    state = EXCLUDED.state,
    capacity = EXCLUDED.capacity,
    per = EXCLUDED.per,
    enqueued_at = CASE WHEN s.state = 'waiting' AND EXCLUDED.state = 'waiting'
        THEN s.enqueued_at ELSE EXCLUDED.enqueued_at END,
    acquired_at = CASE WHEN s.state = 'holding' AND EXCLUDED.state = 'holding'
        THEN s.acquired_at ELSE EXCLUDED.acquired_at END,
    expires_at = EXCLUDED.expires_at
RETURNING state = 'holding'
"""

# The end of RELEASE and FREE: the waiters ``next`` picked hold their slots, those parked are
# woken, and each comes back with the seconds it waited in line.
_ADMIT_NEXT = f"""), admitted AS (
    UPDATE {SLOTS} s SET state = 'holding', acquired_at = statement_timestamp(),
        expires_at = statement_timestamp() + %(lease)s
    FROM next WHERE s.id = next.id
    RETURNING s.instance_id, s.step, s.enqueued_at
), woken AS (
    UPDATE {TABLE} i SET lease_expires_at = statement_timestamp()
    FROM admitted a
    WHERE i.id = a.instance_id AND i.lease_owner LIKE 'parked:%%'
      AND i.lease_expires_at > statement_timestamp()
)
SELECT instance_id, step, EXTRACT(EPOCH FROM statement_timestamp() - enqueued_at)::float8
FROM admitted
"""

# Give up a slot (none when %(id)s is NULL: the sweep's pass) and admit the next waiters in
# line while there is room, passing over those whose instance no longer runs; their parked
# instances are woken (the lease made due, so a worker's claim takes them). One statement, so
# the freed slot and the admission commit together. A rate limit's slot (%(per)s, its window,
# not NULL) is not freed but spent: kept under the nil instance for %(per)s more, counted. Each
# admitted waiter comes with the seconds it waited in line (the throttle metrics).
RELEASE = f"""
WITH released AS (
    DELETE FROM {SLOTS} WHERE {_OF_LIMIT} AND {_SAME_SLOT} AND %(per)s::interval IS NULL
), spent AS (
    UPDATE {SLOTS} SET instance_id = '{SPENT}', step = left(step, 200) || '@' || id,
        expires_at = statement_timestamp() + %(per)s::interval
    WHERE {_OF_LIMIT} AND {_SAME_SLOT} AND state = 'holding' AND %(per)s::interval IS NOT NULL
), live AS (
    SELECT count(*) AS n FROM {SLOTS}
    WHERE {_OF_LIMIT} AND CASE WHEN COALESCE({_SAME_SLOT}, false)
        THEN state = 'holding' AND %(per)s::interval IS NOT NULL ELSE {_LIVE_HOLDER} END
), next AS (
    SELECT w.id FROM {SLOTS} w
    WHERE w.name = %(name)s AND w.key = %(key)s AND w.state = 'waiting' AND {_RUNS}
    ORDER BY w.priority DESC, w.enqueued_at, w.id
    LIMIT GREATEST(%(limit)s - (SELECT n FROM live), 0)
{_ADMIT_NEXT}"""

# The sweep: the limits and keys someone waits for (with the largest number in their rows).
WAITING_LIMITS = f"""
SELECT name, key, max(capacity) FROM {SLOTS} WHERE state = 'waiting' GROUP BY name, key
"""

# The sweep: holders whose lease lapsed, and rows of instances that no longer run (spent
# slots of rate limits stay until they lapse; a running instance's slot of its workflow's
# limit, until it has ended, even while it waits for an event).
# First, the holding slots of rate limits whose instance no longer runs (ended without its
# release, e.g. a queued step's job outlived by a cancel) are spent, counted for their window
# from now (later than their use: never an execution too many in a window).
SPEND_ENDED_SLOTS = f"""
UPDATE {SLOTS} w SET instance_id = '{SPENT}', step = left(w.step, 200) || '@' || w.id,
    expires_at = statement_timestamp() + w.per
WHERE w.state = 'holding' AND w.per IS NOT NULL AND w.instance_id <> '{SPENT}'
  AND NOT {_RUNS}
"""
PURGE_SLOTS = f"""
DELETE FROM {SLOTS} w
WHERE (w.state = 'holding' AND w.expires_at <= statement_timestamp())
   OR (w.instance_id <> '{SPENT}' AND NOT CASE WHEN w.name LIKE 'running:%%' THEN {_LIVES}
       ELSE {_RUNS} END)
"""

# hephaestus_status and the dashboard: each limit and key in use.
LIMIT_USE = f"""
SELECT name, key,
    count(*) FILTER (WHERE {_LIVE_HOLDER}),
    count(*) FILTER (WHERE state = 'waiting'),
    max(capacity)
FROM {SLOTS} GROUP BY name, key ORDER BY name, key LIMIT %s
"""

# The admin: where an instance's waiting steps stand in their lines (1: next).
PLACES = f"""
SELECT s.step, s.name, s.key, 1 + (
    SELECT count(*) FROM {SLOTS} w
    WHERE w.name = s.name AND w.key = s.key AND w.state = 'waiting'
      AND (-w.priority, w.enqueued_at, w.id) < (-s.priority, s.enqueued_at, s.id)
)
FROM {SLOTS} s WHERE s.instance_id = %s AND s.state = 'waiting' ORDER BY s.step
"""

# The dashboard's card of limits (postgres/slots.py ``lines``), bounded however long the lines:
# the first %(shown)s limits and keys, found by skipping from one to the next along the index
# on (name, key, ...) (a loose index scan, never a pass over every row); for each, its holders
# and its waiters counted up to %(cap)s rows, its number, and its oldest waiter read at the
# front of the index on (name, key, state, enqueued_at). The statement timeout is the
# caller's (SET_LOCAL_TIMEOUT).
SET_LOCAL_TIMEOUT = "SELECT set_config('statement_timeout', %s, true)"
LIMIT_LINES = f"""
WITH RECURSIVE pairs AS (
    (SELECT name, key FROM {SLOTS} ORDER BY name, key LIMIT 1)
    UNION ALL
    SELECT later.name, later.key FROM pairs p CROSS JOIN LATERAL (
        SELECT s.name, s.key FROM {SLOTS} s
        WHERE (s.name, s.key) > (p.name, p.key) ORDER BY s.name, s.key LIMIT 1
    ) later
), shown AS (SELECT name, key FROM pairs LIMIT %(shown)s)
SELECT p.name, p.key,
    (SELECT count(*) FROM (
        SELECT 1 FROM {SLOTS} s WHERE s.name = p.name AND s.key = p.key
          AND s.state = 'holding' AND s.expires_at > statement_timestamp() LIMIT %(cap)s) h),
    (SELECT count(*) FROM (
        SELECT 1 FROM {SLOTS} s WHERE s.name = p.name AND s.key = p.key
          AND s.state = 'waiting' LIMIT %(cap)s) w),
    (SELECT s.capacity FROM {SLOTS} s WHERE s.name = p.name AND s.key = p.key
     ORDER BY s.state LIMIT 1),
    (SELECT s.enqueued_at FROM {SLOTS} s WHERE s.name = p.name AND s.key = p.key
       AND s.state = 'waiting' ORDER BY s.enqueued_at LIMIT 1),
    statement_timestamp()
FROM shown p ORDER BY p.name, p.key
"""

# A cancelled or deleted instance frees its slots (postgres/slots.py ``free``): the limits it
# holds or waits in, in the order their locks are taken everywhere.
SLOTS_OF_INSTANCE = f"""
SELECT name, key, max(capacity) FROM {SLOTS} WHERE instance_id = %s
GROUP BY name, key ORDER BY name, key
"""

# Then, per limit, after its lock: every row of the instance in it goes, and the next waiters
# are admitted in the room it leaves (as RELEASE does for one step's slot), in the caller's
# transaction: the cancel or delete, the freed slots and the admission commit together. A rate
# limit's holding slot (its window, ``per``, kept on the row) is not freed but spent, as RELEASE
# spends it: its execution started, so it counts in its window, under the nil instance.
_SPENDS = "state = 'holding' AND per IS NOT NULL"
FREE = f"""
WITH freed AS (
    DELETE FROM {SLOTS} WHERE {_OF_LIMIT} AND instance_id = %(id)s AND NOT ({_SPENDS})
), spent AS (
    UPDATE {SLOTS} SET instance_id = '{SPENT}', step = left(step, 200) || '@' || id,
        expires_at = statement_timestamp() + per
    WHERE {_OF_LIMIT} AND instance_id = %(id)s AND {_SPENDS}
), live AS (
    SELECT count(*) AS n FROM {SLOTS}
    WHERE {_OF_LIMIT} AND CASE WHEN instance_id = %(id)s THEN {_SPENDS} ELSE {_LIVE_HOLDER} END
), next AS (
    SELECT w.id FROM {SLOTS} w
    WHERE w.name = %(name)s AND w.key = %(key)s AND w.state = 'waiting'
      AND w.instance_id <> %(id)s AND {_RUNS}
    ORDER BY w.priority DESC, w.enqueued_at, w.id
    LIMIT GREATEST(%(limit)s - (SELECT n FROM live), 0)
{_ADMIT_NEXT}"""


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


# --- the map items table: DjangoStorage's MapItems --------------------------------------------

MAP_ITEMS_TABLE = "workflow_map_items"
# One item's record, written whole: one row of one item's size, whatever the length of the list.
# The foreign key (ON DELETE CASCADE) refuses an item of an instance that is gone, and removes
# an instance's items with it (its delete, a prune).
MAP_ITEM_RECORD = f"""
INSERT INTO {MAP_ITEMS_TABLE}
    (instance_id, step, item_index, done, attempts, failed, running, result)
VALUES (%s, %s, %s, %s, %s, %s, false, %s::jsonb)
ON CONFLICT (instance_id, step, item_index) DO UPDATE
SET done = EXCLUDED.done, attempts = EXCLUDED.attempts, failed = EXCLUDED.failed,
    running = false, result = EXCLUDED.result
"""
"""Record one item of a map step (``record_map_item``); an upsert, so writing it again (after
a lost connection, or a later attempt) replaces it."""
MAP_ITEMS_FORGET = f"""
DELETE FROM {MAP_ITEMS_TABLE} WHERE instance_id = %s AND split_part(step, '#', 1) = ANY(%s)
"""
"""Forget the items of map steps of one instance, of every generation (``forget_map_items``),
in a rewind's transaction; the instance's rows found by the unique index's prefix."""
MAP_ITEM_PROGRESS = f"""
SELECT item_index, done, attempts, failed, running FROM {MAP_ITEMS_TABLE}
WHERE instance_id = %s AND step = %s
"""
"""Where each recorded item of a map step stands (``map_progress``), by the unique index."""
MAP_ITEM_RESULTS = f"""
SELECT result::text FROM {MAP_ITEMS_TABLE}
WHERE instance_id = %s AND step = %s AND done ORDER BY item_index
"""
"""The results of a map step's done items in item order (``map_results``): read once, at the
join, as text for the codec to decode."""
MAP_ITEM_ONE = f"""
SELECT done, attempts, failed, running FROM {MAP_ITEMS_TABLE}
WHERE instance_id = %s AND step = %s AND item_index = %s
"""
"""Where one item stands (``map_item``): what its item job reads first, by the unique index."""
MAP_ITEM_MARK = f"""
INSERT INTO {MAP_ITEMS_TABLE} AS item
    (instance_id, step, item_index, done, attempts, failed, running)
VALUES (%s, %s, %s, false, 0, false, true)
ON CONFLICT (instance_id, step, item_index) DO UPDATE SET running = true
WHERE NOT item.running AND NOT item.done
RETURNING item.attempts, item.failed
"""
"""Mark one item running (``mark_map_item``): its item job is about to run it. No row comes
back when it is done or runs already (a second job of it): that job does nothing."""
MAP_ITEM_COUNTS = f"""
SELECT count(*) FILTER (WHERE done), count(*) FILTER (WHERE failed),
       count(*) FILTER (WHERE running), min(item_index) FILTER (WHERE failed)
FROM {MAP_ITEMS_TABLE} WHERE instance_id = %s AND step = %s
"""
"""How many items of a map step are done, failed for good and running, and the first failed
(``map_counts``): one aggregate over the step's rows, no row sent back, what a map's join and
the admin's progress read."""
MAP_ITEM_TROUBLE = f"""
SELECT count(*) FILTER (WHERE failed), count(*) FILTER (WHERE running),
       min(item_index) FILTER (WHERE failed)
FROM {MAP_ITEMS_TABLE} WHERE instance_id = %s AND step = %s AND (failed OR running)
"""
"""How many items of a map step failed for good and run now, and the first failed
(``map_trouble``): a probe of the partial index ``workflow_map_items_live``, a few rows
whatever the length of the list; what each item job reads when it starts and ends."""
MAP_ITEM_FAILURE = f"""
SELECT attempts, result::text FROM {MAP_ITEMS_TABLE}
WHERE instance_id = %s AND step = %s AND item_index = %s AND failed
"""
"""The attempts and error of an item that failed for good (``map_failure``)."""
MAP_ITEM_RESTART = f"""
UPDATE {MAP_ITEMS_TABLE}
SET running = false, failed = false, attempts = CASE WHEN failed THEN 0 ELSE attempts END,
    result = CASE WHEN failed THEN NULL ELSE result END
WHERE instance_id = %s AND step = %s AND NOT done AND (running OR failed)
"""
"""Before a map step's items are enqueued (again: after its worker died, or a retry): no item
runs any more, and those that failed for good get their attempts anew (``restart_map_items``)."""

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


# --- schedules' shared state: hephaestus_schedules --------------------------------------------

SCHEDULES_TABLE = "hephaestus_schedules"
SCHEDULE_COLUMNS = "name, paused, since, last_tick, next_due_at, updated_at"
# Every configured schedule's row, made where missing (ticks counting from now), in one
# statement: the CTE's insert is not visible to the outer SELECT of the same statement, so each
# name comes back once, from the insert or from the table. ON CONFLICT DO NOTHING lets
# concurrent workers make a missing row once.
SCHEDULE_STATES = f"""
WITH made AS (
    INSERT INTO {SCHEDULES_TABLE} (name, paused, since, updated_at)
    SELECT name, false, statement_timestamp(), statement_timestamp()
    FROM unnest(%(names)s::text[]) AS name
    ON CONFLICT (name) DO NOTHING
    RETURNING {SCHEDULE_COLUMNS}
)
SELECT {SCHEDULE_COLUMNS} FROM made
UNION ALL
SELECT {SCHEDULE_COLUMNS} FROM {SCHEDULES_TABLE} WHERE name = ANY(%(names)s::text[])
"""
# The last tick only moves forward: of workers recording ticks out of order, the latest wins.
ADVANCE_SCHEDULE = f"""
UPDATE {SCHEDULES_TABLE}
SET last_tick = %(tick)s, next_due_at = %(next_due)s, updated_at = statement_timestamp()
WHERE name = %(name)s AND (last_tick IS NULL OR last_tick < %(tick)s)
RETURNING name
"""
# The rows of schedules configured no more (the names kept are every configured one's).
FORGET_SCHEDULES = f"""
DELETE FROM {SCHEDULES_TABLE} WHERE name <> ALL(%(keep)s::text[]) RETURNING name
"""
# Pause or resume, making the row if the schedule has none yet. Resuming counts ticks from now:
# those that fell while it was paused are not run (a backfill runs them on purpose).
PAUSE_SCHEDULE = f"""
INSERT INTO {SCHEDULES_TABLE} AS stored (name, paused, since, next_due_at, updated_at)
VALUES (%(name)s, %(paused)s, statement_timestamp(), %(next_due)s, statement_timestamp())
ON CONFLICT (name) DO UPDATE SET
    paused = excluded.paused,
    since = CASE WHEN excluded.paused THEN stored.since ELSE statement_timestamp() END,
    next_due_at = excluded.next_due_at,
    updated_at = statement_timestamp()
WHERE stored.paused IS DISTINCT FROM excluded.paused
RETURNING name
"""

# --- debounced starts (hephaestus_django.postgres.debounce) -----------------------------------

PENDING_STARTS_TABLE = "hephaestus_pending_starts"
PENDING_START_COLUMNS = "workflow, key, instance_id, version, context::text, metadata::text"
# One statement per start, atomic under any concurrency: the first start of a key makes the
# row (with its id, due a window ahead); each later one, arriving on the unique (workflow, key),
# takes the row's lock, keeps its id and first start, and replaces context, metadata and
# version. The due time is a window from now, never past the deadline (the first start plus
# max_wait; LEAST ignores NULLs, so with no max_wait there is none). A start arriving while a
# worker's transaction deletes the row waits for it, then inserts a new row: a new window.
PUSH_START = f"""
INSERT INTO {PENDING_STARTS_TABLE} AS pending
    (workflow, key, instance_id, version, context, metadata, first_at, due_at, deadline,
     pushes, updated_at)
VALUES (
    %(workflow)s, %(key)s, %(instance_id)s, %(version)s, %(context)s::jsonb, %(metadata)s::jsonb,
    statement_timestamp(),
    LEAST(statement_timestamp() + %(window)s::interval,
          statement_timestamp() + %(max_wait)s::interval),
    statement_timestamp() + %(max_wait)s::interval,
    1, statement_timestamp()
)
ON CONFLICT (workflow, key) DO UPDATE SET
    version = excluded.version,
    context = excluded.context,
    metadata = excluded.metadata,
    deadline = LEAST(pending.deadline, pending.first_at + %(max_wait)s::interval),
    due_at = LEAST(
        statement_timestamp() + %(window)s::interval,
        pending.deadline,
        pending.first_at + %(max_wait)s::interval
    ),
    pushes = pending.pushes + 1,
    updated_at = statement_timestamp()
RETURNING instance_id, due_at
"""
DUE_STARTS = f"""
SELECT {PENDING_START_COLUMNS} FROM {PENDING_STARTS_TABLE}
WHERE due_at <= statement_timestamp() ORDER BY due_at LIMIT %(limit)s
"""
# Taken by one worker only: the delete locks the row, and a second worker's delete, waiting on
# it, finds it gone. Only while still due and still that id (not pushed back, not a new window).
TAKE_START = f"""
DELETE FROM {PENDING_STARTS_TABLE}
WHERE workflow = %(workflow)s AND key = %(key)s AND instance_id = %(instance_id)s
    AND due_at <= statement_timestamp()
RETURNING {PENDING_START_COLUMNS}
"""

# --- bulk operations: hephaestus_bulk_operations, hephaestus_bulk_outcomes ---------------------

BULK_TABLE = "hephaestus_bulk_operations"
BULK_OUTCOMES_TABLE = "hephaestus_bulk_outcomes"
# In the order of runtime.contract.BulkState's fields.
BULK_COLUMNS = (
    "operation, workflow, filters, options, batch_size, id, status, after_id, done, refused, "
    "created_at, updated_at, finished_at, lease_owner, lease_expires_at"
)
CREATE_BULK = f"""
INSERT INTO {BULK_TABLE} (id, operation, workflow, filters, options, batch_size, status,
    done, refused, created_at, updated_at)
VALUES (%(id)s, %(operation)s, %(workflow)s, %(filters)s::jsonb, %(options)s::jsonb,
    %(batch_size)s, 'pending', 0, 0, statement_timestamp(), statement_timestamp())
RETURNING {BULK_COLUMNS}
"""
BULK_STATE = f"SELECT {BULK_COLUMNS} FROM {BULK_TABLE} WHERE id = %(id)s"
# Lease an unfinished operation to a runner: the one named, or the oldest, that is free, held
# by that runner already, or whose holder's lease lapsed. SKIP LOCKED: two workers polling at
# once take different ones (or one takes it and the other nothing). The partial index on the
# unfinished rows keeps the poll cheap however many operations are done.
CLAIM_BULK = f"""
UPDATE {BULK_TABLE} SET
    lease_owner = %(owner)s,
    lease_expires_at = statement_timestamp() + %(lease)s,
    status = 'running',
    updated_at = statement_timestamp()
WHERE id = (
    SELECT id FROM {BULK_TABLE}
    WHERE status <> 'done'
      AND (%(id)s::uuid IS NULL OR id = %(id)s::uuid)
      AND (lease_owner IS NULL OR lease_owner = %(owner)s
           OR lease_expires_at < statement_timestamp())
    ORDER BY created_at, id
    LIMIT 1
    FOR UPDATE SKIP LOCKED
)
RETURNING {BULK_COLUMNS}
"""
RECORD_BULK_OUTCOME = f"""
INSERT INTO {BULK_OUTCOMES_TABLE} (bulk_id, instance_id, done, reason, recorded_at)
VALUES (%(bulk)s, %(instance)s, %(done)s, %(reason)s, statement_timestamp())
ON CONFLICT (bulk_id, instance_id) DO NOTHING
"""
# The end of a batch: the cursor moves to the batch's last id and the outcomes recorded past
# the old cursor up to it are counted (those of a batch a killed runner left half done too),
# in one statement, by the runner holding the lease only, which lets it go: the next batch is
# any runner's (a worker pass, a queued job). No id left: the operation is done.
FINISH_BULK_BATCH = f"""
UPDATE {BULK_TABLE} AS b SET
    after_id = coalesce(%(last)s::uuid, b.after_id),
    done = b.done + c.done,
    refused = b.refused + c.refused,
    status = CASE WHEN %(last)s::uuid IS NULL THEN 'done' ELSE 'running' END,
    finished_at = CASE WHEN %(last)s::uuid IS NULL THEN statement_timestamp() END,
    lease_owner = NULL,
    lease_expires_at = NULL,
    updated_at = statement_timestamp()
FROM (
    SELECT count(*) FILTER (WHERE o.done) AS done, count(*) FILTER (WHERE NOT o.done) AS refused
    FROM {BULK_OUTCOMES_TABLE} o JOIN {BULK_TABLE} before ON before.id = o.bulk_id
    WHERE o.bulk_id = %(id)s
      AND (before.after_id IS NULL OR o.instance_id > before.after_id)
      AND (%(last)s::uuid IS NULL OR o.instance_id <= %(last)s::uuid)
) AS c
WHERE b.id = %(id)s AND b.lease_owner = %(owner)s AND b.status <> 'done'
RETURNING {", ".join("b." + name.strip() for name in BULK_COLUMNS.split(","))}
"""
BULK_REFUSALS = f"""
SELECT instance_id, reason FROM {BULK_OUTCOMES_TABLE}
WHERE bulk_id = %(id)s AND NOT done ORDER BY instance_id LIMIT %(limit)s
"""
# The next batch: appended to a SELECT on the instances (aliased i) with the filters' WHERE.
BULK_NOT_DONE = f"""NOT EXISTS (
    SELECT 1 FROM {BULK_OUTCOMES_TABLE} o WHERE o.bulk_id = %s AND o.instance_id = i.id)"""

# --- workflows held: hephaestus_workflow_pauses ---------------------------------------------

WORKFLOW_PAUSES_TABLE = "hephaestus_workflow_pauses"
# Hold a workflow (version 0: every version); a hold that exists is kept as it is.
PAUSE_WORKFLOW = f"""
INSERT INTO {WORKFLOW_PAUSES_TABLE} (workflow, version, reason, since)
VALUES (%(workflow)s, %(version)s, coalesce(%(reason)s, ''), statement_timestamp())
ON CONFLICT (workflow, version) DO NOTHING
RETURNING workflow
"""
UNPAUSE_WORKFLOW = f"""
DELETE FROM {WORKFLOW_PAUSES_TABLE} WHERE workflow = %(workflow)s AND version = %(version)s
RETURNING workflow
"""
# Every hold: a handful of rows, read at most once a second per process (see
# runtime/workflow_pauses.py).
WORKFLOW_PAUSES = f"""
SELECT workflow, version, nullif(reason, ''), since FROM {WORKFLOW_PAUSES_TABLE}
ORDER BY workflow, version
"""
