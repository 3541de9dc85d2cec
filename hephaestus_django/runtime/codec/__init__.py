"""Turn workflow values into JSON that PostgreSQL jsonb keeps, and turn that JSON back.

The storage promise is: whatever ``put()`` accepts, ``get()`` returns equal and of the same
type, and whatever cannot make that trip is refused before anything is written, with the path
of the offending value. This package is where that promise is kept, in plain Python so that the
in-memory storage, the PostgreSQL storage and the Django JSON field all share one set of rules.

* :func:`encode` keeps JSON-native values as they are (so ``state @> '{...}'`` containment
  queries and GIN indexes work on them) and writes the few other types users need as a tagged
  dict ``{"__type__": NAME, "value": ...}``. It refuses everything else.
* :func:`decode` is its inverse. It only ever builds the fixed set of types below; a name in
  the data never selects a class.
* :func:`dumps` writes the text PostgreSQL stores (:func:`dumps_encoded`, faster, for what
  :func:`encode` has just returned). jsonb keeps numbers as ``numeric`` and
  prints them without an exponent, so a float written as ``1e+16`` would come back as the int
  ``10000000000000000``; ``dumps`` writes such floats positionally (``10000000000000000.0``).
* :func:`loads` reads text back.

Tagged forms (``NAME``: ``value``)::

    datetime   "2024-03-31T02:30:00+02:00[Europe/Paris]"  ISO 8601; a ZoneInfo key in brackets
    date       "2024-03-31"
    time       "10:30:00+01:00" or "10:30:00[Europe/Paris]"
    timedelta  [days, seconds, microseconds]
    Decimal    str(value), e.g. "-1.50E+3", "NaN", "-Infinity"
    UUID       "12345678-1234-5678-1234-567812345678"
    bytes      standard base64 with padding
    tuple      [element, ...]
    set        [element, ...] sorted by each encoded element's dumps() text, so equal sets
    frozenset  are stored as equal JSON
    dict       {...}  a user dict that itself has a "__type__" key, escaped

Paths name a value the way Python would reach it: ``context.initial.items[3].price``, with
``["order id"]`` for keys that are not identifiers. A tuple's elements are ``name[i]``. A set
has no order a user could point at, so :func:`encode` reports a bad set element at the set's
own path, and the message says it is an element (and where inside that element, if deeper).
:func:`decode` reports ``name[i]``, counting in the stored (sorted) list, where it does exist.

Besides values of other types, :func:`encode` refuses what would not come back intact: float
NaN and infinities, non-str dict keys, strings with U+0000 or lone surrogates, ints of more
than 4300 digits, reference cycles, nesting deeper than 100 containers, and datetimes or
times whose tzinfo is neither ``ZoneInfo`` (with a key) nor ``timezone`` (in whole seconds).
A ``timezone``'s optional name is not kept; it takes no part in equality.

The package is split by job; only the names in ``__all__`` are public:

* ``encoding``: :func:`encode` and :data:`TYPE_KEY`
* ``decoding``: :func:`decode`, and :func:`is_plain` / :func:`is_plain_jsonb` (when decoding
  can be skipped)
* ``text``: :func:`dumps`, :func:`dumps_encoded`, :func:`loads` and :data:`JSON`
* ``paths``: :func:`format_path` and the lazy trail that becomes a path only on refusal
* ``refusals``: the shared limits and the wording of refusals
"""

from hephaestus_django.runtime.codec.decoding import decode, is_plain, is_plain_jsonb
from hephaestus_django.runtime.codec.encoding import TYPE_KEY, encode
from hephaestus_django.runtime.codec.paths import format_path
from hephaestus_django.runtime.codec.text import JSON, dumps, dumps_encoded, loads

__all__ = [
    "JSON",
    "TYPE_KEY",
    "decode",
    "dumps",
    "dumps_encoded",
    "encode",
    "format_path",
    "is_plain",
    "is_plain_jsonb",
    "loads",
]
