"""ControlAPI: what the admin CLI calls, answered by any manager.

One gRPC servicer made of the parts, one module each: ``cluster`` (settings,
tokens, admin bundles, CA, autolock), ``nodes``, ``services``, ``tasks``
(listing and logs), ``taskio`` (exec and commit inside a task), ``files``
(secrets and configs), ``networks``. What they share, including the one place our errors
become gRPC status codes, is in ``common``.

Reads come from the manager's view; writes go through the store with the
version the caller (or the view) saw, so concurrent writers get a conflict,
never a lost update.
"""

from __future__ import annotations

from shoal.manager.controlapi.cluster import ClusterAPI
from shoal.manager.controlapi.files import FileAPI
from shoal.manager.controlapi.networks import NetworkAPI
from shoal.manager.controlapi.nodes import NodeAPI
from shoal.manager.controlapi.services import ServiceAPI
from shoal.manager.controlapi.taskio import TaskIOAPI
from shoal.manager.controlapi.tasks import TaskAPI
from shoal.protos import control_pb2_grpc as cgrpc


class Control(
    ClusterAPI, NodeAPI, ServiceAPI, TaskAPI, TaskIOAPI, FileAPI, NetworkAPI, cgrpc.ControlServicer
):
    """The whole ControlAPI."""
