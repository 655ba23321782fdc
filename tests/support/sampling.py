"""Watching something in the background while a test does something else.

``Sampling`` calls ``sample()`` every ``interval`` seconds in a thread of its
own, from ``with`` to the end of the block: for claims about every moment of
an operation ("never fewer than N running", "at most M at once").
"""

from __future__ import annotations

import threading


class Sampling:
    def __init__(self, interval: float, name: str = "sampler") -> None:
        self.interval = interval
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)

    def sample(self) -> None:
        raise NotImplementedError

    def _run(self) -> None:
        while not self._stop.is_set():
            self.sample()
            self._stop.wait(self.interval)

    def __enter__(self) -> Sampling:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
