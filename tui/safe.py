"""Literal, visible rendering of untrusted strings (device data, file contents).

Textual parses markup in plain ``str`` handed to most widgets, and terminals interpret control
characters; every string that came from a device or a file goes through :func:`safe` (for a
``rich.text.Text``) or :func:`plain` (for a ``str`` used with ``markup=False``).
"""

from __future__ import annotations

from rich.text import Text

from engine.jsonline import UNSAFE

ELLIPSIS = "…"


def _visible(ch: str) -> str:
    """The visible stand-in for one character (itself when it is harmless)."""
    code = ord(ch)
    if code == 0x1B:
        return "␛"
    if code < 0x20:
        return chr(0x2400 + code)  # ␀ … ␟ (␉ for tab, ␊ for newline)
    if code == 0x7F:
        return "␡"
    if 0x80 <= code <= 0x9F:
        return f"\\x{code:02x}"
    if code in UNSAFE:  # line/paragraph separators, bidirectional and zero-width characters
        return f"\\u{code:04x}"
    return ch


# Every character that JSON output escapes is made visible on the console too.
_TABLE = {c: _visible(chr(c)) for c in [*range(0x20), *UNSAFE]}


def plain(text: object, limit: int = 500) -> str:
    """``text`` as a ``str`` with control characters made visible, cut to ``limit`` characters
    (the last one an ellipsis when cut). Use it only where markup is off."""
    if text is None:
        return ""
    s = text if isinstance(text, str) else str(text)
    if limit > 0 and len(s) > limit:
        s = s[: max(limit - 1, 0)].translate(_TABLE)
        return s + ELLIPSIS
    return s.translate(_TABLE)


def safe(text: object, limit: int = 500, style: str = "") -> Text:
    """``text`` as a literal ``rich.text.Text`` (markup never interpreted) with control
    characters made visible, cut to ``limit`` characters with an ellipsis."""
    return Text(plain(text, limit), style=style, no_wrap=False, end="")
