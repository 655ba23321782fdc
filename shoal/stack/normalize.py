"""One shape for each Compose key that has several, before files are merged.

Compose lets a user write many keys two ways; merging several files (and
converting) is simpler with one. Per service:

- ``environment``, ``labels``, ``deploy.labels``: a mapping (from a list of
  ``KEY=VALUE`` or a mapping; a bare ``KEY`` in ``environment`` is None, to
  be taken from the deploying shell);
- ``ports``: a list of long-syntax mappings (``ports``);
- ``volumes``: a list of long-syntax mappings (``mounts``);
- ``secrets``, ``configs``: a list of mappings with at least ``source``;
- ``env_file``: a list of paths.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from shoal.stack import mounts, ports
from shoal.stack.located import LList, LMap, StackError
from shoal.stack.values import as_list, as_map, as_str, key_values, str_list

Warn = Callable[[str], None]


def _file_refs(value: Any, where: str, loc: Any) -> LList:
    items = as_list(value, where, loc)
    out = LList(items.loc)
    for i, item in enumerate(items):
        if isinstance(item, LMap):
            if "source" not in item:
                raise StackError(f"{where}[{i}]: source is required", items.at(i))
            out.add(item, items.at(i))
            continue
        ref = LMap(items.at(i))
        ref.put("source", as_str(item, f"{where}[{i}]", items.at(i)), items.at(i))
        out.add(ref, items.at(i))
    return out


def service(svc: Any, where: str, loc: Any, warn: Warn) -> LMap:
    """The service with its keys in one shape each (a new mapping)."""
    if svc is None:
        svc = LMap(loc)
    svc = as_map(svc, where, loc)
    out = LMap(svc.loc)
    for key, value in svc.items():
        at = svc.at(key)
        name = f"{where}: {key}"
        if value is None:
            pass  # written but empty: as if absent
        elif key == "environment":
            value = key_values(value, name, at, bare=None)
        elif key == "labels":
            value = key_values(value, name, at, bare="")
        elif key == "ports":
            value = ports.normalize(value, name, at, warn)
        elif key == "volumes":
            value = mounts.normalize(value, name, at, warn)
        elif key in ("secrets", "configs"):
            value = _file_refs(value, name, at)
        elif key == "env_file":
            value = LList(at) if value is None else _as_llist(str_list(value, name, at), at)
        elif key == "deploy" and isinstance(value, LMap) and "labels" in value:
            deploy = LMap(value.loc)
            for dkey, dvalue in value.items():
                if dkey == "labels":
                    dvalue = key_values(dvalue, f"{where}: deploy.labels", value.at(dkey), bare="")
                deploy.put(dkey, dvalue, value.key_locs.get(dkey))
            value = deploy
        out.put(key, value, svc.key_locs.get(key))
    return out


def _as_llist(items: list[str], loc: Any) -> LList:
    out = LList(loc)
    for item in items:
        out.add(item, loc)
    return out
