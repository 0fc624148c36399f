"""Byte sizes as people write them, read one way for every option and setting that takes one.

The grammar is Docker's ``units.RAMInBytes`` (go-units), which Docker's own size options use
(``--log-opt max-size``, ``--memory``), so a size that works there works here: a number with
an optional fraction, an optional space, then an optional unit ``k``, ``m``, ``g``, ``t`` or
``p`` (any case) that may be followed by ``b`` or ``ib``, or a bare ``b``. Every unit is a power
of 1024, ``MB`` and ``MiB`` alike; a fraction of a byte is dropped, as Docker does.

Callers keep their own bounds and their own error text, which names the option or setting.
"""

from __future__ import annotations

import re
from decimal import Decimal

# ASCII digits only: str patterns' \d would take "²" or Arabic-Indic digits.
_SIZE = re.compile(r"([0-9]+(?:\.[0-9]+)?) ?(?:([kmgtp])(?:i?b)?|b)?", re.IGNORECASE)
_POWERS = {None: 0, "k": 1, "m": 2, "g": 3, "t": 4, "p": 5}


def parse_bytes(text: str) -> int:
    """The bytes ``text`` means (``262144``, ``256k``, ``20m``, ``1.5GiB``, ``50 MB``); ValueError
    if it is not a size. White space around it is ignored."""
    m = _SIZE.fullmatch(text.strip())
    if not m:
        raise ValueError(f"not a size: {text!r}")
    unit = m.group(2).lower() if m.group(2) else None
    return int(Decimal(m.group(1)) * (1 << (10 * _POWERS[unit])))  # exact, then truncated
