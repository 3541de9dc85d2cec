"""Where each box and arrow of a diagram goes: a small layered (Sugiyama-style) layout.

Steps sit in rows by rank (the longest path from the start step, so every arrow points down).
An arrow that skips rows passes through a placeholder in each row it crosses, so it runs between
the boxes instead of through them. The order within each row is improved by barycenter sweeps,
keeping the order with the fewest crossings; x positions are then pulled towards the neighbours
in the rows above and below. Everything is deterministic: the same workflow, the same picture.
Text widths are estimated (the server has no fonts to measure with), generously, per character.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from itertools import combinations, pairwise

from hephaestus_django.core.children import Child
from hephaestus_django.diagram.model import CHILD_BADGES, Diagram, Edge, Node, StepState

Point = tuple[float, float]

BOX_HEIGHT = 46.0
ROW_GAP = 58.0
COLUMN_GAP = 30.0
PLACEHOLDER_WIDTH = 14.0
MARGIN = 24.0
TOP = 52.0  # room for the start marker above the first row
MIN_BOX_WIDTH = 120.0
BOX_PADDING = 28.0  # room left and right of a box's text, together
JUNCTION_DROP = 16.0
SWEEPS = 12
PULLS = 8


# Advance widths in em of the sans-serif fonts browsers fall back to (DejaVu Sans, the widest
# of them, rounded up), by kind of character; anything else counts as a full em (CJK, emoji).
_NARROW = frozenset(" !'(),-./:;I[]`fijlrt|·")
_WIDE = frozenset("%@MWmw—")
_EM = {"narrow": 0.36, "digit": 0.64, "lower": 0.62, "upper": 0.74, "wide": 1.0, "other": 1.0}
BOLD = 1.08
"""How much wider bold text runs than regular."""


def _em(char: str) -> float:
    if char in _NARROW:
        return _EM["narrow"]
    if char in _WIDE:
        return _EM["wide"]
    if char.isascii():
        if char.isdigit():
            return _EM["digit"]
        if char.isupper():
            return _EM["upper"]
        return _EM["lower"]
    return _EM["other"]


def text_width(text: str, size: float, bold: bool = False) -> float:
    """A generous estimate of ``text``'s rendered width at ``size`` px in a sans-serif font.

    The server has no fonts to measure with, and the viewer's font is not known, so each
    character counts at the width of its kind in the widest common fallback font: a box sized
    by this holds its label in any of them.
    """
    return sum(map(_em, text)) * size * (BOLD if bold else 1.0)


def subtitle(detail: str, state: StepState | None) -> str:
    """A box's second line: what kind of step it is, and its state in the instance shown."""
    return " · ".join(part for part in (detail, state.value if state else "") if part)


def badged(detail: str, badge: str) -> str:
    """A box's second line when it shows a badge (a child's status) instead of its state."""
    return " · ".join(part for part in (detail, badge) if part)


@dataclass(frozen=True, slots=True)
class Box:
    node: Node
    x: float
    y: float
    width: float
    height: float

    @property
    def cx(self) -> float:
        return self.x + self.width / 2

    @property
    def bottom(self) -> float:
        return self.y + self.height


@dataclass(frozen=True, slots=True)
class Wire:
    """One drawn arrow, through ``points``; ``label_at`` is None when its junction is labelled."""

    edge: Edge
    points: tuple[Point, ...]
    label_at: Point | None


@dataclass(frozen=True, slots=True)
class Junction:
    """Where a fan-out or route splits: a stem from the source, then one wire per target."""

    edge: Edge
    stem: tuple[Point, Point]


@dataclass(frozen=True)
class Layout:
    width: float
    height: float
    boxes: Mapping[str, Box]
    wires: tuple[Wire, ...]
    junctions: tuple[Junction, ...]


def lay_out(diagram: Diagram) -> Layout:
    """Positions for every box and arrow of ``diagram``."""
    chains = [_chain(index, edge) for index, edge in enumerate(diagram.edges)]
    rows = _rows(diagram, chains)
    up, down = _neighbours(chains)
    rows = _order(rows, up, down)
    widths = {node.key: _box_width(node) for node in diagram.nodes}
    centres = _centres(rows, up, down, widths)
    boxes = {
        node.key: Box(
            node,
            centres[node.key] - widths[node.key] / 2,
            _row_top(node.rank),
            widths[node.key],
            BOX_HEIGHT,
        )
        for node in diagram.nodes
    }
    wires, junctions = _wires(diagram, chains, centres, boxes)
    right = max((box.x + box.width for box in boxes.values()), default=MARGIN)
    height = _row_top(len(rows)) - ROW_GAP + MARGIN
    return Layout(right + MARGIN, height, boxes, tuple(wires), tuple(junctions))


