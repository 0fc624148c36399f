"""Whether bytes can go into a JSON string as they are, or need the escaper first.

Both JSON paths of the driver ask it: formats.py for a format=json line, cloudwatch.py for a whole
PutLogEvents batch of messages. Clean text (the usual case) then skips the escaper, which costs
about 3 ns a character.
"""

from __future__ import annotations

# What a JSON string must escape: quote, backslash and the C0 controls. Non-ASCII is kept.
_ESCAPED = bytes(range(0x20)) + b'"\\'
# The same as ints, quote and backslash first (JSON logs hit those at once): ``int in bytes``
# is one memchr, where a one-byte ``bytes in bytes`` goes through the general search.
_ESCAPED_EACH = tuple(b'"\\' + bytes(range(0x20)))
# Below this, one translate of the text beats 34 memchr calls (their per-call cost); above it,
# the memchr calls win. Measured with timeit (Python 3.11, the 2-core test machine), translate
# vs memchr: 200 bytes 0.3 vs 1.9 us, 3-4 KiB about even, 1 MiB 0.69 vs 0.47 ms.
_MEMCHR_FROM = 4096


def needs_json_escape(data: bytes) -> bool:
    """True if ``data`` holds a byte a JSON string must escape (``"``, ``\\``, below 0x20)."""
    if len(data) < _MEMCHR_FROM:
        return len(data.translate(None, _ESCAPED)) != len(data)
    return any(map(data.__contains__, _ESCAPED_EACH))
