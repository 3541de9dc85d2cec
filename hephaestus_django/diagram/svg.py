"""Draw a diagram as a self-contained SVG: no script, no external font, no CDN.

Colours are SVG presentation attributes, not ``style`` attributes, so the picture obeys a strict
Content-Security-Policy and still looks right when saved on its own; every element carries a
class (``hx-state-waiting``, ``hx-edge-taken`` ...) so a stylesheet can restyle it, which the
admin does for dark mode. Every piece of text is escaped: step names can contain ``<locals>`` and
tooltips show context values.
"""

from __future__ import annotations

from collections.abc import Iterator
from html import escape

from hephaestus_django.diagram.layout import (
    BOX_HEIGHT,
    MARGIN,
    Box,
    Junction,
    Layout,
    Point,
    Wire,
    badged,
    lay_out,
)
from hephaestus_django.diagram.layout import subtitle as _subtitle
from hephaestus_django.diagram.layout import text_width as _text_width
from hephaestus_django.diagram.model import Diagram, EdgeKind, Progress, StepState

FONT = "system-ui, -apple-system, 'Segoe UI', Roboto, 'Helvetica Neue', Arial, sans-serif"
LEGEND_ROW = 22.0
MIN_WIDTH = 380.0

# (fill, stroke, text) per state; None is the plain definition, with no instance.
PALETTE: dict[StepState | None, tuple[str, str, str]] = {
    StepState.COMPLETED: ("#e6f4ea", "#2e7d32", "#1b5e20"),
    StepState.ACTIVE: ("#e3f2fd", "#1565c0", "#0d47a1"),
    StepState.QUEUED: ("#e3f2fd", "#1565c0", "#0d47a1"),
    StepState.WAITING: ("#fff4dc", "#e08e00", "#7a4a00"),
    StepState.FAILED: ("#fdecea", "#c62828", "#8e1c1c"),
    StepState.NOT_REACHED: ("#f6f6f6", "#b8b8b8", "#6f6f6f"),
    StepState.COMPENSATING: ("#f3e5f5", "#7b1fa2", "#4a148c"),
    StepState.COMPENSATED: ("#f3e5f5", "#7b1fa2", "#4a148c"),
    StepState.CANCELLED: ("#eceff1", "#607d8b", "#37474f"),
    None: ("#f2f7fa", "#417690", "#1f3f4f"),
}
WIRE = {"taken": "#417690", "idle": "#b8b8b8", "plain": "#5f6b73"}
OCCASIONAL = frozenset(
    {StepState.QUEUED, StepState.COMPENSATING, StepState.COMPENSATED, StepState.CANCELLED}
)
"""States the legend lists only when a step of the instance is in one: most instances are never
cancelled or compensated, and their legend stays as short as it was."""


def outline(state: StepState | None) -> tuple[str, str]:
    """A box's outline in ``state``: its width and its dash attribute (the legend's swatches
    are drawn alike, so that the two compensation states tell apart there too)."""
    width = "2.5" if state in (StepState.ACTIVE, StepState.WAITING, StepState.FAILED) else "1.5"
    if state is StepState.COMPENSATING:
        return "2.5", ' stroke-dasharray="5 3"'
    if state is StepState.QUEUED:
        return "1.5", ' stroke-dasharray="2 2"'
    dash = ' stroke-dasharray="4 3"' if state is StepState.NOT_REACHED else ""
    return width, dash


