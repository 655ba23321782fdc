"""Service specs: Swarm's defaults for what a client left unset, the words
for the spec's enums, and spec versions. Shared by the ControlAPI (which applies the defaults), the updater
(versions of rollbacks) and the CLI (which starts from the same defaults
when a flag changes part of an unset policy), so each rule is written once.

Versions: every change of a service's task template or ports gets a new
``spec_version``; tasks record the one they were made from, so "out of date"
is a comparison. A rollback goes back to the previous version *number*, so
tasks still on it count as up to date; otherwise a number is never reused.
"""

from __future__ import annotations

from shoal.defaults import SERVICE
from shoal.protos import objects_pb2 as pb

# The words users write for the spec's enums (CLI flags, Compose files).
MODES = {
    "replicated": pb.SERVICE_MODE_REPLICATED,
    "global": pb.SERVICE_MODE_GLOBAL,
    "replicated-job": pb.SERVICE_MODE_REPLICATED_JOB,
    "global-job": pb.SERVICE_MODE_GLOBAL_JOB,
}
CONDITIONS = {
    "any": pb.RESTART_CONDITION_ANY,
    "on-failure": pb.RESTART_CONDITION_ON_FAILURE,
    "none": pb.RESTART_CONDITION_NONE,
}
FAILURE_ACTIONS = {
    "pause": pb.FAILURE_ACTION_PAUSE,
    "continue": pb.FAILURE_ACTION_CONTINUE,
    "rollback": pb.FAILURE_ACTION_ROLLBACK,
}
ORDERS = {"stop-first": pb.UPDATE_ORDER_STOP_FIRST, "start-first": pb.UPDATE_ORDER_START_FIRST}
JOB_MODES = (pb.SERVICE_MODE_REPLICATED_JOB, pb.SERVICE_MODE_GLOBAL_JOB)


def default_restart_policy() -> pb.RestartPolicy:
    return pb.RestartPolicy(condition=pb.RESTART_CONDITION_ANY, delay=SERVICE.restart_delay)


def default_update_config() -> pb.UpdateConfig:
    return pb.UpdateConfig(
        parallelism=SERVICE.update_parallelism,
        delay=0,
        failure_action=pb.FAILURE_ACTION_PAUSE,
        monitor=SERVICE.update_monitor,
        max_failure_ratio=0.0,
        order=pb.UPDATE_ORDER_STOP_FIRST,
    )


def apply_defaults(spec: pb.ServiceSpec) -> None:
    """Fill what the client left unset with Swarm's defaults."""
    if not spec.HasField("replicas") and spec.mode in (
        pb.SERVICE_MODE_REPLICATED,
        pb.SERVICE_MODE_REPLICATED_JOB,
    ):
        spec.replicas = SERVICE.replicas
    if spec.mode in (pb.SERVICE_MODE_REPLICATED_JOB,) and spec.max_concurrent == 0:
        spec.max_concurrent = spec.replicas
    container = spec.task.container
    if not container.HasField("stop_grace_period"):
        container.stop_grace_period = SERVICE.stop_grace_period
    if not spec.task.HasField("restart"):
        spec.task.restart.CopyFrom(default_restart_policy())
        if spec.mode in (pb.SERVICE_MODE_REPLICATED_JOB, pb.SERVICE_MODE_GLOBAL_JOB):
            # A job that succeeded is done; only failures are retried.
            spec.task.restart.condition = pb.RESTART_CONDITION_ON_FAILURE
    if not spec.HasField("update"):
        spec.update.CopyFrom(default_update_config())
    if not spec.HasField("rollback"):
        spec.rollback.CopyFrom(default_update_config())
    if container.image and ":" not in container.image.rsplit("/", 1)[-1] and "@" not in container.image:
        container.image += ":latest"
    for port in spec.ports:
        port.protocol = port.protocol or "tcp"
        port.publish_mode = port.publish_mode or "ingress"
    for port in spec.expose:
        port.protocol = port.protocol or "tcp"


def next_version(service: pb.Service) -> int:
    """The version of a new spec: one more than any number used so far (after
    a rollback the failed version's number is the previous one)."""
    return max(service.spec_version, service.previous_spec_version) + 1


def rollback_version(service: pb.Service) -> int:
    """The version a rollback goes back to."""
    return service.previous_spec_version or next_version(service)


# `shoal run --rm`: a job with this label is removed by the leader once it
# has finished (shoal.manager.autoremove): "true" at once (-d: the client is
# gone), or a duration later (attached: the client removes it itself after
# reading the output; the label covers a client that was killed).
AUTOREMOVE_LABEL = "shoal.run.autoremove"
