"""Times as the admin shows them: to the second, in the current time zone.

Steps of one wave, a retry and its failure, a resume and the timer it raced often fall within
the same minute, so a time to the minute cannot tell an operator what came first. Times are
converted the way Django's templates convert them (``timezone.template_localtime``: to the
current time zone when ``USE_TZ`` is on, shown as stored when it is off), and written in
one fixed, sortable form, ``2026-11-24 05:43:12``, whatever the locale's ``DATETIME_FORMAT``
(which in English has no seconds). Each is a ``<time>`` element whose tooltip has the
microseconds and the zone's name.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from django.utils import timezone
from django.utils.html import format_html
from django.utils.safestring import SafeString

FORMAT = "%Y-%m-%d %H:%M:%S"


def shown(value: datetime) -> datetime:
    """``value`` in the time zone a template would show it in."""
    return timezone.template_localtime(value)


def as_text(value: datetime, *, zone: bool = True) -> str:
    """``2026-11-24 05:43:12 UTC`` (the zone only when the time has one and ``zone``)."""
    local = shown(value)
    name = local.tzname() if zone and local.tzinfo is not None else None
    return f"{local:{FORMAT}} {name}" if name else f"{local:{FORMAT}}"


def moment(value: Any, *, zone: bool = False) -> SafeString | str:
    """A ``<time>`` element for ``value``, or — when there is no time."""
    if not isinstance(value, datetime):
        return "—"
    local = shown(value)
    name = local.tzname() if local.tzinfo is not None else None
    return format_html(
        '<time datetime="{}" title="{}">{}</time>',
        value.isoformat(),
        f"{local:%Y-%m-%d %H:%M:%S.%f}" + (f" {name}" if name else ""),
        as_text(value, zone=zone),
    )