def render_svg(diagram: Diagram, progress: Progress | None = None, *, prefix: str = "hx") -> str:
    """The SVG of ``diagram``; with ``progress``, steps coloured by their state in that instance.

    ``prefix`` makes the ids inside unique when several graphs share a page.
    """
    layout = lay_out(diagram)
    width = max(layout.width, MIN_WIDTH)
    legend = _legend_rows(list(_legend_items(progress)), width - 2 * MARGIN)
    height = layout.height + LEGEND_ROW * len(legend) + 8
    title = f"Workflow graph of {diagram.name}" + (
        " with this instance's progress" if progress else ""
    )
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" class="hx-graph" role="img" '
        f'width="{width:.0f}" height="{height:.0f}" viewBox="0 0 {width:.0f} {height:.0f}" '
        f'font-family="{escape(FONT)}" font-size="12" aria-labelledby="{prefix}-title" '
        f'data-workflow="{escape(diagram.workflow)}">',
        f'<title id="{prefix}-title">{escape(title)}</title>',
        _markers(prefix),
        *_start_marker(layout, diagram, prefix),
        *(
            _junction(j.stem, j.edge.kind, j.edge.label, _wire_tone(progress, wire), prefix)
            for j, wire in _junction_wires(layout)
        ),
        *(_wire(wire, progress, prefix) for wire in layout.wires),
        *(_box(box, progress) for box in layout.boxes.values()),
        *_legend(legend, layout.height, prefix),
        "</svg>",
    ]
    return "\n".join(parts)


def _markers(prefix: str) -> str:
    arrows = "".join(
        f'<marker id="{prefix}-arrow-{tone}" viewBox="0 0 10 10" refX="9" refY="5" '
        f'markerWidth="7" markerHeight="7" orient="auto-start-reverse">'
        f'<path class="hx-arrow hx-arrow-{tone}" d="M0,0 L10,5 L0,10 z" fill="{colour}"/></marker>'
        for tone, colour in WIRE.items()
    )
    return f"<defs>{arrows}</defs>"


def _start_marker(layout: Layout, diagram: Diagram, prefix: str) -> Iterator[str]:
    start = next(node for node in diagram.nodes if node.is_start)
    box = layout.boxes[start.key]
    yield (
        f'<g class="hx-start"><title>start</title>'
        f'<circle cx="{box.cx:.1f}" cy="{box.y - 30:.1f}" r="7" fill="{WIRE["plain"]}"/>'
        f'<path class="hx-wire hx-edge-plain" d="M{box.cx:.1f},{box.y - 23:.1f} '
        f'L{box.cx:.1f},{box.y - 1:.1f}" stroke="{WIRE["plain"]}" stroke-width="1.5" fill="none" '
        f'marker-end="url(#{prefix}-arrow-plain)"/></g>'
    )


def _junction_wires(layout: Layout) -> Iterator[tuple[Junction, Wire]]:
    for junction in layout.junctions:
        siblings = [w for w in layout.wires if w.edge.group == junction.edge.group]
        yield junction, siblings[0]


def _wire_tone(progress: Progress | None, wire: Wire) -> str:
    if progress is None:
        return "plain"
    return "taken" if progress.took(wire.edge) else "idle"


def _junction(stem: tuple[Point, Point], kind: EdgeKind, label: str, tone: str, prefix: str) -> str:
    (x0, y0), (x1, y1) = stem
    colour = WIRE[tone]
    if kind is EdgeKind.ROUTE:
        shape = (
            f'<path d="M{x1:.1f},{y1 - 6:.1f} L{x1 + 6:.1f},{y1:.1f} L{x1:.1f},{y1 + 6:.1f} '
            f'L{x1 - 6:.1f},{y1:.1f} z" fill="#ffffff" stroke="{colour}" stroke-width="1.5" '
            f'class="hx-junction-shape"/>'
        )
        hint = f"{label} → route: one of these, chosen at run time"
    else:
        shape = (
            f'<circle cx="{x1:.1f}" cy="{y1:.1f}" r="4.5" fill="{colour}" class="hx-junction-dot"/>'
        )
        hint = f"{label} → fan-out: all of these run"
    return (
        f'<g class="hx-junction hx-edge-{tone} hx-kind-{kind.value}"><title>{escape(hint)}</title>'
        f'<path class="hx-wire" d="M{x0:.1f},{y0:.1f} L{x1:.1f},{y1:.1f}" stroke="{colour}" '
        f'stroke-width="1.5" fill="none"/>{shape}'
        f"{_label(label, (x1 + 10, y1), anchor='start')}</g>"
    )


