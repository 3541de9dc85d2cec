"""The Django admin for workflow instances, one module per part.

Django's autodiscovery imports ``hephaestus_django.admin``; importing this package registers
:class:`~hephaestus_django.admin.model_admin.WorkflowInstanceAdmin`.

- :mod:`~hephaestus_django.admin.model_admin`: the ``ModelAdmin``: columns, search, the instance
  page's view, and which permissions exist.
- :mod:`~hephaestus_django.admin.listing`: what keeps the changelist fast on millions of rows.
- :mod:`~hephaestus_django.admin.search`: search terms turned into ``state @> ...`` filters.
- :mod:`~hephaestus_django.admin.detail`: what the instance page shows.
- :mod:`~hephaestus_django.admin.operations`: resume, retry and delete.
- :mod:`~hephaestus_django.admin.forms`: the confirmation pages' forms.
- :mod:`~hephaestus_django.admin.rows`: rows decoded as storage decodes them, and their storage.
- :mod:`~hephaestus_django.admin.schedules`: the schedules, with pause, resume and trigger.
- :mod:`~hephaestus_django.admin.workflow_pauses`: the workflows held by ``pause_all``.
"""

from hephaestus_django.admin.model_admin import WorkflowInstanceAdmin
from hephaestus_django.admin.schedules import ScheduleAdmin
from hephaestus_django.admin.workflow_pauses import WorkflowPauseAdmin

__all__ = ["ScheduleAdmin", "WorkflowInstanceAdmin", "WorkflowPauseAdmin"]
