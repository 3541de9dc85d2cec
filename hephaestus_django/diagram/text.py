"""The diagram as text other tools draw: Mermaid (GitHub and many wikis render it) and DOT.

Both show the same nodes and arrows as the SVG: a thick arrow is a fan-out (every target runs), a
dotted/dashed one a route (one target is chosen at run time), an end step is rounded. Labels are
escaped for each language, so a step or event name cannot break out of its quotes.
"""

from __future__ import annotations

from hephaestus_django.diagram.model import Diagram, EdgeKind, Node

MERMAID_ARROWS = {EdgeKind.STEP: "-->", EdgeKind.FAN_OUT: "==>", EdgeKind.ROUTE: "-.->"}
DOT_STYLES = {EdgeKind.STEP: "", EdgeKind.FAN_OUT: ", style=bold", EdgeKind.ROUTE: ", style=dashed"}


def to_mermaid(diagram: Diagram) -> str:
    """A Mermaid ``flowchart`` of the workflow, top to bottom."""
    lines = ["flowchart TD", f"    %% {_mermaid_text(diagram.workflow)}"]
    lines.append('    entry(("start")) --> ' + diagram.nodes[0].key)
    lines.extend(f"    {_mermaid_node(node)}" for node in diagram.nodes)
    for edge in diagram.edges:
        arrow = MERMAID_ARROWS[edge.kind]
        label = _mermaid_text(edge.label)
        lines.append(f'    {edge.source.key} {arrow}|"{label}"| {edge.target.key}')
    ends = [node.key for node in diagram.nodes if node.is_end]
    if ends:
        lines.append("    classDef terminal fill:#eeeeee,stroke:#888888")
        lines.append(f"    class {','.join(ends)} terminal")
    return "\n".join(lines) + "\n"


def _mermaid_node(node: Node) -> str:
    label = _mermaid_text(node.label)
    return f'{node.key}(["{label}"])' if node.is_end else f'{node.key}["{label}"]'


def _mermaid_text(text: str) -> str:
    """Mermaid's entity codes for the characters that would end or inject into a label."""
    for char, code in (("#", "#35;"), ('"', "#quot;"), ("<", "#lt;"), (">", "#gt;")):
        text = text.replace(char, code)
    return text.replace("\n", " ")


def to_dot(diagram: Diagram) -> str:
    """A Graphviz ``digraph`` of the workflow (``dot -Tsvg``), top to bottom."""
    lines = [
        f"digraph {_dot_text(diagram.name)} {{",
        f"    // {diagram.workflow.replace(chr(10), ' ')}",
        "    rankdir=TB;",
        '    node [shape=box, style="rounded,filled", fillcolor="#f2f7fa", color="#417690", '
        'fontname="Helvetica"];',
        '    edge [fontname="Helvetica", fontsize=10];',
        '    start [shape=point, width=0.15, label=""];',
        f"    start -> {diagram.nodes[0].key};",
    ]
    for node in diagram.nodes:
        shape = ', shape=oval, fillcolor="#eeeeee"' if node.is_end else ""
        label, tooltip = _dot_text(node.label), _dot_text(node.path)
        lines.append(f"    {node.key} [label={label}, tooltip={tooltip}{shape}];")
    for edge in diagram.edges:
        lines.append(
            f"    {edge.source.key} -> {edge.target.key} "
            f"[label={_dot_text(edge.label)}{DOT_STYLES[edge.kind]}];"
        )
    lines.append("}")
    return "\n".join(lines) + "\n"


def _dot_text(text: str) -> str:
    """A DOT double-quoted string."""
    escaped = text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
    return f'"{escaped}"'
