"""What every ControlAPI call shares: who may call, error translation, lookups.

``rpc`` wraps each call: it authorizes the caller (admin or manager role),
refuses everything but a few calls while this manager is locked, refuses
requests above ``limits.MAX_REQUEST_BYTES``, and turns our errors into gRPC
status codes: the only place that translation happens.
"""

from __future__ import annotations

import functools
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, TypeAlias, TypeVar

import grpc

from shoal import metadata, pki
from shoal.manager.auth import Authorizer
from shoal.manager.controlapi.logs import LogGatherer
from shoal.manager.execsource import Peers, TaskIOSource
from shoal.manager.keyring import KeyRing, Locked
from shoal.manager.store import (
    AlreadyExists,
    LeadershipLost,
    NotFound,
    Store,
    StoreUnavailable,
    VersionConflict,
    View,
)
from shoal.protos import control_pb2 as cpb
from shoal.protos import objects_pb2 as pb
from shoal.rules import limits, validate
from shoal.rules.errors import InvalidRequest

Ctx: TypeAlias = "grpc.aio.ServicerContext[Any, Any]"
R = TypeVar("R")

_STATUS: list[tuple[type[Exception], grpc.StatusCode]] = [
    (InvalidRequest, grpc.StatusCode.INVALID_ARGUMENT),
    (NotFound, grpc.StatusCode.NOT_FOUND),
    (AlreadyExists, grpc.StatusCode.ALREADY_EXISTS),
    (VersionConflict, grpc.StatusCode.ABORTED),
    (LeadershipLost, grpc.StatusCode.UNAVAILABLE),
    (StoreUnavailable, grpc.StatusCode.UNAVAILABLE),
    (Locked, grpc.StatusCode.FAILED_PRECONDITION),
]

_OURS = tuple(cls for cls, _ in _STATUS)

# What a locked manager still answers: enough to see that it is locked, and
# to unlock it.
ALLOWED_WHILE_LOCKED = frozenset({"GetClusterInfo", "GetCAStatus", "UnlockManager"})


class ControlBase:
    """The state every part of the ControlAPI works with."""

    def __init__(
        self,
        view: View,
        store: Store,
        authorizer: Authorizer,
        keyring: KeyRing,
        managers: Callable[[], Awaitable[list[cpb.ManagerInfo]]],
        logs: LogGatherer | None = None,
        stats: Callable[[], dict[str, float]] | None = None,
        on_unlock: Callable[[], None] | None = None,
        taskio: TaskIOSource | None = None,
        peers: Peers | None = None,
    ) -> None:
        self.view = view
        self.store = store
        self.auth = authorizer
        self.keyring = keyring
        self.managers = managers
        self.logs = logs
        self.stats = stats or dict
        self.on_unlock = on_unlock or (lambda: None)
        # exec and commit: the nodes' sessions, and the other managers.
        self.taskio = taskio
        self.peers = peers

    def resolve_service(self, ref: str) -> pb.Service:
        service: pb.Service = resolve(ref, self.view.services, lambda s: s.spec.name, "service")
        return service

    def resolve_node(self, ref: str) -> pb.Node:
        node: pb.Node = resolve(ref, self.view.nodes, lambda n: n.description.hostname, "node")
        return node

    def max_replicas(self) -> int:
        return validate.replicas_limit(self.view.cluster())

    def cluster(self) -> pb.Cluster:
        cluster = self.view.cluster()
        if cluster is None:
            raise StoreUnavailable("the cluster is not initialised yet")
        return cluster

    async def authorize(self, name: str, request: Any, context: Ctx) -> pki.Identity:
        ident = await self.auth.require(context, pki.ROLE_ADMIN, pki.ROLE_MANAGER)
        if name not in ALLOWED_WHILE_LOCKED and self.keyring.locked:
            await context.abort(grpc.StatusCode.FAILED_PRECONDITION, str(Locked()))
        size = request.ByteSize()
        if size > limits.MAX_REQUEST_BYTES:
            await context.abort(
                grpc.StatusCode.INVALID_ARGUMENT,
                f"request: at most {limits.MAX_REQUEST_BYTES} bytes, got {size}",
            )
        return ident


async def abort_for(context: Ctx, err: Exception) -> None:
    code = next(code for cls, code in _STATUS if isinstance(err, cls))
    await context.abort(code, str(err))


def rpc(fn: Callable[..., Awaitable[R]]) -> Callable[..., Awaitable[R]]:
    """Authorize and translate our errors to status codes (unary calls)."""

    @functools.wraps(fn)
    async def wrapper(self: ControlBase, request: Any, context: Ctx) -> R:
        await self.authorize(fn.__name__, request, context)
        try:
            response = await fn(self, request, context)
        except _OURS as err:
            await abort_for(context, err)
            raise AssertionError("unreachable") from err
        stale = self.view.stale_for
        if stale:
            context.set_trailing_metadata(((metadata.STALE_SECONDS, f"{stale:.0f}"),))
        return response

    return wrapper


def stream_rpc(fn: Callable[..., AsyncIterator[R]]) -> Callable[..., AsyncIterator[R]]:
    """As ``rpc``, for calls that stream their answer."""

    @functools.wraps(fn)
    async def wrapper(self: ControlBase, request: Any, context: Ctx) -> AsyncIterator[R]:
        await self.authorize(fn.__name__, request, context)
        try:
            async for item in fn(self, request, context):
                yield item
        except _OURS as err:
            await abort_for(context, err)

    return wrapper


def resolve(ref: str, table: dict[str, Any], name_of: Callable[[Any], str], what: str) -> Any:
    """An object by ID, name, or unique ID prefix."""
    if not ref:
        raise InvalidRequest(f"{what}: a name or ID is required")
    limits.check_text(what, ref, limits.MAX_REF)
    if ref in table:
        return table[ref]
    by_name = [obj for obj in table.values() if name_of(obj) == ref]
    if len(by_name) == 1:
        return by_name[0]
    by_prefix = [obj for obj_id, obj in table.items() if obj_id.startswith(ref)]
    if len(by_prefix) == 1:
        return by_prefix[0]
    if len(by_prefix) > 1 or len(by_name) > 1:
        raise InvalidRequest(f'{what} "{ref}" is ambiguous: it matches more than one {what}')
    raise NotFound(f"{what} {ref} not found")
