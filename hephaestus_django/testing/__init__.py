"""Helpers for testing projects that use hephaestus-django.

- :class:`InMemoryStorage`: the storage contract without a database.
- :mod:`hephaestus_django.testing.factories`: factory-boy factories (needs Django).
- :mod:`hephaestus_django.testing.embedded`: an embedded PostgreSQL for test runs.
"""

from hephaestus_django.runtime.memory import InMemoryStorage

__all__ = ["InMemoryStorage"]
