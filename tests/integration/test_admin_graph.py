"""The workflow graph: the diagram model, its layout, the SVG, Mermaid and DOT, and the command.

Everything but the last tests runs without a database: the diagram is pure Python.
"""

from __future__ import annotations

import itertools
import re
import sys
import xml.etree.ElementTree as ET
from datetime import UTC, datetime
from io import StringIO
from typing import Any

import pytest
from django.core.management import CommandError, call_command

from hephaestus_django import Done, Step, WaitForEvent, Workflow
from hephaestus_django.core import engine
from hephaestus_django.core.instance import Running, evolve
from hephaestus_django.diagram import (
    EdgeKind,
    Progress,
    StepState,
    build_diagram,
    progress_of,
    render_svg,
    to_dot,
    to_mermaid,
)
from hephaestus_django.diagram.layout import lay_out, text_width
from hephaestus_django.runtime.execution import execute_step
from hephaestus_django.runtime.leases import QUEUE_OWNER_PREFIX
from tests import flows
from tests.support.engine import started

SVG = "{http://www.w3.org/2000/svg}"
NASTY_EVENT = '<script>alert("x")</script>'


def odd_workflow() -> type[Workflow]:
    """Steps defined in a function (their paths contain ``<locals>``) and hostile event names."""

    class Odd(Step):
        events = (NASTY_EVENT, 'a"b\\c')

        def execute(self, instance: Any, config: Any, context: Any) -> str:
            return NASTY_EVENT

    class End(Done):
        pass

    class OddFlow(Workflow):
        start = Odd
        transitions = {Odd: {NASTY_EVENT: End, 'a"b\\c': End}}

    return OddFlow


def nodes_of(svg: str) -> dict[str, ET.Element]:
    root = ET.fromstring(svg)  # well-formed XML, or this raises
    return {g.get("data-step", ""): g for g in root.iter(f"{SVG}g") if g.get("data-step")}


# --- the model --------------------------------------------------------------------------------


def test_ranks_are_the_longest_path_from_the_start() -> None:
    diagram = build_diagram(flows.Uneven.graph)
    ranks = {node.label: node.rank for node in diagram.nodes}
    assert ranks == {
        "Split": 0,
        "Pack": 1,
        "Charge": 1,
        "Weigh": 2,
        "Label": 3,
        "Join": 4,
        "Done": 5,
    }
    assert diagram.nodes[0].is_start
    assert diagram.nodes[0].key == "s0"
    assert [node.label for node in diagram.nodes if node.is_end] == ["Done"]


def test_edges_know_fan_outs_routes_and_merge_events() -> None:
    fan_out = build_diagram(flows.FanOut.graph)
    split = [(e.target.label, e.kind, e.group) for e in fan_out.edges if e.source.label == "Split"]
    assert split == [
        ("Pack", EdgeKind.FAN_OUT, ("s0", "ok")),
        ("Charge", EdgeKind.FAN_OUT, ("s0", "ok")),
        ("Notify", EdgeKind.FAN_OUT, ("s0", "ok")),
    ]
    routed = build_diagram(flows.Routed.graph)
    kinds = {(e.source.label, e.target.label): e.kind for e in routed.edges}
    assert kinds[("Check", "Pack")] is kinds[("Check", "Notify")] is EdgeKind.ROUTE
    assert kinds[("Check", "Declined")] is EdgeKind.STEP
    two_waits = build_diagram(flows.TwoWaits.graph)
    (merged,) = [e for e in two_waits.edges if e.source.label == "Signature"]
    assert merged.label == "signed / declined"
    assert merged.group is None


def test_progress_of_an_instance() -> None:
    failed = progress_of(started(flows.IfElse, {"approve": "fail"}))
    assert failed.state(flows.Check) is StepState.COMPLETED
    assert failed.state(flows.Approve) is StepState.FAILED
    assert failed.state(flows.Reject) is StepState.NOT_REACHED
    assert "failed: tests.flows.StepFailed: approve was told to fail" in failed.notes[flows.Approve]
    waiting = progress_of(started(flows.TwoWaits))
    assert waiting.state(flows.Signature) is StepState.WAITING
    running = progress_of(engine.start(engine.new_instance(flows.IfElse, {})))
    assert running.state(flows.Check) is StepState.ACTIVE
    done = progress_of(started(flows.IfElse))
    assert (flows.Check, "valid", flows.Approve) in done.taken
    assert (flows.Check, "invalid", flows.Reject) not in done.taken
    when = r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d UTC"  # to the second, the zone named
    assert re.fullmatch(f"completed with “valid” at {when}; result: .*", done.notes[flows.Check])
    assert re.match(f"waiting since {when} for signed, declined", waiting.notes[flows.Signature])