def _row_top(rank: int) -> float:
    return TOP + rank * (BOX_HEIGHT + ROW_GAP)


def _box_width(node: Node) -> float:
    """Wide enough for the name and for the subtitle in any state, so that every instance of a
    workflow is drawn with the same layout."""
    subtitles = [subtitle(node.detail, state) for state in (None, *StepState)]
    if isinstance(node.step, type) and issubclass(node.step, Child):
        subtitles += [badged(node.detail, badge) for badge in CHILD_BADGES]
    return max(
        MIN_BOX_WIDTH,
        text_width(node.label, 13, bold=True) + BOX_PADDING,
        *(text_width(text, 11) + BOX_PADDING for text in subtitles),
    )


def _chain(index: int, edge: Edge) -> list[str]:
    """The items an edge passes: its source, a placeholder per skipped row, its target."""
    skipped = [f"e{index}.{rank}" for rank in range(edge.source.rank + 1, edge.target.rank)]
    return [edge.source.key, *skipped, edge.target.key]


def _rank_of(item: str, nodes: Mapping[str, Node]) -> int:
    return nodes[item].rank if item in nodes else int(item.rsplit(".", 1)[1])


def _rows(diagram: Diagram, chains: Sequence[list[str]]) -> list[list[str]]:
    """Items per row, first in topological order (placeholders right after their source)."""
    nodes = {node.key: node for node in diagram.nodes}
    position = {node.key: float(index) for index, node in enumerate(diagram.nodes)}
    for chain in chains:
        for offset, item in enumerate(chain[1:-1], start=1):
            position[item] = position[chain[0]] + 0.5 + offset / 1000
    rows: list[list[str]] = [[] for _ in range(1 + max(node.rank for node in diagram.nodes))]
    for item in sorted(position, key=position.__getitem__):
        rows[_rank_of(item, nodes)].append(item)
    return rows


def _neighbours(chains: Sequence[list[str]]) -> tuple[dict[str, list[str]], dict[str, list[str]]]:
    up: dict[str, list[str]] = {}
    down: dict[str, list[str]] = {}
    for chain in chains:
        for above, below in pairwise(chain):
            down.setdefault(above, []).append(below)
            up.setdefault(below, []).append(above)
    return up, down


def _order(
    rows: list[list[str]], up: Mapping[str, list[str]], down: Mapping[str, list[str]]
) -> list[list[str]]:
    """Barycenter sweeps, down and up; the order with the fewest crossings wins (ties: earliest)."""
    best, best_crossings = [list(row) for row in rows], _crossings(rows, down)
    current = [list(row) for row in rows]
    for sweep in range(SWEEPS):
        downward = sweep % 2 == 0
        indices = range(1, len(current)) if downward else range(len(current) - 2, -1, -1)
        for r in indices:
            fixed = current[r - 1] if downward else current[r + 1]
            current[r] = _by_barycenter(current[r], fixed, up if downward else down)
        crossings = _crossings(current, down)
        if crossings < best_crossings:
            best, best_crossings = [list(row) for row in current], crossings
    return best


def _by_barycenter(row: list[str], fixed: list[str], links: Mapping[str, list[str]]) -> list[str]:
    position = {item: index for index, item in enumerate(fixed)}

    def key(indexed: tuple[int, str]) -> tuple[float, int]:
        index, item = indexed
        linked = [position[other] for other in links.get(item, []) if other in position]
        return (sum(linked) / len(linked) if linked else float(index), index)

    return [item for _index, item in sorted(enumerate(row), key=key)]


def _crossings(rows: Sequence[list[str]], down: Mapping[str, list[str]]) -> int:
    total = 0
    for upper, lower in pairwise(rows):
        below = {item: index for index, item in enumerate(lower)}
        links = [
            (index, below[other])
            for index, item in enumerate(upper)
            for other in down.get(item, [])
            if other in below
        ]
        total += sum(1 for (a, b), (c, d) in combinations(links, 2) if (a - c) * (b - d) < 0)
    return total


