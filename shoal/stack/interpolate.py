"""Variables in Compose files, as Compose substitutes them.

In every string value (keys are left alone):

    $$              a literal $
    $VAR ${VAR}     VAR's value; unset: an empty string, with a warning
    ${VAR:-word}    word when VAR is unset or empty      ${VAR-word}  only when unset
    ${VAR:?msg}     an error saying msg when unset or empty  ${VAR?msg}  only when unset
    ${VAR:+word}    word when VAR is set and not empty   ${VAR+word}  when set

``word`` may hold variables itself (``${A:-${B}}``). Values come from the
deploying shell's environment, then from the ``.env`` beside the first
file (the environment wins). A ``$`` followed by anything else is an
error: write ``$$`` for a literal one.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from typing import Any

from shoal.stack.located import LList, LMap, Loc, StackError

_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_OPERATORS = (":-", ":?", ":+", "-", "?", "+")

Warn = Callable[[str], None]


class _Template:
    def __init__(self, text: str, env: Mapping[str, str], where: str, loc: Loc | None, warn: Warn) -> None:
        self.text = text
        self.env = env
        self.where = where
        self.loc = loc
        self.warn = warn

    def fail(self, why: str) -> StackError:
        return StackError(f'{self.where}: invalid interpolation in "{self.text[:80]}": {why}', self.loc)

    def value(self, name: str) -> str:
        if name not in self.env:
            self.warn(f"{self.where}: variable {name} is not set; using an empty string")
            return ""
        return self.env[name]

    def expand(self, start: int = 0, stop: str = "") -> tuple[str, int]:
        """Expand from start until the character `stop` at this level (or
        the end); the text and the index after it."""
        text, i = self.text, start
        out: list[str] = []
        while i < len(text):
            c = text[i]
            if stop and c == stop:
                return "".join(out), i + 1
            if c != "$":
                out.append(c)
                i += 1
                continue
            nxt = text[i + 1] if i + 1 < len(text) else ""
            if nxt == "$":
                out.append("$")
                i += 2
            elif nxt == "{":
                expanded, i = self.braced(i + 2)
                out.append(expanded)
            elif m := _NAME.match(text, i + 1):
                out.append(self.value(m.group()))
                i = m.end()
            else:
                raise self.fail('a "$" must start a variable ($VAR, ${VAR}); write $$ for a "$"')
        if stop:
            raise self.fail('"${" is not closed with "}"')
        return "".join(out), i

    def braced(self, start: int) -> tuple[str, int]:
        """${NAME[op word]} from just after "${"."""
        m = _NAME.match(self.text, start)
        if m is None:
            raise self.fail('expected a variable name after "${"')
        name, i = m.group(), m.end()
        if self.text.startswith("}", i):
            return self.value(name), i + 1
        if i >= len(self.text):
            raise self.fail('"${" is not closed with "}"')
        op = next((o for o in _OPERATORS if self.text.startswith(o, i)), None)
        if op is None:
            raise self.fail(f'unexpected "{self.text[i : i + 1]}" after ${{{name}')
        # The word's own unset variables matter only if the word is used.
        pending: list[str] = []
        warn, self.warn = self.warn, pending.append
        try:
            word, end = self.expand(i + len(op), stop="}")
        finally:
            self.warn = warn
        value = self.env.get(name)
        empty = value is None or (op.startswith(":") and value == "")
        used = empty if op in (":-", "-") else (not empty if op in (":+", "+") else False)
        for message in pending if used else []:
            self.warn(message)
        if op in (":-", "-"):
            return (word if empty else value or ""), end
        if op in (":?", "?"):
            if empty:
                raise StackError(
                    f"{self.where}: required variable {name} is missing a value"
                    + (f": {word}" if word else ""),
                    self.loc,
                )
            return value or "", end
        return ("" if empty else word), end  # :+ and +


def substitute(text: str, env: Mapping[str, str], where: str, loc: Loc | None, warn: Warn) -> str:
    """One string with its variables substituted."""
    if "$" not in text:
        return text
    return _Template(text, env, where, loc, warn).expand()[0]


def interpolate(value: Any, env: Mapping[str, str], where: str, warn: Warn, loc: Loc | None = None) -> Any:
    """The value with every string in it substituted (a new tree; the
    locations carried over). `where` names the value in errors."""
    if isinstance(value, LMap):
        out = LMap(value.loc)
        for key, item in value.items():
            out.put(
                key, interpolate(item, env, f"{where}.{key}", warn, value.at(key)), value.key_locs.get(key)
            )
        return out
    if isinstance(value, LList):
        items = LList(value.loc)
        for index, item in enumerate(value):
            items.add(interpolate(item, env, f"{where}[{index}]", warn, value.at(index)), value.at(index))
        return items
    if isinstance(value, str):
        return substitute(value, env, where, loc, warn)
    return value
