"""Template filters of the admin's pages: ``{% load hephaestus_admin %}``."""

from __future__ import annotations

from typing import Any

from django import template
from django.utils.safestring import SafeString

from hephaestus_django.admin import times
from hephaestus_django.core.naming import short_name

register = template.Library()


@register.filter
def moment(value: Any, zone: str = "") -> SafeString | str:
    """``{{ row.updated_at|moment }}``: the time to the second, the zone's name in its
    tooltip; ``|moment:"zone"`` writes the zone's name too."""
    return times.moment(value, zone=zone == "zone")


@register.filter
def short_step(value: Any) -> str:
    """A dotted path's last part (``shop.workflows.ChargePayment`` -> ``ChargePayment``)."""
    return short_name(value) if isinstance(value, str) and value else "—"