def _wire(wire: Wire, progress: Progress | None, prefix: str) -> str:
    tone = _wire_tone(progress, wire)
    dashed = ' stroke-dasharray="5 4"' if wire.edge.kind is EdgeKind.ROUTE else ""
    width = "2" if tone == "taken" else "1.5"
    hint = f"{wire.edge.source.label} —{wire.edge.label}→ {wire.edge.target.label}"
    label = _label(wire.edge.label, wire.label_at) if wire.label_at else ""
    return (
        f'<g class="hx-edge hx-edge-{tone} hx-kind-{wire.edge.kind.value}">'
        f"<title>{escape(hint)}</title>"
        f'<path class="hx-wire" d="{_path(wire.points)}" stroke="{WIRE[tone]}" '
        f'stroke-width="{width}" fill="none"{dashed} marker-end="url(#{prefix}-arrow-{tone})"/>'
        f"{label}</g>"
    )


def _path(points: tuple[Point, ...]) -> str:
    """Vertical-tangent curves between consecutive points; straight where they line up."""
    (x, y), *rest = points
    d = [f"M{x:.1f},{y:.1f}"]
    for nx, ny in rest:
        if abs(nx - x) < 0.5:
            d.append(f"L{nx:.1f},{ny:.1f}")
        else:
            mid = (y + ny) / 2
            d.append(f"C{x:.1f},{mid:.1f} {nx:.1f},{mid:.1f} {nx:.1f},{ny:.1f}")
        x, y = nx, ny
    return " ".join(d)


def _label(text: str, at: Point, anchor: str = "middle") -> str:
    x, y = at
    width = _text_width(text, 11) + 8
    left = x - width / 2 if anchor == "middle" else x - 4
    return (
        f'<rect class="hx-label-bg" x="{left:.1f}" y="{y - 8:.1f}" width="{width:.1f}" '
        f'height="16" rx="3" fill="#ffffff" fill-opacity="0.92"/>'
        f'<text class="hx-label" x="{x:.1f}" y="{y + 4:.1f}" text-anchor="{anchor}" '
        f'font-size="11" fill="#444444">{escape(text)}</text>'
    )


def _box(box: Box, progress: Progress | None) -> str:
    node = box.node
    state = progress.state(node.step) if progress else None
    fill, stroke, ink = PALETTE[state]
    radius = BOX_HEIGHT / 2 if node.is_end else 7
    badge = progress.badges.get(node.step) if progress else None
    subtitle = badged(node.detail, badge) if badge else _subtitle(node.detail, state)
    link = progress.links.get(node.step) if progress else None
    tooltip = node.path + (
        f" — {progress.notes[node.step]}" if progress and node.step in progress.notes else ""
    )
    if progress is not None and node.step in progress.counts:
        tooltip += f" — items: {progress.counts[node.step]}"
    if state is not None and node.step not in (progress.notes if progress else {}):
        tooltip += f" — {state.value}"
    name_y = box.y + (19 if subtitle else 28)
    css = f"hx-node hx-state-{state.css}" if state else "hx-node hx-state-plain"
    width, dash = outline(state)
    drawn = (
        f'<g class="{css}" data-step="{escape(node.path)}"><title>{escape(tooltip)}</title>'
        f'<rect x="{box.x:.1f}" y="{box.y:.1f}" width="{box.width:.1f}" height="{box.height:.1f}" '
        f'rx="{radius:.1f}" fill="{fill}" stroke="{stroke}" stroke-width="{width}"{dash}/>'
        f'<text class="hx-name" x="{box.cx:.1f}" y="{name_y:.1f}" text-anchor="middle" '
        f'font-size="13" font-weight="600" fill="{ink}">{escape(node.label)}</text>'
        + (
            f'<text class="hx-detail" x="{box.cx:.1f}" y="{box.y + 35:.1f}" text-anchor="middle" '
            f'font-size="11" fill="{ink}" fill-opacity="0.85">{escape(subtitle)}</text>'
            if subtitle
            else ""
        )
        + (
            f'<text class="hx-map-count" x="{box.cx:.1f}" y="{box.bottom + 12:.1f}" '
            f'text-anchor="middle" font-size="10" fill="#444444">'
            f"{escape(progress.counts[node.step])}</text>"
            if progress is not None and node.step in progress.counts
            else ""
        )
        + "</g>"
    )
    if link is None:
        return drawn
    return f'<a class="hx-node-link" href="{escape(link)}">{drawn}</a>'


