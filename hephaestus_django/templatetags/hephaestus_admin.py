"""Template filters of the admin's pages: ``{% load hephaestus_admin %}``."""

from __future__ import annotations

from typing import Any

from django import template
from django.utils.html import format_html
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


JSON_BLOCK_CHARACTERS = 20_000
"""The most characters of one JSON block an instance page shows; the rest is behind a link to
the whole state, so no page grows with the data (a 50 MB context made a 100 MB page)."""


@register.filter
def json_block(value: Any, whole_url: str = "") -> SafeString:
    """``{{ page.initial|json_block:state_url }}``: the text in a ``<pre>``, cut at
    :data:`JSON_BLOCK_CHARACTERS` with a line saying how much is left out and linking to
    ``whole_url`` (the whole stored state as JSON)."""
    text = "" if value is None else str(value)
    if len(text) <= JSON_BLOCK_CHARACTERS:
        return format_html('<pre class="hx-json">{}</pre>', text)
    shown = text[:JSON_BLOCK_CHARACTERS]
    note = format_html(
        '<p class="hx-truncated">Showing the first {} of {} characters.{}</p>',
        f"{JSON_BLOCK_CHARACTERS:,}",
        f"{len(text):,}",
        format_html(' <a href="{}">The whole stored state as JSON</a>', whole_url)
        if whole_url
        else "",
    )
    return format_html('<pre class="hx-json">{}…</pre>{}', shown, note)
