"""``hephaestus_django.storage.DjangoStorage``: the path settings name the storage backend by.

The backend lives in :mod:`hephaestus_django.postgres.storage`, beside every other statement
the app writes by hand; this module keeps the path users wrote in ``HEPHAESTUS["STORAGES"]``
(and in their imports) working, and holds nothing else.
"""

from hephaestus_django.postgres.storage import DjangoStorage

__all__ = ["DjangoStorage"]