def _legend_items(progress: Progress | None) -> Iterator[tuple[str, str, float]]:
    if progress is not None:
        present = set(progress.states.values())
        for state in StepState:
            if state in OCCASIONAL and state not in present:
                continue
            yield f"state:{state.value}", state.value, _text_width(state.value, 11) + 34
        yield "edge:taken", "taken", _text_width("taken", 11) + 46
    yield "edge:fan-out", "fan-out: all run", _text_width("fan-out: all run", 11) + 46
    yield "edge:route", "route: one is chosen", _text_width("route: one is chosen", 11) + 46


def _legend_rows(
    items: list[tuple[str, str, float]], room: float
) -> list[list[tuple[str, str, float]]]:
    """The legend's items, wrapped into rows no wider than ``room``."""
    rows: list[list[tuple[str, str, float]]] = [[]]
    used = 0.0
    for item in items:
        if rows[-1] and used + item[2] > room:
            rows.append([])
            used = 0.0
        rows[-1].append(item)
        used += item[2]
    return rows


def _legend(rows: list[list[tuple[str, str, float]]], top: float, prefix: str) -> Iterator[str]:
    yield f'<g class="hx-legend" transform="translate({MARGIN:.0f},{top + 4:.0f})">'
    for number, row in enumerate(rows):
        yield f'<g transform="translate(0,{number * LEGEND_ROW:.0f})">'
        x = 0.0
        for kind, label, width in row:
            yield from _legend_item(kind, label, x, prefix)
            x += width
        yield "</g>"
    yield "</g>"


def _legend_item(kind: str, label: str, x: float, prefix: str) -> Iterator[str]:
    what, name = kind.split(":", 1)
    if what == "state":
        state = StepState(name)
        fill, line, _ink = PALETTE[state]
        width, dash = outline(state) if state in OCCASIONAL else ("1.5", "")
        yield (
            f'<g class="hx-legend-item hx-state-{state.css}"><rect x="{x:.1f}" y="4" width="18" '
            f'height="14" rx="3" fill="{fill}" stroke="{line}" stroke-width="{width}"{dash}/>'
        )
        text_x = x + 24
    else:
        yield _legend_edge(name, x, prefix)
        text_x = x + 36
    yield (
        f'<text class="hx-legend-text" x="{text_x:.1f}" y="15" font-size="11" '
        f'fill="#444444">{escape(label)}</text></g>'
    )


def _legend_edge(name: str, x: float, prefix: str) -> str:
    tone = "taken" if name == "taken" else "plain"
    colour = WIRE[tone]
    dashed = ' stroke-dasharray="5 4"' if name == "route" else ""
    mark = ""
    if name == "fan-out":
        mark = f'<circle cx="{x + 6:.1f}" cy="11" r="3.5" fill="{colour}"/>'
    elif name == "route":
        mark = (
            f'<path d="M{x + 6:.1f},6 L{x + 11:.1f},11 L{x + 6:.1f},16 L{x + 1:.1f},11 z" '
            f'fill="#ffffff" stroke="{colour}"/>'
        )
    return (
        f'<g class="hx-legend-item hx-edge-{tone} hx-kind-{name}">'
        f'<path class="hx-wire" d="M{x + 6:.1f},11 L{x + 30:.1f},11" stroke="{colour}" '
        f'stroke-width="{2 if tone == "taken" else 1.5}"{dashed} fill="none" '
        f'marker-end="url(#{prefix}-arrow-{tone})"/>{mark}'
    )
