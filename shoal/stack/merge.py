"""Several ``-c`` files as one, in order, the way Compose merges them.

The later file wins, key by key:

- mappings merge recursively (``services``, each service, ``deploy``,
  ``environment``, ``labels``, top-level ``secrets``/``configs``/...);
- scalars are replaced;
- ``command``, ``entrypoint`` and ``healthcheck.test`` are replaced whole
  (a command is one value, not a list to extend);
- ``ports`` merge by published port, target, protocol and mode,
  ``volumes`` by target, ``secrets`` and ``configs`` by source: an entry of
  the later file replaces the earlier one with the same key, others are
  added;
- other lists (``deploy.placement.constraints``, ``env_file``, ...) are
  concatenated, dropping exact repeats.

Services are normalised (``normalize``) before merging, so both files'
entries have one shape. Locations come along with each key and item.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from shoal.stack import mounts, ports
from shoal.stack.located import LList, LMap

_REPLACED = {("command",), ("entrypoint",), ("healthcheck", "test")}
_KEYED: dict[tuple[str, ...], Callable[[Any], Any]] = {
    ("ports",): lambda p: ports.key(p) if isinstance(p, LMap) else p,
    ("volumes",): lambda v: mounts.key(v) if isinstance(v, LMap) else v,
    ("secrets",): lambda r: r.get("source") if isinstance(r, LMap) else r,
    ("configs",): lambda r: r.get("source") if isinstance(r, LMap) else r,
}


def merge_service(base: LMap, over: LMap) -> LMap:
    return _merge_map(base, over, ())


def merge_files(base: LMap, over: LMap) -> LMap:
    """Two whole (normalised) files: services merged service by service."""
    out = LMap(base.loc)
    for key, value in base.items():
        out.put(key, value, base.key_locs.get(key))
    for key, value in over.items():
        at = over.key_locs.get(key)
        current = out.get(key)
        if key == "services" and isinstance(current, LMap) and isinstance(value, LMap):
            services = LMap(current.loc)
            for name, svc in current.items():
                services.put(name, svc, current.key_locs.get(name))
            for name, svc in value.items():
                held = services.get(name)
                merged = merge_service(held, svc) if isinstance(held, LMap) and isinstance(svc, LMap) else svc
                services.put(name, merged, value.key_locs.get(name))
            out.put(key, services, at)
        elif isinstance(current, LMap) and isinstance(value, LMap):
            out.put(key, _merge_map(current, value, ("*",)), at)
        else:
            out.put(key, value, at)
    return out


def _merge_map(base: LMap, over: LMap, path: tuple[str, ...]) -> LMap:
    out = LMap(base.loc)
    for key, value in base.items():
        out.put(key, value, base.key_locs.get(key))
    for key, value in over.items():
        at = over.key_locs.get(key)
        here = (*path, key)
        current = out.get(key)
        if here in _REPLACED or key not in out:
            out.put(key, value, at)
        elif isinstance(current, LMap) and isinstance(value, LMap):
            out.put(key, _merge_map(current, value, here), at)
        elif isinstance(current, LList) and isinstance(value, LList):
            out.put(key, _merge_list(current, value, _KEYED.get(here)), at)
        else:
            out.put(key, value, at)
    return out


def _merge_list(base: LList, over: LList, key: Callable[[Any], Any] | None) -> LList:
    out = LList(base.loc)
    if key is not None:
        replaced = {key(item) for item in over}
        for i, item in enumerate(base):
            if key(item) not in replaced:
                out.add(item, base.at(i))
        for i, item in enumerate(over):
            out.add(item, over.at(i))
        return out
    for source in (base, over):
        for i, item in enumerate(source):
            if isinstance(item, LMap | LList) or item not in out:
                out.add(item, source.at(i))
    return out
