"""The benchmark suite: ``make bench`` (``python -m bench``), ``--quick`` for CI.

Every figure is a ratio against raw psycopg 3 running the same SQL on the same table in the same
process, interleaved over repeated rounds, and quoted as a median with its spread. The modules:

- :mod:`bench.environment`: the database (``$DATABASE_URL`` or the embedded server), Django
  configured standalone, the machine's description;
- :mod:`bench.workflows` and :mod:`bench.data`: the workflows and the ~2 KB instances measured,
  and the bulk loads of 100,000 / 1,000,000 rows;
- :mod:`bench.measure`: interleaved rounds, percentiles, spreads;
- one module per measured item: :mod:`bench.storage_ops`, :mod:`bench.containment`,
  :mod:`bench.end_to_end`, :mod:`bench.tail`, :mod:`bench.admin_pages`, :mod:`bench.memory`,
  :mod:`bench.housekeeping`; and :mod:`bench.queued` (``QueuedRunner`` on procrastinate's worker
  processes, against bare procrastinate tasks);
- :mod:`bench.report`: the JSON results and the markdown table.
"""
