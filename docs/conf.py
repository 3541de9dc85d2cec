"""Sphinx configuration of the hephaestus-django documentation site (``make docs``).

Pages are Markdown (MyST). The API reference is autodoc of the public import paths, so
Django is configured here, with a PostgreSQL database that is never connected to: importing
the package's modules needs the app registry, not a server.
"""

from __future__ import annotations

import sys
from importlib import metadata
from pathlib import Path

import django
from django.conf import settings

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))  # a checkout documents itself, installed or not

if not settings.configured:
    settings.configure(
        INSTALLED_APPS=[
            "django.contrib.admin",
            "django.contrib.auth",
            "django.contrib.contenttypes",
            "django.contrib.sessions",
            "django.contrib.messages",
            "django.contrib.postgres",
            "hephaestus_django",
        ],
        DATABASES={"default": {"ENGINE": "django.db.backends.postgresql", "NAME": "docs"}},
        USE_TZ=True,
    )
    django.setup()

project = "hephaestus-django"
author = "hephaestus-django contributors"
copyright = "hephaestus-django contributors"
try:
    release = metadata.version("hephaestus-django")
except metadata.PackageNotFoundError:  # pragma: no cover - a checkout that was never installed
    release = "unreleased"

extensions = [
    "myst_parser",
    "sphinx.ext.autodoc",
]
source_suffix = {".md": "markdown"}
exclude_patterns = ["_build"]
myst_enable_extensions = ["colon_fence", "deflist"]
myst_heading_anchors = 3

html_theme = "furo"
html_title = "hephaestus-django"
html_static_path = ["_static"]

autodoc_member_order = "bysource"
autodoc_typehints = "description"
autodoc_typehints_format = "short"
autodoc_default_options = {"members": True}

# Every reference is checked (-n in `make docs`). Standard-library and Django names are not
# linked (no intersphinx: the build makes no network access), so they are let through here.
nitpicky = True
nitpick_ignore_regex = [
    (
        "py:(class|exc|obj|data|func|meth|mod)",
        r"(builtins|collections|typing|uuid|datetime|decimal)\b.*",
    ),
    (
        "py:(class|exc|obj|data|func|meth|mod)",
        r"(enum|threading|logging|types|json|abc|asyncio)\b.*",
    ),
    ("py:(class|exc|obj|data|func|meth|mod)", r"(django|procrastinate|psycopg|opentelemetry)\b.*"),
    ("py:(class|obj)", r"(T|Any|Self|NoneType|ellipsis|EllipsisType|UUID|timedelta|datetime)"),
    ("py:(class|obj)", r"(TracerProvider|MeterProvider)"),
]


def _public_reference(app, env, node, contnode):  # type: ignore[no-untyped-def]
    """Resolve an internal path to where the API page documents it.

    Type hints name the module a class is defined in (``hephaestus_django.core.instance
    .Instance``); the API page documents the path users import (``hephaestus_django.Instance``).
    A reference made from a docstring to an internal name that is not documented is shown as
    code rather than a broken link: the reference lists only what users are meant to import.
    """
    from docutils import nodes

    target = node.get("reftarget", "")
    within = target.startswith("hephaestus_django.") or (node.get("py:module") or "").startswith(
        "hephaestus_django"
    )
    if node.get("refdomain") != "py" or not within:
        return None
    domain = env.get_domain("py")
    name = target.rsplit(".", 1)[-1]
    candidates = [
        documented
        for documented in domain.objects
        if documented.rsplit(".", 1)[-1] == name and documented != target
    ]
    if len(candidates) >= 1:
        preferred = min(candidates, key=lambda path: path.count("."))
        resolved = domain.resolve_xref(
            env, node["refdoc"], app.builder, node["reftype"], preferred, node, contnode
        )
        if resolved is not None:
            return resolved
    return nodes.literal(target, contnode.astext())


def setup(app):  # type: ignore[no-untyped-def]
    app.connect("missing-reference", _public_reference)
