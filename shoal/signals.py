"""Signal names as users write them (``--stop-signal``, Compose's
``stop_signal``): checked by the ControlAPI, used by the runtimes to stop
tasks and to say which signal they sent."""

from __future__ import annotations

import re
import signal


def parse_signal(name: str) -> int:
    """The signal number for a stop_signal value: "SIGTERM", "TERM", "term",
    "15" or "SIGRTMIN+3". An empty string means SIGTERM. Raises ValueError for
    anything else."""
    text = name.strip().upper()
    if not text:
        return int(signal.SIGTERM)
    if text.isdigit():
        number = int(text)
        if number not in {int(s) for s in signal.valid_signals()}:
            raise ValueError(f"unknown signal {name!r}")
        return number
    if not text.startswith("SIG"):
        text = "SIG" + text
    rt = re.fullmatch(r"SIGRTMIN\+(\d+)|SIGRTMAX-(\d+)", text)
    if rt:
        number = signal.SIGRTMIN + int(rt[1]) if rt[1] is not None else signal.SIGRTMAX - int(rt[2])
        if not signal.SIGRTMIN <= number <= signal.SIGRTMAX:
            raise ValueError(f"unknown signal {name!r}")
        return int(number)
    try:
        return int(signal.Signals[text])
    except KeyError:
        raise ValueError(f"unknown signal {name!r}") from None


def signal_name(number: int) -> str:
    """How logs and messages name a signal: "SIGTERM"; "signal 40" for the
    real-time signals between RTMIN and RTMAX, which have no name."""
    try:
        return signal.Signals(number).name
    except ValueError:
        return f"signal {number}"
