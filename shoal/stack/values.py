"""Reading typed values out of a Compose file, with errors that say where.

Compose is lenient about types in ways users rely on: a number may be
written as a string (``replicas: "3"``, which is also what interpolation
produces), ``cpus`` as ``0.5`` or ``'0.5'``, memory as bytes or with a unit
(``512M``, ``1.5G``), a command as a string or a list. Each reader takes a
value, a name for it (``service web: deploy.replicas``) and its location,
and returns the value shoal needs or raises ``StackError`` saying what was
expected.
"""

from __future__ import annotations

import shlex
from collections.abc import Callable, Mapping
from typing import Any

from shoal.durations import parse_duration, parse_size
from shoal.stack.located import LList, LMap, Loc, StackError


def _got(value: Any) -> str:
    text = repr(value) if not isinstance(value, LMap | LList) else type(value).__name__
    return {"LMap": "a mapping", "LList": "a list"}.get(text, text[:60])


def fail(where: str, expected: str, value: Any, loc: Loc | None) -> StackError:
    return StackError(f"{where}: expected {expected}, got {_got(value)}", loc)


def as_str(value: Any, where: str, loc: Loc | None) -> str:
    if isinstance(value, bool) or not isinstance(value, str | int | float):
        raise fail(where, "a string", value, loc)
    return str(value)


def as_int(value: Any, where: str, loc: Loc | None) -> int:
    if isinstance(value, bool):
        raise fail(where, "a whole number", value, loc)
    if isinstance(value, int):
        return value
    if isinstance(value, str):
        try:
            return int(value.strip(), 10)
        except ValueError:
            pass
    raise fail(where, "a whole number", value, loc)


def as_float(value: Any, where: str, loc: Loc | None) -> float:
    if isinstance(value, bool):
        raise fail(where, "a number", value, loc)
    if isinstance(value, int | float):
        return float(value)
    if isinstance(value, str):
        try:
            return float(value.strip())
        except ValueError:
            pass
    raise fail(where, "a number", value, loc)


def as_bool(value: Any, where: str, loc: Loc | None) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().lower() in ("true", "false"):
        return value.strip().lower() == "true"
    raise fail(where, "true or false", value, loc)


def as_duration(value: Any, where: str, loc: Loc | None) -> int:
    """Nanoseconds of a Go-style duration ("10s", "1m30s")."""
    if not isinstance(value, str):
        raise fail(where, "a duration such as 10s or 1m30s", value, loc)
    try:
        return parse_duration(value)
    except ValueError as err:
        raise StackError(f"{where}: {err}", loc) from None


def as_size(value: Any, where: str, loc: Loc | None) -> int:
    """Bytes: a number, or with a binary unit as Compose writes them (512M, 1.5G, 1gb)."""
    if isinstance(value, bool):
        raise fail(where, "a size such as 512M", value, loc)
    if isinstance(value, int):
        return value
    if isinstance(value, str):
        try:
            return parse_size(value)
        except ValueError as err:
            raise StackError(f"{where}: {err}", loc) from None
    raise fail(where, "a size such as 512M", value, loc)


def as_nano_cpus(value: Any, where: str, loc: Loc | None) -> int:
    cpus = as_float(value, where, loc)
    if cpus < 0:
        raise StackError(f"{where}: must be >= 0, got {value}", loc)
    return round(cpus * 1e9)


def as_map(value: Any, where: str, loc: Loc | None) -> LMap:
    if not isinstance(value, LMap):
        raise fail(where, "a mapping", value, loc)
    return value


def as_list(value: Any, where: str, loc: Loc | None) -> LList:
    if not isinstance(value, LList):
        raise fail(where, "a list", value, loc)
    return value


def str_list(value: Any, where: str, loc: Loc | None) -> list[str]:
    """A string (one item) or a list of strings."""
    if isinstance(value, str):
        return [value]
    items = as_list(value, where, loc)
    return [as_str(v, f"{where}[{i}]", items.at(i)) for i, v in enumerate(items)]


def command(value: Any, where: str, loc: Loc | None) -> list[str]:
    """A command: a string, split as a shell would (no expansion), or a list."""
    if isinstance(value, str):
        try:
            return shlex.split(value)
        except ValueError as err:
            raise StackError(f"{where}: {err}", loc) from None
    return str_list(value, where, loc)


def key_values(value: Any, where: str, loc: Loc | None, bare: str | None = None) -> LMap:
    """``KEY=VALUE`` items or a mapping, as a mapping of strings. A bare
    ``KEY`` (or a null value) becomes `bare` (None: kept as None)."""
    out = LMap(loc)
    if isinstance(value, LMap):
        for key, item in value.items():
            if item is None:
                out.put(key, bare, value.at(key))
            elif isinstance(item, bool):
                out.put(key, "true" if item else "false", value.at(key))
            else:
                out.put(key, as_str(item, f"{where}.{key}", value.at(key)), value.at(key))
        return out
    if isinstance(value, LList):
        for i, item in enumerate(value):
            text = as_str(item, f"{where}[{i}]", value.at(i))
            key, sep, rest = text.partition("=")
            if not key:
                raise StackError(f'{where}: expected KEY=VALUE, got "{text[:60]}"', value.at(i))
            out.put(key, rest if sep else bare, value.at(i))
        return out
    raise fail(where, "a list of KEY=VALUE or a mapping", value, loc)


Reader = Callable[[Any, str, Loc | None], Any]


def choice(choices: Mapping[str, Any]) -> Reader:
    """A reader of one of the words in choices (the value it stands for)."""

    def read(value: Any, where: str, loc: Loc | None) -> Any:
        text = as_str(value, where, loc)
        if text not in choices:
            raise StackError(f'{where}: "{text}" is not one of {", ".join(choices)}', loc)
        return choices[text]

    return read


def set_fields(target: Any, section: LMap, prefix: str, fields: Mapping[str, tuple[str, Reader]]) -> None:
    """For each key of fields the section holds (not null): set the named
    attribute of target to what its reader makes of the value. `prefix`
    names the section in errors ("service web: deploy.")."""
    for key, (attribute, read) in fields.items():
        value = section.get(key)
        if value is not None:
            setattr(target, attribute, read(value, f"{prefix}{key}", section.at(key)))


def long_forms(
    value: Any, where: str, loc: Loc | None, expand: Callable[[Any, str, Loc | None], list[LMap]]
) -> LList:
    """A list whose items may be written short or long (ports, volumes): the
    long ones as they are, each short one as what `expand` makes of it."""
    if not isinstance(value, LList):
        raise fail(where, "a list", value, loc)
    out = LList(value.loc)
    for i, item in enumerate(value):
        for long in [item] if isinstance(item, LMap) else expand(item, f"{where}[{i}]", value.at(i)):
            out.add(long, value.at(i))
    return out