# --- layout -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "workflow", [flows.IfElse, flows.FanOut, flows.TwoWaits, flows.Routed, flows.Uneven]
)
def test_the_layout_has_no_overlaps_and_every_arrow_points_down(workflow: type[Any]) -> None:
    layout = lay_out(build_diagram(workflow.graph))
    boxes = sorted(layout.boxes.values(), key=lambda box: (box.y, box.x))
    for left, right in itertools.pairwise(boxes):
        if left.y == right.y:
            assert left.x + left.width < right.x, (left.node.label, right.node.label)
    for wire in layout.wires:
        ys = [y for _x, y in wire.points]
        assert ys == sorted(ys), wire.edge.label
        assert wire.points[0][1] >= layout.boxes[wire.edge.source.key].bottom
        assert wire.points[-1][1] == layout.boxes[wire.edge.target.key].y
    assert all(box.x > 0 and box.x + box.width < layout.width for box in boxes)


def test_a_long_arrow_runs_between_the_rows_boxes() -> None:
    diagram = build_diagram(flows.Uneven.graph)
    layout = lay_out(diagram)
    (long_wire,) = [
        w for w in layout.wires if (w.edge.source.label, w.edge.target.label) == ("Charge", "Join")
    ]
    assert len(long_wire.points) == 2 + 2 * 2  # through a placeholder in each row it skips
    for x, y in long_wire.points[1:-1]:
        for box in layout.boxes.values():
            assert not (box.x <= x <= box.x + box.width and box.y < y < box.bottom)


class Approval(WaitForEvent):
    events = ("approved",)


class ApprovalFlow(Workflow):
    start = Approval
    transitions = {Approval: {"approved": Done}}


REGULAR_EM = 0.55
"""An average advance of lowercase text in common sans-serif fonts, in em: a box narrower than
its text at this width certainly overflows (the browser test measures the real width)."""


@pytest.mark.parametrize("workflow", [ApprovalFlow, flows.TwoWaits, flows.Timed])
@pytest.mark.parametrize("state", [None, *StepState])
def test_every_box_holds_its_texts_in_every_state(
    workflow: type[Workflow], state: StepState | None
) -> None:
    diagram = build_diagram(workflow.graph)
    progress = None if state is None else Progress({node.step: state for node in diagram.nodes})
    rects = {}
    for step, g in nodes_of(render_svg(diagram, progress)).items():
        rect = g.find(f"{SVG}rect")
        assert rect is not None
        rects[step] = float(rect.get("width", 0))
        for text in g.iter(f"{SVG}text"):
            size = float(text.get("font-size", 0))
            needed = len(text.text or "") * size * REGULAR_EM + 12
            assert needed <= rects[step], (step, text.text, rects[step])
    if state is StepState.WAITING and workflow is ApprovalFlow:
        texts = [t.text for t in ET.fromstring(render_svg(diagram, progress)).iter(f"{SVG}text")]
        assert "waits for an event · waiting" in texts


def test_wide_letters_widen_a_box() -> None:
    assert text_width("MMMM", 13, bold=True) > text_width("iiii", 13, bold=True) * 2
    assert text_width("ÜÜÜ", 11) >= text_width("uuu", 11)


def test_the_layout_is_deterministic() -> None:
    graph = flows.Uneven.graph
    assert render_svg(build_diagram(graph)) == render_svg(build_diagram(graph))


# --- SVG --------------------------------------------------------------------------------------


def test_the_svg_of_a_definition() -> None:
    svg = render_svg(build_diagram(flows.FanOut.graph))
    nodes = nodes_of(svg)
    assert set(nodes) == {step.path() for step in flows.FanOut.graph.order}
    assert all(g.get("class") == "hx-node hx-state-plain" for g in nodes.values())
    root = ET.fromstring(svg)
    assert root.get("role") == "img"
    assert root.find(f"{SVG}title") is not None
    junctions = [g for g in root.iter(f"{SVG}g") if "hx-junction" in (g.get("class") or "")]
    assert len(junctions) == 1
    assert "hx-kind-fan-out" in (junctions[0].get("class") or "")
    texts = [t.text for t in root.iter(f"{SVG}text")]
    assert "fan-out: all run" in texts
    assert "completed" not in texts
    assert "<script" not in svg
    assert "javascript:" not in svg
    assert "http://" not in svg.replace('xmlns="http://www.w3.org/2000/svg"', "")


