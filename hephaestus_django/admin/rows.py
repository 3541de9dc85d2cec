"""Rows as the admin acts on them: decoded as storage decodes them, and the storage keeping them.

Operations must go through the storage configured for the row's database (with several
``HEPHAESTUS["STORAGES"]`` on several databases, the one whose ``using`` is that database), and
must never act on a row they could not decode.
"""

from __future__ import annotations

from django.core.exceptions import ImproperlyConfigured

from hephaestus_django import conf
from hephaestus_django.core.errors import HephaestusError
from hephaestus_django.core.instance import Instance
from hephaestus_django.models import WorkflowInstance
from hephaestus_django.postgres.storage import parse_state
from hephaestus_django.runtime.contract import Storage
from hephaestus_django.runtime.document import from_row


class NoStorageForDatabase(LookupError):
    """No configured storage keeps its instances in the row's database."""


def storage_for(database: str) -> Storage:
    """The storage in ``settings.HEPHAESTUS["STORAGES"]`` whose ``using`` is ``database``."""
    for alias in conf.storages:
        try:
            storage = conf.storages[alias]
        except ImproperlyConfigured:  # reported by the system checks; not this storage anyway
            continue
        if getattr(storage, "using", None) == database:
            return storage
    raise NoStorageForDatabase(
        f"no storage in settings.HEPHAESTUS['STORAGES'] uses the database {database!r}, so the "
        "admin cannot act on this instance through one"
    )


def decoded(row: WorkflowInstance) -> tuple[Instance | None, str]:
    """The row as an instance, or None and why it cannot be decoded."""
    try:
        return from_row(row.stored_row(parse_state(row.id, row.state_json))), ""
    except HephaestusError as error:
        return None, str(error)
