"""What a task carries to its node that is never stored with it: registry
credentials and the values of its secrets and configs.

``as_sent(view, keyring, task)`` is the copy of a task the dispatcher puts
on the session of the task's own node (the routing never sends a task to
another node's session). Registry credentials are unsealed from the
service; secret values from each secret (bound to its ID), config values
as stored. Files go only while the task is yet to run (desired at most
running, observed before running): the agent writes them to the task's
tmpfs before it starts the task, so a task that runs, ended or is being
stopped gets no values, and a node holds them for as long as it needs
them only.
"""

from __future__ import annotations

import logging

from shoal.manager import seal
from shoal.manager.keyring import KeyRing
from shoal.manager.store import View, clone
from shoal.protos import objects_pb2 as pb

log = logging.getLogger(__name__)


def needs_files(task: pb.Task) -> bool:
    """Whether the task's node should get its secrets' and configs' values now."""
    container = task.spec.container
    return (
        bool(container.secrets or container.configs)
        and task.desired_state <= pb.TASK_STATE_RUNNING
        and task.status.state < pb.TASK_STATE_RUNNING
    )


def file_values(view: View, keyring: KeyRing, task: pb.Task) -> dict[str, bytes]:
    """The values of the task's secrets and configs (object ID -> bytes);
    one that is gone (or cannot be unsealed) is left out, and the agent
    rejects the task naming it."""
    values: dict[str, bytes] = {}
    container = task.spec.container
    for ref in container.secrets:
        secret = view.secrets.get(ref.id)
        if secret is None or ref.id in values:
            continue
        try:
            values[ref.id] = seal.unseal(keyring.seal_key(), secret.sealed_data, ref.id.encode())
        except Exception:
            log.warning("cannot unseal secret %s for task %s", secret.spec.name, task.meta.id)
    for ref in container.configs:
        config = view.configs.get(ref.id)
        if config is not None:
            values[ref.id] = config.spec.data
    return values


def registry_auth(view: View, keyring: KeyRing, task: pb.Task) -> str:
    """The service's registry credentials, unsealed; "" when it has none."""
    service = view.services.get(task.service_id)
    if service is None or not service.registry_auth_sealed:
        return ""
    try:
        key = keyring.seal_key()
        return seal.unseal(key, service.registry_auth_sealed, service.meta.id.encode()).decode()
    except Exception:
        log.warning("cannot unseal the registry credentials of service %s", service.spec.name)
        return ""


def as_sent(view: View, keyring: KeyRing, task: pb.Task) -> pb.Task:
    """The task as sent to its node (the stored task itself when there is
    nothing to add)."""
    auth = registry_auth(view, keyring, task)
    files = file_values(view, keyring, task) if needs_files(task) else {}
    if not auth and not files:
        return task
    sent = clone(task)
    sent.registry_auth = auth
    for object_id, value in files.items():
        sent.files[object_id] = value
    return sent
