"""A Compose service's ``deploy:`` section, written into a ServiceSpec.

``mode`` (replicated, global, replicated-job, global-job), ``replicas``,
``labels`` (the service's own), ``placement`` (``constraints``,
``preferences`` of ``spread``, ``max_replicas_per_node``), ``resources``
(``limits`` and ``reservations`` of ``cpus`` and ``memory``),
``restart_policy``, ``update_config``, ``rollback_config`` and
``endpoint_mode`` (``vip``, which changes nothing here: shoal has no
virtual IPs). Everything else (``pids``, generic resources, devices,
``dnsrr``, unknown keys) is a warning naming it.

Unset fields stay unset: the manager fills in Swarm's defaults, as it does
for ``service create``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from shoal import specs
from shoal.protos import objects_pb2 as pb
from shoal.stack.located import LMap, StackError, located
from shoal.stack.values import (
    as_duration,
    as_float,
    as_int,
    as_map,
    as_nano_cpus,
    as_size,
    as_str,
    str_list,
)

Warn = Callable[[str], None]

MODES = {
    "replicated": pb.SERVICE_MODE_REPLICATED,
    "global": pb.SERVICE_MODE_GLOBAL,
    "replicated-job": pb.SERVICE_MODE_REPLICATED_JOB,
    "global-job": pb.SERVICE_MODE_GLOBAL_JOB,
}
CONDITIONS = {
    "none": pb.RESTART_CONDITION_NONE,
    "on-failure": pb.RESTART_CONDITION_ON_FAILURE,
    "any": pb.RESTART_CONDITION_ANY,
}
FAILURE_ACTIONS = {
    "pause": pb.FAILURE_ACTION_PAUSE,
    "continue": pb.FAILURE_ACTION_CONTINUE,
    "rollback": pb.FAILURE_ACTION_ROLLBACK,
}
ORDERS = {"stop-first": pb.UPDATE_ORDER_STOP_FIRST, "start-first": pb.UPDATE_ORDER_START_FIRST}
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


def _choice(value: Any, choices: dict[str, Any], where: str, section: LMap, key: str) -> Any:
    text = as_str(value, where, section.at(key))
    if text not in choices:
        raise StackError(f'{where}: "{text}" is not one of {", ".join(choices)}', section.at(key))
    return choices[text]


def _unknown(section: LMap, known: set[str], where: str, warn: Warn) -> None:
    for key in section:
        if key not in known and not key.startswith("x-"):
            warn(located(section.at(key), f"{where}.{key} is not supported; ignored"))


def apply_deploy(spec: pb.ServiceSpec, deploy: Any, where: str, warn: Warn) -> None:
    """Write `deploy` (a mapping, located) into spec. `where` is e.g.
    "service web: deploy"."""
    d = as_map(deploy, where, None)
    _unknown(d, _DEPLOY_KEYS, where, warn)
    if "mode" in d:
        spec.mode = _choice(d["mode"], MODES, f"{where}.mode", d, "mode")
    if "replicas" in d and d["replicas"] is not None:
        spec.replicas = as_int(d["replicas"], f"{where}.replicas", d.at("replicas"))
    for key, value in (d.get("labels") or {}).items():
        spec.labels[key] = value or ""
    if d.get("endpoint_mode") not in (None, "vip"):
        warn(
            located(
                d.at("endpoint_mode"),
                f"{where}.endpoint_mode {d['endpoint_mode']}: shoal has no virtual IPs "
                "or service DNS yet; ignored",
            )
        )
    if d.get("placement") is not None:
        _placement(
            spec.task.placement,
            as_map(d["placement"], f"{where}.placement", d.at("placement")),
            f"{where}.placement",
            warn,
        )
    if d.get("resources") is not None:
        _resources(
            spec.task.resources,
            as_map(d["resources"], f"{where}.resources", d.at("resources")),
            f"{where}.resources",
            warn,
        )
    if d.get("restart_policy") is not None:
        job = spec.mode in (pb.SERVICE_MODE_REPLICATED_JOB, pb.SERVICE_MODE_GLOBAL_JOB)
        restart_policy(
            spec.task, d["restart_policy"], f"{where}.restart_policy", d.at("restart_policy"), warn, job
        )
    for key, target in (("update_config", spec.update), ("rollback_config", spec.rollback)):
        if d.get(key) is not None:
            _update_config(target, as_map(d[key], f"{where}.{key}", d.at(key)), f"{where}.{key}", warn)


def _placement(placement: pb.Placement, p: LMap, where: str, warn: Warn) -> None:
    _unknown(p, {"constraints", "preferences", "max_replicas_per_node"}, where, warn)
    if p.get("constraints") is not None:
        placement.constraints.extend(str_list(p["constraints"], f"{where}.constraints", p.at("constraints")))
    for i, pref in enumerate(p.get("preferences") or []):
        pref_where = f"{where}.preferences[{i}]"
        pref = as_map(pref, pref_where, p.at("preferences"))
        if set(pref) != {"spread"}:
            raise StackError(f"{pref_where}: expected spread: node.labels.KEY", pref.loc)
        placement.preferences.add(spread=as_str(pref["spread"], f"{pref_where}.spread", pref.at("spread")))
    if p.get("max_replicas_per_node") is not None:
        placement.max_replicas_per_node = as_int(
            p["max_replicas_per_node"], f"{where}.max_replicas_per_node", p.at("max_replicas_per_node")
        )


def _resources(resources: pb.ResourceRequirements, r: LMap, where: str, warn: Warn) -> None:
    _unknown(r, {"limits", "reservations"}, where, warn)
    for key, target in (("limits", resources.limits), ("reservations", resources.reservations)):
        if r.get(key) is None:
            continue
        section = as_map(r[key], f"{where}.{key}", r.at(key))
        _unknown(section, {"cpus", "memory"}, f"{where}.{key}", warn)
        if section.get("cpus") is not None:
            target.nano_cpus = as_nano_cpus(section["cpus"], f"{where}.{key}.cpus", section.at("cpus"))
        if section.get("memory") is not None:
            target.memory_bytes = as_size(section["memory"], f"{where}.{key}.memory", section.at("memory"))


def restart_policy(task: pb.TaskSpec, value: Any, where: str, loc: Any, warn: Warn, job: bool) -> None:
    """A restart policy; without a condition, Swarm's default (any), but
    on-failure for jobs (a job that completed is done)."""
    r = as_map(value, where, loc)
    _unknown(r, {"condition", "delay", "max_attempts", "window"}, where, warn)
    policy = task.restart
    policy.CopyFrom(specs.default_restart_policy())
    if job:
        policy.condition = pb.RESTART_CONDITION_ON_FAILURE
    if r.get("condition") is not None:
        policy.condition = _choice(r["condition"], CONDITIONS, f"{where}.condition", r, "condition")
    if r.get("delay") is not None:
        policy.delay = as_duration(r["delay"], f"{where}.delay", r.at("delay"))
    if r.get("max_attempts") is not None:
        policy.max_attempts = as_int(r["max_attempts"], f"{where}.max_attempts", r.at("max_attempts"))
    if r.get("window") is not None:
        policy.window = as_duration(r["window"], f"{where}.window", r.at("window"))


def _update_config(cfg: pb.UpdateConfig, u: LMap, where: str, warn: Warn) -> None:
    _unknown(
        u, {"parallelism", "delay", "failure_action", "monitor", "max_failure_ratio", "order"}, where, warn
    )
    cfg.CopyFrom(specs.default_update_config())
    if u.get("parallelism") is not None:
        cfg.parallelism = as_int(u["parallelism"], f"{where}.parallelism", u.at("parallelism"))
    if u.get("delay") is not None:
        cfg.delay = as_duration(u["delay"], f"{where}.delay", u.at("delay"))
    if u.get("failure_action") is not None:
        cfg.failure_action = _choice(
            u["failure_action"], FAILURE_ACTIONS, f"{where}.failure_action", u, "failure_action"
        )
    if u.get("monitor") is not None:
        cfg.monitor = as_duration(u["monitor"], f"{where}.monitor", u.at("monitor"))
    if u.get("max_failure_ratio") is not None:
        cfg.max_failure_ratio = as_float(
            u["max_failure_ratio"], f"{where}.max_failure_ratio", u.at("max_failure_ratio")
        )
    if u.get("order") is not None:
        cfg.order = _choice(u["order"], ORDERS, f"{where}.order", u, "order")