def test_route_edges_are_dashed_with_a_diamond() -> None:
    root = ET.fromstring(render_svg(build_diagram(flows.Routed.graph)))
    routes = [g for g in root.iter(f"{SVG}g") if "hx-kind-route" in (g.get("class") or "")]
    dashed = [g for g in routes if "hx-edge" in (g.get("class") or "").split()]
    assert len(dashed) == 2
    assert all(g.find(f"{SVG}path").get("stroke-dasharray") for g in dashed)  # type: ignore[union-attr]
    assert any("route: one of these" in (g.findtext(f"{SVG}title") or "") for g in routes)


@pytest.mark.parametrize(
    ("script", "expected"),
    [
        ({}, {"Check": "completed", "Approve": "completed", "Reject": "not reached"}),
        ({"approve": "fail"}, {"Check": "completed", "Approve": "failed", "Merge": "not reached"}),
        ({"check": "wait"}, {"Check": "waiting", "Approve": "not reached"}),
    ],
)
def test_steps_are_coloured_by_their_state(
    script: dict[str, str], expected: dict[str, str]
) -> None:
    instance = started(flows.IfElse, script)
    svg = render_svg(build_diagram(flows.IfElse.graph), progress_of(instance))
    nodes = nodes_of(svg)
    fills = {
        "completed": "#e6f4ea",
        "failed": "#fdecea",
        "waiting": "#fff4dc",
        "not reached": "#f6f6f6",
    }
    for name, state in expected.items():
        node = nodes[f"tests.flows.{name}"]
        assert node.get("class") == f"hx-node hx-state-{state.replace(' ', '-')}"
        assert node.find(f"{SVG}rect").get("fill") == fills[state]  # type: ignore[union-attr]
        assert state in "".join(node.itertext())
    legend = [
        t.text
        for t in ET.fromstring(svg).iter(f"{SVG}text")
        if "hx-legend-text" in (t.get("class") or "")
    ]
    assert legend[:6] == ["completed", "running", "waiting", "failed", "not reached", "taken"]


def test_the_graph_says_queued_and_running_as_the_steps_panel_does() -> None:
    fresh = engine.start(engine.new_instance(flows.IfElse, {"script": {}}))
    assert fresh.active_steps == {flows.Check}
    owner = f"{QUEUE_OWNER_PREFIX}job"
    queued = evolve(fresh, lease_owner=owner)
    running = evolve(
        queued, running={flows.Check: Running("worker-1", datetime(2026, 1, 1, tzinfo=UTC))}
    )
    graph = build_diagram(flows.IfElse.graph)
    for instance, state, css in [(queued, "queued", "queued"), (running, "running", "active")]:
        svg = render_svg(graph, progress_of(instance))
        node = nodes_of(svg)[flows.Check.path()]
        assert node.get("class") == f"hx-node hx-state-{css}"
        assert state in "".join(node.itertext())
        assert state in legend_of(svg)
        assert "active" not in legend_of(svg)


def legend_of(svg: str) -> list[str | None]:
    return [
        t.text
        for t in ET.fromstring(svg).iter(f"{SVG}text")
        if "hx-legend-text" in (t.get("class") or "")
    ]


def saga_waiting() -> Any:
    return flows.run_to_rest(engine.start(engine.new_instance(flows.Saga, {"script": {}})))


