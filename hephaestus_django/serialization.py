"""The JSON encoder/decoder pair for ``JSONField(encoder=..., decoder=...)``.

Django's ``JSONField`` and psycopg's ``Jsonb`` dumper only accept a ``json`` encoder and
decoder *class*; these two adapt :mod:`hephaestus_django.runtime.codec` to that shape, so a
value written through the field is checked and tagged by the same rules as the storage
backends use, and comes back equal and of the same type. Plain ``json``; Django is not
imported here.

    state = models.JSONField(encoder=HephaestusJSONEncoder, decoder=HephaestusJSONDecoder)
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

from hephaestus_django.runtime import codec

__all__ = ["HephaestusJSONDecoder", "HephaestusJSONEncoder"]


class HephaestusJSONEncoder(json.JSONEncoder):
    """Encode with :func:`codec.encode` and write with :func:`codec.dumps_encoded`.

    Works as ``json.dumps(value, cls=HephaestusJSONEncoder)``, through ``json.dump`` (which
    calls :meth:`iterencode`) and as ``functools.partial(json.dumps, cls=...)`` for psycopg.
    The stored form is fixed, so the usual options (``indent``, ``separators``,
    ``sort_keys``, ``ensure_ascii``, ``allow_nan``, ``skipkeys``, ``default``) are accepted
    and ignored: the output is always compact UTF-8 text that round-trips exactly, and a value
    that cannot is refused with :class:`~hephaestus_django.core.errors.SerializationError`
    (a ``ValueError``) naming its path.
    """

    def encode(self, o: Any) -> str:
        """Return the stored JSON text of ``o``."""
        return codec.dumps_encoded(codec.encode(o))

    def iterencode(self, o: Any, _one_shot: bool = False) -> Iterator[str]:
        """Return the text of :meth:`encode` as one chunk.

        Encoding happens here, not lazily, so a refused value raises before ``json.dump``
        writes anything to its file.
        """
        return iter((self.encode(o),))


class HephaestusJSONDecoder(json.JSONDecoder):
    """Parse JSON text and rebuild the tagged values with :func:`codec.decode`.

    Works as ``json.loads(text, cls=HephaestusJSONDecoder)`` for ``str`` and ``bytes``.
    Data :func:`codec.encode` could not have written raises
    :class:`~hephaestus_django.core.errors.CorruptInstanceError`.
    """

    def decode(self, s: str, *args: Any, **kwargs: Any) -> Any:
        """Return the Python value stored as the JSON text ``s``."""
        return codec.decode(super().decode(s, *args, **kwargs))
