"""A Compose service's ``deploy:`` section, written into a ServiceSpec.

``mode`` (replicated, global, replicated-job, global-job), ``replicas``,
``labels`` (the service's own), ``placement`` (``constraints``,
``preferences`` of ``spread``, ``max_replicas_per_node``), ``resources``
(``limits`` and ``reservations`` of ``cpus`` and ``memory``),
``restart_policy``, ``update_config``, ``rollback_config`` and
``endpoint_mode`` (``vip``: every service has a virtual address). Everything
else (``pids``, generic resources, devices, ``dnsrr``, unknown keys) is a
warning naming it.

Unset fields stay unset: the manager fills in Swarm's defaults, as it does
for ``service create``. A restart or update section starts from those
defaults, so the keys it leaves out keep Swarm's values.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from shoal import specs
from shoal.protos import objects_pb2 as pb
from shoal.stack.located import LMap, StackError, located
from shoal.stack.values import (
    Reader,
    as_duration,
    as_float,
    as_int,
    as_map,
    as_nano_cpus,
    as_size,
    as_str,
    choice,
    set_fields,
    str_list,
)

Warn = Callable[[str], None]
Fields = Mapping[str, tuple[str, Reader]]

_DEPLOY_KEYS = {
    "mode",
    "replicas",
    "labels",
    "placement",
    "resources",
    "restart_policy",
    "update_config",
    "rollback_config",
    "endpoint_mode",
}
_RESTART: Fields = {
    "condition": ("condition", choice(specs.CONDITIONS)),
    "delay": ("delay", as_duration),
    "max_attempts": ("max_attempts", as_int),
    "window": ("window", as_duration),
}
_UPDATE: Fields = {
    "parallelism": ("parallelism", as_int),
    "delay": ("delay", as_duration),
    "failure_action": ("failure_action", choice(specs.FAILURE_ACTIONS)),
    "monitor": ("monitor", as_duration),
    "max_failure_ratio": ("max_failure_ratio", as_float),
    "order": ("order", choice(specs.ORDERS)),
}
_RESOURCES: Fields = {"cpus": ("nano_cpus", as_nano_cpus), "memory": ("memory_bytes", as_size)}
_PLACEMENT = {"constraints", "preferences", "max_replicas_per_node"}


def _unknown(section: LMap, known: Any, where: str, warn: Warn) -> None:
    for key in section:
        if key not in known and not key.startswith("x-"):
            warn(located(section.at(key), f"{where}.{key} is not supported; ignored"))


def _section(parent: LMap, key: str, where: str) -> LMap | None:
    value = parent.get(key)
    return None if value is None else as_map(value, f"{where}.{key}", parent.at(key))


def apply_deploy(spec: pb.ServiceSpec, deploy: Any, where: str, warn: Warn) -> None:
    """Write `deploy` (a mapping, located) into spec. `where` is e.g.
    "service web: deploy"."""
    d = as_map(deploy, where, None)
    _unknown(d, _DEPLOY_KEYS, where, warn)
    set_fields(
        spec, d, f"{where}.", {"mode": ("mode", choice(specs.MODES)), "replicas": ("replicas", as_int)}
    )
    for key, value in (d.get("labels") or {}).items():
        spec.labels[key] = value or ""
    if d.get("endpoint_mode") not in (None, "vip"):
        message = (
            f"{where}.endpoint_mode {d['endpoint_mode']}: the service's name resolves to its virtual "
            "address (tasks.NAME to its tasks)"
        )
        warn(located(d.at("endpoint_mode"), f"{message}; ignored"))
    if (placement := _section(d, "placement", where)) is not None:
        _placement(spec.task.placement, placement, f"{where}.placement", warn)
    if (resources := _section(d, "resources", where)) is not None:
        _unknown(resources, {"limits", "reservations"}, f"{where}.resources", warn)
        for key, target in (
            ("limits", spec.task.resources.limits),
            ("reservations", spec.task.resources.reservations),
        ):
            if (section := _section(resources, key, f"{where}.resources")) is not None:
                _unknown(section, _RESOURCES, f"{where}.resources.{key}", warn)
                set_fields(target, section, f"{where}.resources.{key}.", _RESOURCES)
    if (restart := _section(d, "restart_policy", where)) is not None:
        restart_policy(spec.task, restart, f"{where}.restart_policy", warn, spec.mode in specs.JOB_MODES)
    for key, cfg in (("update_config", spec.update), ("rollback_config", spec.rollback)):
        if (section := _section(d, key, where)) is not None:
            _unknown(section, _UPDATE, f"{where}.{key}", warn)
            cfg.CopyFrom(specs.default_update_config())
            set_fields(cfg, section, f"{where}.{key}.", _UPDATE)


def _placement(placement: pb.Placement, p: LMap, where: str, warn: Warn) -> None:
    _unknown(p, _PLACEMENT, where, warn)
    if p.get("constraints") is not None:
        placement.constraints.extend(str_list(p["constraints"], f"{where}.constraints", p.at("constraints")))
    for i, pref in enumerate(p.get("preferences") or []):
        pref_where = f"{where}.preferences[{i}]"
        pref = as_map(pref, pref_where, p.at("preferences"))
        if set(pref) != {"spread"}:
            raise StackError(f"{pref_where}: expected spread: node.labels.KEY", pref.loc)
        placement.preferences.add(spread=as_str(pref["spread"], f"{pref_where}.spread", pref.at("spread")))
    set_fields(placement, p, f"{where}.", {"max_replicas_per_node": ("max_replicas_per_node", as_int)})


def restart_policy(task: pb.TaskSpec, r: LMap, where: str, warn: Warn, job: bool) -> None:
    """A restart policy; without a condition, Swarm's default (any), but
    on-failure for jobs (a job that completed is done)."""
    _unknown(r, _RESTART, where, warn)
    task.restart.CopyFrom(specs.default_restart_policy())
    if job:
        task.restart.condition = pb.RESTART_CONDITION_ON_FAILURE
    set_fields(task.restart, r, f"{where}.", _RESTART)
