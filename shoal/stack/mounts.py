"""``volumes:`` and ``tmpfs:`` of a Compose service, as shoal's Mounts.

Short syntax ``[SOURCE:]TARGET[:MODE]``: a SOURCE starting with ``/``,
``.`` or ``~`` is a host path (a bind mount; relative paths are taken from
the first file's folder, as Compose does), anything else a named volume; no
SOURCE is an anonymous volume; MODE ``ro`` makes it read-only. Long syntax:
``type`` (volume, bind, tmpfs), ``source``, ``target``, ``read_only``,
``tmpfs.size``. Named volumes must be declared under the top-level
``volumes:``; the stack's own are named ``STACK_NAME`` (or their ``name:``),
external ones keep their name. What cannot be honoured (other types, bind
propagation, volume options, drivers) is a warning. Note that the process
runtime refuses tasks with mounts (it cannot mount); the docker runtime
makes them.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from shoal.protos import objects_pb2 as pb
from shoal.stack.located import LList, LMap, Loc, StackError, located
from shoal.stack.values import as_bool, as_map, as_size, as_str, fail, long_forms, str_list

Warn = Callable[[str], None]

_MODES_IGNORED = {"z", "Z", "nocopy", "consistent", "cached", "delegated", "rprivate", "private", "rshared"}
_LONG_KEYS = {"type", "source", "target", "read_only", "tmpfs", "bind", "volume", "consistency"}


def _is_path(source: str) -> bool:
    return source.startswith(("/", ".", "~"))


def normalize_short(value: Any, where: str, loc: Loc | None, warn: Warn) -> LMap:
    """One short-syntax volume as a long-syntax mapping."""
    text = as_str(value, where, loc)
    parts = text.split(":")
    if len(parts) > 3 or not all(parts[: min(len(parts), 2)]):
        raise StackError(f'{where}: invalid volume "{text[:80]}" (expected [SOURCE:]TARGET[:MODE])', loc)
    out = LMap(loc)
    mode = ""
    if len(parts) == 1:
        out.put("type", "volume", loc)
        out.put("target", parts[0], loc)
    else:
        source, target = parts[0], parts[1]
        mode = parts[2] if len(parts) == 3 else ""
        out.put("type", "bind" if _is_path(source) else "volume", loc)
        out.put("source", source, loc)
        out.put("target", target, loc)
    for option in filter(None, mode.split(",")):
        if option == "ro":
            out.put("read_only", True, loc)
        elif option in _MODES_IGNORED:
            warn(located(loc, f'{where}: volume option "{option}" is not honoured'))
        elif option != "rw":
            raise StackError(f'{where}: unknown volume option "{option}" (ro, rw, ...)', loc)
    return out


def normalize(value: Any, where: str, loc: Loc | None, warn: Warn) -> LList:
    """The volumes as a list of long-syntax mappings."""
    return long_forms(
        value, where, loc, lambda item, at, item_loc: [normalize_short(item, at, item_loc, warn)]
    )


def key(volume: LMap) -> Any:
    """What makes two entries the same mount when files are merged."""
    return volume.get("target")


def _volume_name(name: str, declared: LMap | None, stack: str, where: str, loc: Loc | None) -> str:
    if declared is None or name not in declared:
        raise StackError(f'{where}: volume "{name}" is not declared under the top-level volumes', loc)
    spec = declared[name]
    if spec is None:
        return f"{stack}_{name}"
    spec = as_map(spec, f"volumes.{name}", declared.at(name))
    external = spec.get("external")
    if isinstance(external, LMap):
        return as_str(external.get("name", name), f"volumes.{name}.external.name", external.at("name"))
    if "name" in spec:
        return as_str(spec["name"], f"volumes.{name}.name", spec.at("name"))
    if external is not None and as_bool(external, f"volumes.{name}.external", spec.at("external")):
        return name
    return f"{stack}_{name}"


def to_mounts(
    volumes: LList, where: str, project_dir: Path, stack: str, declared: LMap | None, warn: Warn
) -> list[pb.Mount]:
    out = []
    for i, volume in enumerate(volumes):
        item_where, loc = f"{where}[{i}]", volumes.at(i)
        if not isinstance(volume, LMap):
            raise fail(item_where, "a volume", volume, loc)
        kind = as_str(volume.get("type", "volume"), f"{item_where}.type", volume.at("type"))
        if kind not in ("volume", "bind", "tmpfs"):
            warn(located(loc, f'{item_where}: volumes of type "{kind}" are not supported; ignored'))
            continue
        for extra in sorted(set(volume) - _LONG_KEYS):
            warn(located(loc, f"{item_where}: {extra} is not a volume setting; ignored"))
        for option in ("consistency", "bind", "volume"):
            if option in volume:
                warn(located(loc, f"{item_where}: {option} options are not honoured"))
        if "target" not in volume:
            raise StackError(f"{item_where}: a target is required", loc)
        mount = pb.Mount(
            type=kind, target=as_str(volume["target"], f"{item_where}.target", volume.at("target"))
        )
        if "read_only" in volume:
            mount.readonly = as_bool(volume["read_only"], f"{item_where}.read_only", volume.at("read_only"))
        source = volume.get("source")
        if kind == "bind":
            if not source:
                raise StackError(f"{item_where}: a bind mount needs a source", loc)
            path = Path(as_str(source, f"{item_where}.source", volume.at("source"))).expanduser()
            mount.source = str(path if path.is_absolute() else (project_dir / path).resolve())
        elif kind == "volume" and source:
            name = as_str(source, f"{item_where}.source", volume.at("source"))
            mount.source = _volume_name(name, declared, stack, item_where, volume.at("source"))
        elif kind == "tmpfs":
            tmpfs = volume.get("tmpfs")
            if isinstance(tmpfs, LMap):
                if "size" in tmpfs:
                    mount.tmpfs_size = as_size(tmpfs["size"], f"{item_where}.tmpfs.size", tmpfs.at("size"))
                if set(tmpfs) - {"size"}:
                    warn(located(loc, f"{item_where}: tmpfs options other than size are not honoured"))
        out.append(mount)
    return out


def tmpfs_mounts(value: Any, where: str, loc: Loc | None, warn: Warn) -> list[pb.Mount]:
    """The service's ``tmpfs:`` (a path, or a list of ``PATH[:OPTIONS]``)."""
    out = []
    for i, item in enumerate(str_list(value, where, loc)):
        target, _, options = item.partition(":")
        mount = pb.Mount(type="tmpfs", target=target)
        for option in filter(None, options.split(",")):
            name, _, size = option.partition("=")
            if name == "size":
                mount.tmpfs_size = as_size(size, f"{where}[{i}] size", loc)
            else:
                warn(located(loc, f'{where}[{i}]: tmpfs option "{option}" is not honoured'))
        out.append(mount)
    return out
