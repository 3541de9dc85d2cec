"""How classes are named in storage and in the context."""

from __future__ import annotations

import re

_CAMEL_BOUNDARY = re.compile(r"(?<=[a-z0-9])(?=[A-Z])|(?<=[A-Z])(?=[A-Z][a-z])")


def dotted_path(cls: type) -> str:
    """The name a class is stored under: ``module.QualName``."""
    return f"{cls.__module__}.{cls.__qualname__}"


def snake_case(name: str) -> str:
    """``ChargePayment`` -> ``charge_payment``; ``HTTPCall`` -> ``http_call``."""
    return _CAMEL_BOUNDARY.sub("_", name).lower()


def short_name(path: str) -> str:
    """The last component of a dotted path, for messages and the admin."""
    return path.rsplit(".", 1)[-1]


def with_article(name: str) -> str:
    """``"an OrderWorkflow"``, ``"a Fulfilment"``: the indefinite article by the name's first
    letter (a vowel takes "an"), for messages that name a workflow as one of its kind."""
    return f"{'an' if name[:1].lower() in 'aeiou' else 'a'} {name}"
