"""JSON lines that are safe to print: characters that could drive a terminal or hide text are
escaped as ``\\uXXXX``.

orjson escapes only the C0 controls. Device strings can hold DEL, C1 controls (U+009B is a
one-byte CSI to many terminals), bidirectional controls (U+202E reverses what follows) and
zero-width characters; alert lines carry those strings to stdout and to exports, where a terminal
or a log viewer shows them. Every JSON line iotwatch writes for people goes through :func:`dumps`.
"""

from __future__ import annotations

import re
from typing import Any

import orjson

# The characters escaped besides orjson's C0 controls, as code points.
UNSAFE: tuple[int, ...] = (
    0x7F,  # DEL
    *range(0x80, 0xA0),  # C1 controls
    0x061C,  # Arabic letter mark
    *range(0x200B, 0x2010),  # zero width space, non-joiner, joiner; LRM, RLM
    0x2028,  # line separator
    0x2029,  # paragraph separator
    *range(0x202A, 0x202F),  # LRE, RLE, PDF, LRO, RLO
    0x2060,  # word joiner
    *range(0x2066, 0x206A),  # LRI, RLI, FSI, PDI
    0xFEFF,  # zero width no-break space (byte-order mark)
)

# The same characters as UTF-8 byte sequences in orjson's output (which is valid UTF-8, so a
# lead byte never matches inside another character).
_UNSAFE_UTF8 = re.compile(b"|".join(re.escape(chr(c).encode()) for c in UNSAFE))


def _escape(match: re.Match[bytes]) -> bytes:
    return b"\\u%04x" % ord(match.group().decode())


def dumps(record: Any) -> bytes:
    """``record`` as one JSON line (with its ``\\n``), every unsafe character escaped."""
    out = orjson.dumps(record)
    if out.isascii() and b"\x7f" not in out:
        return out + b"\n"
    return _UNSAFE_UTF8.sub(_escape, out) + b"\n"
