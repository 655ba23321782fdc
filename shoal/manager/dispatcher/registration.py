"""A node's registration: what its Register message makes of its Node object.

The description is the agent's to say, every time; the labels it was started
with become the node's only when it first joins (later registrations keep
them, whatever the agent sends); the certificate presented is recorded; the
node is READY at the address it gave, held by this manager. A write that
lost a race with another writer of the node (`node update`, a registration
elsewhere) is done again on the version now stored.
"""

from __future__ import annotations

import contextlib

from shoal.manager.dispatcher.certificates import record
from shoal.manager.store import (
    AlreadyExists,
    NotFound,
    Store,
    VersionConflict,
    View,
    clone,
    now_ns,
    on_conflict,
)
from shoal.protos import dispatcher_pb2 as dpb
from shoal.protos import objects_pb2 as pb

REGISTER_ATTEMPTS = 10


async def register(
    view: View, store: Store, manager_id: str, node_id: str, reg: dpb.Register, cert_pem: bytes
) -> None:
    """Record the node as its Register says (retried on conflicts)."""
    async for attempt in on_conflict(REGISTER_ATTEMPTS):
        with attempt:
            await _register_once(view, store, manager_id, node_id, reg, cert_pem)


async def _register_once(
    view: View, store: Store, manager_id: str, node_id: str, reg: dpb.Register, cert_pem: bytes
) -> None:
    current = view.nodes.get(node_id)
    node = clone(current) if current is not None else pb.Node()
    node.meta.id = node_id
    node.description.CopyFrom(reg.description)
    # A node that joined with the manager token was recorded at join
    # (role manager) with no description: this is still its first join.
    if current is None or not current.description.hostname:
        # First join: the agent's labels become the node's.
        node.spec.labels.update(reg.description.labels)
    else:
        # Later registrations cannot change them, nor the record of them.
        node.description.labels.clear()
        node.description.labels.update(current.description.labels)
    certificate = record(view.cluster(), cert_pem, issued=False)
    if current is None or current.certificate.serial != certificate.serial:
        node.certificate.CopyFrom(certificate)
    node.status.state = pb.NODE_STATE_READY
    node.status.message = ""
    node.status.addr = reg.addr
    node.status.manager_id = manager_id
    node.status.timestamp = now_ns()
    try:
        if current is None:
            await store.create(node)
        else:
            await store.update(node)
    except (VersionConflict, AlreadyExists, NotFound):
        # Another writer (node update, a registration elsewhere): read
        # it again and redo.
        with contextlib.suppress(NotFound):
            view.observe(await store.get(pb.Node, node_id))
        raise VersionConflict(f"node {node_id} changed while it registered") from None
