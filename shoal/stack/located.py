"""Where each part of a Compose file was written, kept through every step.

Mappings and sequences read from YAML are ``LMap`` and ``LList``: a plain
dict and list, plus the file and line of the mapping or sequence itself and
of each key or item. Interpolation, normalising and merging build new ones
and carry the locations over, so an error about a merged, interpolated
value still names the file and line the user wrote it on:
``docker-stack.yml:14: service web: deploy.replicas: expected a number``.

``StackError`` is the one error the loader raises (a ``ValueError``); its
message starts with the location when there is one.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Loc:
    file: str
    line: int

    def __str__(self) -> str:
        return f"{self.file}:{self.line}"


class StackError(ValueError):
    """A stack that cannot be deployed as written; the message says where and why."""

    def __init__(self, message: str, loc: Loc | None = None) -> None:
        super().__init__(f"{loc}: {message}" if loc is not None else message)


class LMap(dict[str, Any]):
    """A mapping of a Compose file, with the location of each key."""

    def __init__(self, loc: Loc | None = None) -> None:
        super().__init__()
        self.loc = loc
        self.key_locs: dict[str, Loc] = {}

    def put(self, key: str, value: Any, loc: Loc | None) -> None:
        self[key] = value
        if loc is not None:
            self.key_locs[key] = loc

    def at(self, key: str) -> Loc | None:
        """Where key was written (else where this mapping starts)."""
        return self.key_locs.get(key, self.loc)


class LList(list[Any]):
    """A sequence of a Compose file, with the location of each item."""

    def __init__(self, loc: Loc | None = None) -> None:
        super().__init__()
        self.loc = loc
        self.item_locs: list[Loc | None] = []

    def add(self, value: Any, loc: Loc | None) -> None:
        self.append(value)
        self.item_locs.append(loc)

    def at(self, index: int) -> Loc | None:
        if 0 <= index < len(self.item_locs) and self.item_locs[index] is not None:
            return self.item_locs[index]
        return self.loc


def located(loc: Loc | None, message: str) -> str:
    """A message (a warning) with its location first, when there is one."""
    return f"{loc}: {message}" if loc is not None else message


def loc_of(container: Any, key: Any = None) -> Loc | None:
    """The location of container[key] (or of the container)."""
    if isinstance(container, LMap):
        return container.at(key) if key is not None else container.loc
    if isinstance(container, LList):
        return container.at(key) if isinstance(key, int) else container.loc
    return None


def plain(value: Any) -> Any:
    """The value without locations (plain dicts and lists), for tests and JSON."""
    if isinstance(value, dict):
        return {k: plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [plain(v) for v in value]
    return value