def _centres(
    rows: Sequence[list[str]],
    up: Mapping[str, list[str]],
    down: Mapping[str, list[str]],
    widths: Mapping[str, float],
) -> dict[str, float]:
    """x centres: rows packed, then pulled towards their neighbours' centres, without overlap."""

    def width(item: str) -> float:
        return widths.get(item, PLACEHOLDER_WIDTH)

    centres: dict[str, float] = {}
    for row in rows:
        _place(row, [0.0] * len(row), width, centres)
    for sweep in range(PULLS):
        downward = sweep % 2 == 0
        links = up if downward else down
        for row in rows if downward else reversed(rows):
            wanted = [
                sum(centres[o] for o in links[item]) / len(links[item])
                if links.get(item)
                else centres[item]
                for item in row
            ]
            _place(row, wanted, width, centres)
    shift = MARGIN - min(centres[item] - width(item) / 2 for row in rows for item in row)
    return {item: centre + shift for item, centre in centres.items()}


def _place(
    row: list[str],
    wanted: list[float],
    width: Callable[[str], float],
    centres: dict[str, float],
) -> None:
    """Put ``row`` as near ``wanted`` as keeping every gap allows (mean of two feasible sweeps)."""
    gaps = [(width(a) + width(b)) / 2 + COLUMN_GAP for a, b in pairwise(row)]
    left = list(wanted)
    for i in range(1, len(row)):
        left[i] = max(left[i], left[i - 1] + gaps[i - 1])
    right = list(wanted)
    for i in range(len(row) - 2, -1, -1):
        right[i] = min(right[i], right[i + 1] - gaps[i])
    for item, a, b in zip(row, left, right, strict=True):
        centres[item] = (a + b) / 2


def _wires(
    diagram: Diagram,
    chains: Sequence[list[str]],
    centres: Mapping[str, float],
    boxes: Mapping[str, Box],
) -> tuple[list[Wire], list[Junction]]:
    """Each edge's points: out of a port on its source's bottom, through its placeholders, into
    a port on its target's top. Ports are spread along the box in the order their wires leave."""
    via = [[pt for item in chain[1:-1] for pt in _through(centres[item], item)] for chain in chains]
    first = [
        pts[0][0] if pts else boxes[edge.target.key].cx
        for edge, pts in zip(diagram.edges, via, strict=True)
    ]
    exits = _ports(
        boxes,
        [
            (edge.source.key, edge.group or ("", str(i)), first[i])
            for i, edge in enumerate(diagram.edges)
        ],
        "bottom",
    )
    last = [
        pts[-1][0] if pts else boxes[edge.source.key].cx
        for edge, pts in zip(diagram.edges, via, strict=True)
    ]
    entries = _ports(
        boxes,
        [(edge.target.key, ("", str(i)), last[i]) for i, edge in enumerate(diagram.edges)],
        "top",
    )
    wires: list[Wire] = []
    junctions: dict[tuple[str, str], Junction] = {}
    for i, edge in enumerate(diagram.edges):
        start = exits[i]
        if edge.group is not None:
            split = (start[0], start[1] + JUNCTION_DROP)
            junctions.setdefault(edge.group, Junction(edge, (start, split)))
            start = split
        points = (start, *via[i], entries[i])
        label_at = None if edge.group else _midpoint(points[0], points[1])
        wires.append(Wire(edge, points, label_at))
    return wires, list(junctions.values())


def _through(centre: float, item: str) -> list[Point]:
    top = _row_top(int(item.rsplit(".", 1)[1]))
    return [(centre, top), (centre, top + BOX_HEIGHT)]


def _ports(
    boxes: Mapping[str, Box], wires: Sequence[tuple[str, tuple[str, str], float]], side: str
) -> list[Point]:
    """A port per wire; wires of one group share theirs."""
    groups: dict[str, dict[tuple[str, str], list[float]]] = {}
    for box_key, group, towards in wires:
        groups.setdefault(box_key, {}).setdefault(group, []).append(towards)
    spots: dict[tuple[str, tuple[str, str]], Point] = {}
    for box_key, by_group in groups.items():
        box = boxes[box_key]
        ordered = sorted(by_group, key=lambda g: sum(by_group[g]) / len(by_group[g]))
        spread = min(box.width * 0.6, 26.0 * (len(ordered) - 1))
        for index, group in enumerate(ordered):
            offset = 0.0 if len(ordered) == 1 else spread * (index / (len(ordered) - 1) - 0.5)
            y = box.bottom if side == "bottom" else box.y
            spots[(box_key, group)] = (box.cx + offset, y)
    return [spots[(box_key, group)] for box_key, group, _towards in wires]


def _midpoint(a: Point, b: Point) -> Point:
    return ((a[0] + b[0]) / 2, (a[1] + b[1]) / 2)
