"""``manage.py hephaestus_graph <workflow>``: print a workflow's graph as Mermaid, DOT or SVG.

The same graph the admin draws, for docs, reviews and wikis. The workflow is named by its dotted
path, or by its class name (any trailing part of the path) when no other registered workflow has
it. It is looked up in the workflow registry only (the workflows that the installed apps'
``workflows`` modules define): nothing is imported because a name on the command line says so.
"""

from __future__ import annotations

import argparse
import difflib
from typing import Any

from django.core.management.base import BaseCommand, CommandError

from hephaestus_django.core.errors import InvalidInstanceError, UnknownWorkflowError
from hephaestus_django.core.naming import short_name
from hephaestus_django.core.workflow import WorkflowDefinition, workflow_registry
from hephaestus_django.diagram import build_diagram, render_svg, to_dot, to_mermaid

RENDERERS = {"mermaid": to_mermaid, "dot": to_dot, "svg": render_svg}


class Command(BaseCommand):
    help = (
        "Print a registered workflow's graph as Mermaid (default), Graphviz DOT or SVG. "
        "Example: hephaestus_graph shop.workflows.OrderFulfilment --format dot"
    )
    requires_system_checks: list[str] = []  # reads the registry only; works before migrate

    def add_arguments(self, parser: argparse.ArgumentParser) -> None:
        parser.add_argument(
            "workflow",
            help="the workflow class's dotted path, or its class name if no other registered "
            "workflow has it",
        )
        parser.add_argument(
            "--format",
            choices=sorted(RENDERERS),
            default="mermaid",
            help="mermaid (default), dot or svg",
        )
        parser.add_argument(
            "--workflow-version",
            type=int,
            default=None,
            dest="workflow_version",
            help="for a versioned workflow, the version whose graph to print (default: its "
            "current version)",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        render = RENDERERS.get(options["format"])
        if render is None:
            raise CommandError(f"--format must be one of {', '.join(sorted(RENDERERS))}")
        found = find_workflow(options["workflow"])
        try:
            workflow = found.starting(options.get("workflow_version"))
        except InvalidInstanceError as error:
            raise CommandError(str(error)) from None
        self.stdout.write(render(build_diagram(workflow.graph)), ending="")


def find_workflow(path: str) -> type[WorkflowDefinition]:
    """The registered workflow named ``path``: its dotted path, or a unique trailing part of it.

    ``OrderWorkflow`` (or ``workflows.OrderWorkflow``) finds ``shop.workflows.OrderWorkflow``
    when no other registered workflow's path ends so; several do → a CommandError listing
    them. An unknown name → a CommandError naming the closest registered ones.
    """
    try:
        return workflow_registry.resolve(path)
    except UnknownWorkflowError:
        pass
    names = workflow_registry.names()
    ending = [name for name in names if path and name.endswith(f".{path}")]
    if len(ending) > 1:
        raise CommandError(
            f"{path!r} is ambiguous: {len(ending)} registered workflows are named so: "
            f"{', '.join(ending)}. Give the dotted path of the one you mean."
        )
    if ending:
        try:
            return workflow_registry.resolve(ending[0])
        except UnknownWorkflowError:  # garbage-collected meanwhile (defined in a function)
            pass
    by_short = {short_name(name).lower(): name for name in names}
    close = [name for name in names if short_name(name).lower() == short_name(path).lower()]
    close += [
        by_short[match]
        for match in difflib.get_close_matches(short_name(path).lower(), list(by_short), n=3)
    ]
    close += difflib.get_close_matches(path, names, n=3)
    suggestions = list(dict.fromkeys(close))[:5]
    hint = (
        f" Did you mean: {', '.join(suggestions)}?"
        if suggestions
        else f" Registered workflows: {', '.join(names) or 'none'}."
    )
    raise CommandError(
        f"No workflow is registered as {path!r}: workflows are found in the installed apps' "
        f"workflows.py modules, never imported by name.{hint}"
    )
