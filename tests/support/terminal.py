"""A real pseudo-terminal for tests of ``exec -it`` and ``run -it``.

``Terminal`` starts a command as the session leader of a new pty (so the
pty is its controlling terminal: keys typed on the master reach it raw once
it has put the terminal in raw mode, and a resize of the master sends it
SIGWINCH), reads everything it prints in a thread, and lets the test type,
resize and wait for text, with deadlines.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import struct
import subprocess
import termios
import threading
import time


class Terminal:
    def __init__(self, argv: list[str], env: dict[str, str], rows: int = 30, cols: int = 100) -> None:
        self.master, slave = os.openpty()
        self.resize(rows, cols)
        self.saved = termios.tcgetattr(slave)
        self.proc = subprocess.Popen(
            argv,
            stdin=slave,
            stdout=slave,
            stderr=slave,
            env=env,
            start_new_session=True,
            # The new session's controlling terminal: the pty.
            preexec_fn=lambda: fcntl.ioctl(0, termios.TIOCSCTTY, 0),
        )
        self.slave = slave
        self._output = bytearray()
        self._lock = threading.Lock()
        self._seen = 0
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        while True:
            try:
                data = os.read(self.master, 4096)
            except OSError:
                return
            if not data:
                return
            with self._lock:
                self._output += data

    @property
    def output(self) -> str:
        with self._lock:
            return self._output.decode(errors="replace")

    def type(self, text: str) -> None:
        os.write(self.master, text.encode())

    def resize(self, rows: int, cols: int) -> None:
        fcntl.ioctl(self.master, termios.TIOCSWINSZ, struct.pack("HHHH", rows, cols, 0, 0))

    def expect(self, text: str, timeout: float = 30.0) -> str:
        """Wait until text appears in what was printed since the last
        expect; that part of the output."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self._lock:
                fresh = self._output[self._seen :].decode(errors="replace")
                at = fresh.find(text)
                if at >= 0:
                    self._seen += len(fresh[: at + len(text)].encode())
                    return fresh[: at + len(text)]
            if self.proc.poll() is not None and text not in self.output[self._seen :]:
                time.sleep(0.2)  # the last output may still be in flight
                if text not in self.output[self._seen :]:
                    break
            time.sleep(0.05)
        raise AssertionError(
            f"{text!r} did not appear within {timeout}s; the terminal shows:\n{self.output[-2000:]}"
        )

    def wait(self, timeout: float = 30.0) -> int:
        return self.proc.wait(timeout)

    def attributes_restored(self) -> bool:
        """Whether the terminal's modes are those it had before (cooked)."""
        return termios.tcgetattr(self.slave) == self.saved

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        for fd in (self.master, self.slave):
            with contextlib.suppress(OSError):
                os.close(fd)
