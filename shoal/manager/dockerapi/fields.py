"""Reading a JSON object of a request key by key, so that nothing it holds
goes unnoticed.

``Fields`` takes the keys a translation knows, checking each value's type
(a wrong type is refused naming the field); ``finish`` records the path of
every key left holding a value (not null, false, 0, "" or empty: what Go's
``omitempty`` leaves out, so a client sending it asked for nothing), for the
caller to report. Keys match regardless of case, as Go's JSON decoder
matches them.
"""

from __future__ import annotations

from typing import Any

from shoal.manager.dockerapi.errors import BAD_REQUEST, DockerError
from shoal.manager.dockerapi.wire import is_empty

INT64_MAX = 2**63 - 1


def refuse(path: str, what: str) -> DockerError:
    return DockerError(BAD_REQUEST, f"{path}: {what}")


class Fields:
    """One JSON object of the request, read key by key."""

    def __init__(self, obj: Any, path: str, ignored: list[str]) -> None:
        if not isinstance(obj, dict):
            raise refuse(path or "body", "expected a JSON object")
        self._obj = dict(obj)
        self.path = path
        # Paths of the keys left holding a value, shared by the whole request.
        self.ignored = ignored

    def _at(self, key: str) -> str:
        return f"{self.path}.{key}" if self.path else key

    def raw(self, key: str) -> Any:
        if key in self._obj:
            return self._obj.pop(key)
        # Go's JSON decoder matches field names regardless of case (the
        # swagger spells "HealthCheck", the engine writes "Healthcheck").
        for name in self._obj:
            if name.lower() == key.lower():
                return self._obj.pop(name)
        return None

    def text(self, key: str) -> str | None:
        value = self.raw(key)
        if value is None:
            return None
        if not isinstance(value, str):
            raise refuse(self._at(key), "expected a string")
        return value

    def integer(self, key: str, minimum: int = 0) -> int | None:
        value = self.raw(key)
        if value is None:
            return None
        if isinstance(value, bool) or not isinstance(value, int):
            raise refuse(self._at(key), "expected an integer")
        if not minimum <= value <= INT64_MAX:
            raise refuse(self._at(key), f"must be between {minimum} and {INT64_MAX}, got {value}")
        return value

    def number(self, key: str) -> float | None:
        value = self.raw(key)
        if value is None:
            return None
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise refuse(self._at(key), "expected a number")
        return float(value)

    def flag(self, key: str) -> bool:
        value = self.raw(key)
        if value is None:
            return False
        if not isinstance(value, bool):
            raise refuse(self._at(key), "expected true or false")
        return value

    def texts(self, key: str) -> list[str]:
        value = self.raw(key)
        if value is None:
            return []
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise refuse(self._at(key), "expected a list of strings")
        return value

    def text_map(self, key: str) -> dict[str, str]:
        value = self.raw(key)
        if value is None:
            return {}
        if not isinstance(value, dict) or not all(isinstance(v, str) for v in value.values()):
            raise refuse(self._at(key), "expected an object of strings")
        return value

    def child(self, key: str) -> Fields | None:
        value = self.raw(key)
        return None if value is None else Fields(value, self._at(key), self.ignored)

    def children(self, key: str) -> list[Fields]:
        value = self.raw(key)
        if value is None:
            return []
        if not isinstance(value, list):
            raise refuse(self._at(key), "expected a list of objects")
        return [Fields(item, f"{self._at(key)}[{i}]", self.ignored) for i, item in enumerate(value)]

    def finish(self) -> None:
        """Record every key left holding a value (a list item's without its index)."""
        for key, value in self._obj.items():
            if not is_empty(value):
                self.ignored.append(_generic(self._at(key)))
        self._obj.clear()


def _generic(path: str) -> str:
    """A list item's path without its index, for the table of reasons."""
    parts = [p.split("[", 1)[0] for p in path.split(".")]
    return ".".join(parts)
