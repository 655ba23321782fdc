"""Go-style durations (``300ms``, ``5s``, ``1m30s``) and sizes (``256m``, ``1GiB``).

Shared by the CLI (parsing flags) and the daemons (their own flags); values are
nanoseconds and bytes. Errors are ``ValueError`` with a one-line message that
says what is allowed.
"""

from __future__ import annotations

import re

_UNITS_NS = {
    "ns": 1,
    "us": 1_000,
    "µs": 1_000,
    "ms": 1_000_000,
    "s": 1_000_000_000,
    "m": 60 * 1_000_000_000,
    "h": 3600 * 1_000_000_000,
}
_DURATION_PART = re.compile(r"(\d+(?:\.\d*)?|\.\d+)(ns|us|µs|ms|s|m|h)")
_SIZE = re.compile(r"^(\d+(?:\.\d+)?)\s*([kmgt]?)(i?b?)$", re.IGNORECASE)
_SIZE_UNITS = {"": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40}


def parse_duration(text: str) -> int:
    """Nanoseconds of a Go duration; "0" alone is allowed."""
    s = text.strip()
    if s == "0":
        return 0
    pos, total = 0, 0.0
    if not s:
        raise ValueError(f'invalid duration "{text}": expected e.g. 300ms, 5s, 1m30s, 2h')
    while pos < len(s):
        m = _DURATION_PART.match(s, pos)
        if m is None:
            raise ValueError(f'invalid duration "{text}": expected e.g. 300ms, 5s, 1m30s, 2h')
        total += float(m.group(1)) * _UNITS_NS[m.group(2)]
        pos = m.end()
    return int(total)


def format_duration(ns: int) -> str:
    """The shortest Go-style spelling: 5s, 1m30s, 300ms, 0s."""
    if ns == 0:
        return "0s"
    if ns % 1_000_000_000:
        if ns < 1_000_000_000 and ns % 1_000_000 == 0:
            return f"{ns // 1_000_000}ms"
        return f"{ns / 1e9:g}s"
    secs = ns // 1_000_000_000
    h, rest = divmod(secs, 3600)
    m, s = divmod(rest, 60)
    out = (f"{h}h" if h else "") + (f"{m}m" if m else "") + (f"{s}s" if s else "")
    return out


def parse_size(text: str) -> int:
    """Bytes: plain, or with a binary unit (512k, 256m, 1g, 256MiB, 1GiB)."""
    m = _SIZE.match(text.strip())
    if m is None or (m.group(3) and m.group(3).lower() not in ("b", "ib")):
        raise ValueError(f'invalid size "{text}": expected bytes, optionally with k, m, g (e.g. 256m, 1GiB)')
    if m.group(3).lower() == "ib" and not m.group(2):
        raise ValueError(f'invalid size "{text}": expected bytes, optionally with k, m, g (e.g. 256m, 1GiB)')
    return int(float(m.group(1)) * _SIZE_UNITS[m.group(2).lower()])