def test_a_cancelled_and_compensated_instance_on_the_graph() -> None:
    now = datetime.now(UTC)
    instance = flows.run_to_rest(
        engine.cancel(saga_waiting(), now=now, reason="<b>stop</b>", compensate=True)
    )
    progress = progress_of(instance)
    assert progress.state(flows.Bill) is progress.state(flows.Hold) is StepState.COMPENSATED
    assert progress.state(flows.Mail) is StepState.COMPLETED  # nothing to undo
    assert progress.state(flows.Shipment) is StepState.CANCELLED
    assert progress.notes[flows.Bill].startswith("compensated at ")
    assert progress.notes[flows.Shipment].endswith('before it ended; reason: "<b>stop</b>"')
    assert (flows.Hold, "ok", flows.Mail) in progress.taken  # compensations take no edge
    svg = render_svg(build_diagram(flows.Saga.graph), progress)
    nodes = nodes_of(svg)
    assert nodes["tests.flows.Bill"].get("class") == "hx-node hx-state-compensated"
    shipment = nodes["tests.flows.Shipment"]
    assert shipment.get("class") == "hx-node hx-state-cancelled"
    assert shipment.find(f"{SVG}rect").get("fill") == "#eceff1"  # type: ignore[union-attr]
    assert "&lt;b&gt;stop&lt;/b&gt;" in svg
    legend = legend_of(svg)
    assert legend[:5] == ["completed", "running", "waiting", "failed", "not reached"]
    assert "compensated" in legend
    assert "cancelled" in legend
    assert "compensating" not in legend  # only the states the instance shows


def test_the_step_compensating_now_and_the_failure_that_started_it() -> None:
    failing = engine.start(engine.new_instance(flows.FailingSaga, {"script": {"bill": "fail"}}))
    while not failing.compensating:  # run up to the failure, not its compensations
        failing = engine.apply(
            failing,
            [execute_step(failing, item) for item in engine.runnable(failing)],
            now=datetime.now(UTC),
        )
    progress = progress_of(failing)
    assert progress.state(flows.Bill) is StepState.FAILED
    assert "its completed steps are compensated" in progress.notes[flows.Bill]
    assert progress.state(flows.Hold) is StepState.COMPENSATING
    assert progress.state(flows.Mail) is StepState.COMPLETED
    svg = render_svg(build_diagram(flows.FailingSaga.graph), progress)
    hold = nodes_of(svg)["tests.flows.Hold"].find(f"{SVG}rect")
    assert hold is not None
    assert hold.get("stroke-dasharray") == "5 3"  # dashed, like its legend swatch
    root = ET.fromstring(svg)
    (swatch,) = [
        g.find(f"{SVG}rect")
        for g in root.iter(f"{SVG}g")
        if g.get("class") == "hx-legend-item hx-state-compensating"
    ]
    assert swatch is not None
    assert swatch.get("stroke-dasharray") == "5 3"
    assert "cancelled" not in legend_of(svg)


def test_an_instance_never_cancelled_keeps_the_short_legend() -> None:
    svg = render_svg(build_diagram(flows.Saga.graph), progress_of(saga_waiting()))
    assert legend_of(svg)[:6] == [
        "completed",
        "running",
        "waiting",
        "failed",
        "not reached",
        "taken",
    ]
    assert not {"compensating", "compensated", "cancelled"} & set(legend_of(svg))


def test_taken_edges_are_marked() -> None:
    instance = started(flows.IfElse)
    root = ET.fromstring(render_svg(build_diagram(flows.IfElse.graph), progress_of(instance)))
    titles = {
        g.findtext(f"{SVG}title"): g.get("class", "")
        for g in root.iter(f"{SVG}g")
        if "hx-edge" in (g.get("class") or "").split()
    }
    assert "hx-edge-taken" in titles["Check —valid→ Approve"]
    assert "hx-edge-idle" in titles["Check —invalid→ Reject"]


def test_everything_in_the_svg_is_escaped() -> None:
    workflow = odd_workflow()
    instance = started(workflow)
    svg = render_svg(build_diagram(workflow.graph), progress_of(instance))
    ET.fromstring(svg)  # still well-formed
    assert "<script" not in svg
    assert "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt;" in svg
    assert "&lt;locals&gt;" in svg  # the steps' dotted paths, in data-step and tooltips
    assert "a&quot;b\\c" in svg


# --- Mermaid and DOT ---------------------------------------------------------------------------


def test_mermaid() -> None:
    text = to_mermaid(build_diagram(flows.Routed.graph))
    lines = text.splitlines()
    assert lines[0] == "flowchart TD"
    assert '    entry(("start")) --> s0' in lines
    assert '    s0["Check"]' in lines
    assert re.search(r'^    s0 -\.->\|"valid"\| s\d+$', text, re.MULTILINE)  # a route
    assert re.search(r'^    s0 -->\|"invalid"\| s\d+$', text, re.MULTILINE)
    assert re.search(r'^    s\d+\(\["Done"\]\)$', text, re.MULTILINE)  # an end
    assert "==>" in to_mermaid(build_diagram(flows.FanOut.graph))  # a fan-out
    assert text.endswith("\n")


