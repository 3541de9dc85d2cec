"""Every error a user can meet is importable from ``hephaestus_django`` itself.

A newcomer reads an error's name in the documentation or in a traceback and writes
``from hephaestus_django import ThatError`` to catch it; that must work for every public class of
``core/errors.py`` and for every error the README and the site's pages name.
"""

from __future__ import annotations

import builtins
import inspect
import re
from pathlib import Path

import hephaestus_django
from hephaestus_django.core import errors

REPO = Path(__file__).resolve().parents[2]
DOCUMENTATION = "\n".join(
    path.read_text() for path in [REPO / "README.md", *sorted((REPO / "docs").rglob("*.md"))]
)


def public_errors() -> dict[str, type[BaseException]]:
    """The exception classes ``core/errors.py`` defines (not those it imports), by name."""
    return {
        name: value
        for name, value in vars(errors).items()
        if not name.startswith("_")
        and inspect.isclass(value)
        and issubclass(value, BaseException)
        and value.__module__ == errors.__name__
    }


def test_every_public_error_is_exported_from_the_package() -> None:
    found = public_errors()
    assert "InstanceNotWaitingError" in found  # the list is not empty by accident
    for name, cls in found.items():
        assert name in hephaestus_django.__all__, f"{name} is not in hephaestus_django.__all__"
        assert getattr(hephaestus_django, name) is cls, f"hephaestus_django.{name} is not {cls}"


def test_the_errors_the_documentation_names_can_be_imported() -> None:
    from hephaestus_django import InstanceNotWaitingError, UnexpectedEventError

    assert issubclass(InstanceNotWaitingError, hephaestus_django.EngineError)
    assert issubclass(UnexpectedEventError, hephaestus_django.EngineError)
    named = set(re.findall(r"`(\w+(?:Error|NotFound|NotConfigured))`", DOCUMENTATION))
    assert {"InstanceNotWaitingError", "UnexpectedEventError"} <= named
    for name in named - set(vars(builtins)):
        assert name in hephaestus_django.__all__, f"the documentation names {name}, not exported"
