"""Workflow graphs as pictures: an SVG drawn on the server for the admin, Mermaid and DOT as text.

::

    from hephaestus_django.diagram import build_diagram, progress_of, render_svg, to_mermaid

    diagram = build_diagram(OrderWorkflow.graph)
    to_mermaid(diagram)                                   # text for docs and wikis
    render_svg(diagram, progress_of(instance))            # steps coloured by their state

Everything here is pure Python on the validated workflow graph: no Django, no database, no
JavaScript in the output.
"""

from hephaestus_django.diagram.model import (
    Diagram,
    Edge,
    EdgeKind,
    Node,
    Progress,
    StepState,
    build_diagram,
    progress_of,
)
from hephaestus_django.diagram.svg import render_svg
from hephaestus_django.diagram.text import to_dot, to_mermaid

__all__ = [
    "Diagram",
    "Edge",
    "EdgeKind",
    "Node",
    "Progress",
    "StepState",
    "build_diagram",
    "progress_of",
    "render_svg",
    "to_dot",
    "to_mermaid",
]
