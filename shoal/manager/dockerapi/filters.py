"""The ``filters`` query parameter of list endpoints, as the engine reads it.

The docker CLI sends ``{"name":{"web":true}}``; older clients send
``{"name":["web"]}``; both are read. Values of one key are alternatives
(OR), keys must all match (AND). A key the endpoint does not know is refused
with the engine's message (``Invalid filter 'KEY'``).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping

from shoal.manager.dockerapi.errors import BAD_REQUEST, DockerError

# A filters parameter bigger than this is not a list filter (query strings
# are bounded by the HTTP parser too; this keeps the parsed form small).
MAX_VALUES = 1024

Filters = dict[str, list[str]]


def parse(raw: str | None, accepted: Iterable[str]) -> Filters:
    """The filters of a request, each key checked against ``accepted``."""
    if not raw:
        return {}
    try:
        decoded = json.loads(raw)
    except ValueError as err:
        raise DockerError(BAD_REQUEST, f"filters: invalid JSON: {err}") from None
    if not isinstance(decoded, dict):
        raise DockerError(BAD_REQUEST, "filters: expected a JSON object of filter names")
    out: Filters = {}
    count = 0
    for name, values in decoded.items():
        if isinstance(values, dict):
            items = [v for v, on in values.items() if on is True]
        elif isinstance(values, list) and all(isinstance(v, str) for v in values):
            items = list(values)
        else:
            raise DockerError(BAD_REQUEST, f"filters: values of '{name[:40]}' must be a list or a map")
        count += len(items)
        if count > MAX_VALUES:
            raise DockerError(BAD_REQUEST, f"filters: at most {MAX_VALUES} values")
        out[name] = items
    allowed = set(accepted)
    for name in out:
        if name not in allowed:
            raise DockerError(BAD_REQUEST, f"Invalid filter '{name[:80]}'")
    return out


def prefix(filters: Filters, name: str, value: str) -> bool:
    """No such filter, or value starts with one of its values (IDs, names)."""
    wanted = filters.get(name)
    return wanted is None or any(value.startswith(w) for w in wanted)


def exact(filters: Filters, name: str, value: str) -> bool:
    wanted = filters.get(name)
    return wanted is None or value in wanted


def labels(filters: Filters, name: str, have: Mapping[str, str]) -> bool:
    """Every ``KEY`` or ``KEY=VALUE`` of the filter is among the labels (the
    engine's label filters must all hold; ``KEY=`` is the same as ``KEY``)."""
    for item in filters.get(name, ()):
        key, _, value = item.partition("=")
        if key not in have or (value and have[key] != value):
            return False
    return True