def test_mermaid_escapes_labels() -> None:
    text = to_mermaid(build_diagram(odd_workflow().graph))
    assert '|"#lt;script#gt;alert(#quot;x#quot;)#lt;/script#gt; / a#quot;b\\c"|' in text
    assert "<" not in text
    assert "#lt;locals#gt;" in text


def test_dot() -> None:
    text = to_dot(build_diagram(flows.FanOut.graph))
    assert text.startswith('digraph "FanOut" {\n')
    assert '    s0 [label="Split", tooltip="tests.flows.Split"];' in text
    assert re.search(r'^    s0 -> s\d+ \[label="ok", style=bold\];$', text, re.MULTILINE)
    assert "style=dashed" in to_dot(build_diagram(flows.Routed.graph))
    odd = to_dot(build_diagram(odd_workflow().graph))
    assert 'label="<script>alert(\\"x\\")</script> / a\\"b\\\\c"' in odd


# --- the management command -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("fmt", "render"),
    [(None, to_mermaid), ("mermaid", to_mermaid), ("dot", to_dot), ("svg", render_svg)],
)
def test_the_command_prints_the_graph(fmt: str | None, render: Any) -> None:
    out = StringIO()
    options = {} if fmt is None else {"format": fmt}
    call_command("hephaestus_graph", "tests.flows.FanOut", stdout=out, **options)
    assert out.getvalue() == render(build_diagram(flows.FanOut.graph))


@pytest.mark.parametrize(
    ("name", "suggestion"),
    [
        ("tests.flows.FanOt", "tests.flows.FanOut"),
        ("fanout", "tests.flows.FanOut"),
        ("FanOt", "tests.flows.FanOut"),
        ("os.path", ""),
    ],
)
def test_an_unknown_workflow_names_the_close_ones(name: str, suggestion: str) -> None:
    with pytest.raises(CommandError) as raised:
        call_command("hephaestus_graph", name)
    message = str(raised.value)
    assert message.startswith(f"No workflow is registered as {name!r}")
    assert "never imported by name" in message
    if suggestion:
        assert f"Did you mean: {suggestion}" in message


@pytest.mark.parametrize("name", ["FanOut", "flows.FanOut"])
def test_the_command_takes_a_unique_class_name(name: str) -> None:
    out = StringIO()
    call_command("hephaestus_graph", name, stdout=out)
    assert out.getvalue() == to_mermaid(build_diagram(flows.FanOut.graph))


def twin_in_one_place() -> type[Workflow]:
    class Twin(Workflow):
        start = flows.Check
        transitions = flows.Routed.transitions

    return Twin


def twin_in_another() -> type[Workflow]:
    class Twin(Workflow):
        start = flows.Check
        transitions = flows.Routed.transitions

    return Twin


def test_an_ambiguous_class_name_lists_the_dotted_paths() -> None:
    twins = [twin_in_one_place(), twin_in_another()]  # kept alive: the registry is weak
    with pytest.raises(CommandError) as raised:
        call_command("hephaestus_graph", "Twin")
    message = str(raised.value)
    assert message.startswith("'Twin' is ambiguous: 2 registered workflows are named so: ")
    for twin in twins:
        assert twin.path() in message
    assert "Give the dotted path" in message
    for name in (twins[1].path(), "twin_in_another.<locals>.Twin"):
        out = StringIO()
        call_command("hephaestus_graph", name, stdout=out)
        assert out.getvalue() == to_mermaid(build_diagram(twins[1].graph))


def test_a_name_never_imports_anything() -> None:
    assert "this" not in sys.modules
    for name in ("this", "this.Zen", "OrderedDict", "collections.OrderedDict"):
        with pytest.raises(CommandError, match="No workflow is registered as"):
            call_command("hephaestus_graph", name)
    assert "this" not in sys.modules


def test_the_command_rejects_an_unknown_format() -> None:
    with pytest.raises(CommandError, match="invalid choice: 'png'"):
        call_command("hephaestus_graph", "tests.flows.FanOut", "--format", "png")
    with pytest.raises(CommandError, match="--format must be one of dot, mermaid, svg"):
        call_command("hephaestus_graph", "tests.flows.FanOut", format="png")
