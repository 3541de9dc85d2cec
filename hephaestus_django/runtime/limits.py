"""The bound on one instance's stored state, checked before anything is written.

An instance's state (its context, every step's result, its history) is one ``jsonb`` value
read and written whole on every transition, shown whole in the admin, and carried by every
job. A context of a few megabytes makes each step of its instance cost that much I/O, and a
50 MB one made a 100 MB admin page. So both storages refuse, with
:class:`~hephaestus_django.core.errors.StateTooLargeError` and before writing, a state whose
JSON text is longer than :data:`limits.max_state_bytes` (``HEPHAESTUS["MAX_STATE_BYTES"]``
inside Django; set in code with :func:`set_max_state_bytes` outside it).

The default, 1 MiB, is far above what a workflow's own data needs (ids, amounts, statuses
and small results are a few kilobytes) and well below where each write starts to cost a
noticeable share of a step; large data belongs in a model or file storage, with its id in
the context.
"""

from __future__ import annotations

from uuid import UUID

from hephaestus_django.core.errors import StateTooLargeError

DEFAULT_MAX_STATE_BYTES = 1024 * 1024
"""1 MiB: see the module's docstring for why."""
SETTING_NAME = 'HEPHAESTUS["MAX_STATE_BYTES"]'


class _Limits:
    """The process-wide limits (one attribute, replaced whole when settings change)."""

    max_state_bytes: int | None = DEFAULT_MAX_STATE_BYTES


limits = _Limits()


def set_max_state_bytes(value: int | None) -> None:
    """Set the bound (None: no bound); the Django app sets it from settings."""
    limits.max_state_bytes = value


def check_state_size(text: str, instance_id: UUID | None, *, path: str = "state") -> None:
    """Refuse ``text`` (an instance's encoded state, or the part of it at ``path``) when its
    UTF-8 length exceeds the bound.

    A character is one to four bytes, so most states are judged from ``len(text)`` alone and
    only those near the bound are encoded to be measured.
    """
    bound = limits.max_state_bytes
    if bound is None or len(text) * 4 <= bound:
        return
    size = len(text) if len(text) > bound else len(text.encode("utf-8"))
    if size > bound:
        raise StateTooLargeError(
            path,
            f"it is {size:,} bytes as JSON, more than {SETTING_NAME} allows ({bound:,} bytes); "
            f"keep large data in a model or file storage and put its id in the context, or "
            f"raise the setting",
            instance_id=instance_id,
        )
