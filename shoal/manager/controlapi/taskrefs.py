"""Which task a user means by TASK (``shoal exec``, ``logs``, ``commit``).

Accepted, tried in this order:

- a task ID, or a unique prefix of one;
- ``SERVICE.SLOT`` (``web.2``) for a replicated service, ``SERVICE.NODE``
  (a node's ID, unique ID prefix or hostname) for a global one: the names
  ``service ps`` shows. SERVICE may itself hold dots (``api.v2.1``): the
  reference is split at its last dot;
- ``SERVICE.SLOT.TASKID`` (the prefix ``service logs`` prints): that task.

A slot keeps its history (ended tasks, replaced ones); the one meant is the
slot's current task: the newest still desired to run, else the newest of
all (the last run of a job).
"""

from __future__ import annotations

from shoal.manager.store import NotFound, View
from shoal.names import slot_name
from shoal.protos import objects_pb2 as pb
from shoal.rules import limits
from shoal.rules.errors import InvalidRequest

RUNNING = pb.TASK_STATE_RUNNING


def resolve_task(view: View, ref: str) -> pb.Task:
    """The task ref names; NotFound ("no such task: web.9") or
    InvalidRequest (ambiguous) otherwise."""
    if not ref:
        raise InvalidRequest("task: a task ID or name (web.1) is required")
    limits.check_text("task", ref, limits.MAX_REF)
    task = view.tasks.get(ref)
    if task is not None:
        return task
    by_prefix = [t for task_id, t in view.tasks.items() if task_id.startswith(ref)]
    if len(by_prefix) > 1:
        raise InvalidRequest(f'task "{ref}" is ambiguous: it is the start of {len(by_prefix)} task IDs')
    if by_prefix:
        return by_prefix[0]
    found = _by_name(view, ref)
    if found is None:
        raise NotFound(f"no such task: {ref}")
    return found


def _by_name(view: View, ref: str) -> pb.Task | None:
    head, _, last = ref.rpartition(".")
    if not head:
        return None
    # web.1.<task id>: that very task, if it is of that slot.
    task = view.tasks.get(last)
    if task is not None:
        return task if slot_name(task) == head else None
    service = _service(view, head)
    if service is None:
        return None
    tasks = list(view.tasks_by_service.get(service.meta.id, {}).values())
    if service.spec.mode in (pb.SERVICE_MODE_GLOBAL, pb.SERVICE_MODE_GLOBAL_JOB):
        node_id = _node_id(view, last)
        slot_tasks = [t for t in tasks if t.node_id == node_id and not t.slot] if node_id else []
    else:
        if not last.isdigit():
            return None
        slot_tasks = [t for t in tasks if t.slot == int(last)]
    return current(slot_tasks)


def current(slot_tasks: list[pb.Task]) -> pb.Task | None:
    """A slot's current task: the newest desired to run, else the newest."""
    if not slot_tasks:
        return None
    wanted = [t for t in slot_tasks if t.desired_state <= RUNNING]
    return max(wanted or slot_tasks, key=lambda t: (t.meta.created_at, t.meta.id))


def _service(view: View, ref: str) -> pb.Service | None:
    service = view.services.get(ref)
    if service is not None:
        return service
    named = [s for s in view.services.values() if s.spec.name == ref]
    if len(named) == 1:
        return named[0]
    by_prefix = [s for sid, s in view.services.items() if sid.startswith(ref)]
    return by_prefix[0] if len(by_prefix) == 1 else None


def _node_id(view: View, ref: str) -> str:
    if ref in view.nodes:
        return ref
    named = [n.meta.id for n in view.nodes.values() if n.description.hostname == ref]
    if len(named) == 1:
        return named[0]
    by_prefix = [nid for nid in view.nodes if nid.startswith(ref)]
    return by_prefix[0] if len(by_prefix) == 1 else ""


def has_started(task: pb.Task) -> bool:
    """Whether the task's process or container was ever started (so it has
    output to show, or a container to commit)."""
    status = task.status
    return status.pid != 0 or status.state in (
        pb.TASK_STATE_RUNNING,
        pb.TASK_STATE_COMPLETE,
        pb.TASK_STATE_FAILED,
    )


def is_running(task: pb.Task) -> bool:
    """Started and not ended, and still meant to run: somewhere to exec."""
    return (
        task.desired_state <= RUNNING
        and task.status.state in (pb.TASK_STATE_STARTING, RUNNING)
        and has_started(task)
    )
