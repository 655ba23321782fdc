"""Drawing a block of lines that changes, such as a service's progress.

On a terminal the block is redrawn in place: the cursor goes back up to the
block's first line, each line is cleared and written again cut to the
terminal's width with ``…`` (so an earlier, longer drawing leaves nothing
behind), and whatever is below is cleared; a block taller than the terminal
keeps its first and last lines. Piped, a line is printed (whole) only when it
changed, so a log of the output has no repeats. ``say`` prints a line that
stays; ``error`` one for stderr.
"""

from __future__ import annotations

import os
import shutil
import sys
from collections.abc import Callable
from typing import TextIO

from shoal.cli.render import ellipsis

# Clear the line / everything below the cursor; move the cursor up N lines.
CLEAR_LINE = "\x1b[2K"
CLEAR_BELOW = "\x1b[J"


def _up(n: int) -> str:
    return f"\x1b[{n}A"


class Printer:
    """Draws a block of lines: in place on a terminal, as changed lines
    otherwise. Errors go to stderr (CLI.md), whatever happens to progress,
    or to ``errors`` when given (a caller that reports them its own way)."""

    def __init__(
        self,
        out: TextIO,
        width: int | None = None,
        height: int | None = None,
        errors: Callable[[str], None] | None = None,
    ) -> None:
        self.out = out
        self._errors = errors
        self.tty = out.isatty()
        self._width = width
        self._height = height
        self._drawn = 0
        self._last: list[str] = []

    def _size(self) -> os.terminal_size:
        try:
            return os.get_terminal_size(self.out.fileno())
        except (OSError, ValueError, AttributeError):
            return shutil.get_terminal_size()

    def width(self) -> int:
        return self._width if self._width is not None else self._size().columns

    def height(self) -> int:
        return self._height if self._height is not None else self._size().lines

    def _fit_height(self, lines: list[str]) -> list[str]:
        """A block no taller than the terminal (the cursor cannot go back
        above its top): the first lines, how many are left out, the last."""
        room = self.height() - 1
        if len(lines) <= room or room < 3:
            return lines
        kept = lines[: room - 2]
        return [*kept, f"... {len(lines) - len(kept) - 1} more lines", lines[-1]]

    def _fit(self, line: str) -> str:
        # One column spare: a line that fills the terminal exactly leaves some
        # terminals' cursor on the next line, and the redraw would drift.
        return ellipsis(line, self.width() - 1)

    def show(self, lines: list[str]) -> None:
        if self.tty:
            text = _up(self._drawn) if self._drawn else ""
            lines = self._fit_height(lines)
            text += "".join(CLEAR_LINE + self._fit(line) + "\n" for line in lines)
            self.out.write(text + CLEAR_BELOW)
            self._drawn = len(lines)
        else:
            for i, line in enumerate(lines):
                if i >= len(self._last) or self._last[i] != line:
                    self.out.write(line + "\n")
        self._last = lines
        self.out.flush()

    def say(self, line: str) -> None:
        """A line that stays, below what is drawn."""
        self.out.write((CLEAR_LINE + self._fit(line) if self.tty else line) + "\n")
        self.out.flush()
        self._drawn = 0
        self._last = []

    def error(self, line: str) -> None:
        if self._errors is not None:
            self._errors(line)
            return
        sys.stderr.write(line + "\n")
        sys.stderr.flush()
