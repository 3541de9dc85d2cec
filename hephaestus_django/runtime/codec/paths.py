"""Paths in error messages, and the lazy trail the recursion keeps instead of them.

A path names a value the way Python would reach it (``context.initial.items[3].price``).
While encoding or decoding, only a cheap :data:`Trail` is kept; it becomes a path string
only when something is refused.
"""

from __future__ import annotations

import json
from typing import TypeAlias

from hephaestus_django.runtime.codec.refusals import SURROGATE

# A linked list of keys from the root to the current value, newest first. Building one tuple
# per container entry is cheaper than formatting a path string that is almost never needed.
Trail: TypeAlias = "tuple[Trail, str | int] | None"


class Failure(Exception):
    """Carries a refusal out of the recursion; the public functions turn it into an error."""

    def __init__(self, trail: Trail, problem: str) -> None:
        super().__init__(problem)
        self.trail = trail
        self.problem = problem


def format_path(parent: str, key: str | int) -> str:
    """Append one key or list index to a path, the way it would be written in Python.

    ``format_path("context", "initial") == "context.initial"``,
    ``format_path("context.initial", "order id") == 'context.initial["order id"]'`` and
    ``format_path("items", 3) == "items[3]"``. Used for every path in error messages so that
    all layers name values alike.
    """
    if isinstance(key, str):
        if key.isidentifier():
            return f"{parent}.{key}" if parent else key
        # A key with a lone surrogate is shown escaped so the message itself stays printable.
        quoted = json.dumps(key, ensure_ascii=SURROGATE.search(key) is not None)
        return f"{parent}[{quoted}]"
    return f"{parent}[{key}]"


def format_trail(prefix: str, trail: Trail) -> str:
    keys: list[str | int] = []
    while trail is not None:
        trail, key = trail
        keys.append(key)
    path = prefix
    for key in reversed(keys):
        path = format_path(path, key)
    return path
