"""The secrets and configs part of the ControlAPI: create, inspect, list, remove.

Both are small immutable files for tasks (at most ``limits.MAX_FILE_DATA``).
A secret's value is sealed with the cluster's seal key, bound to the
secret's ID, before it is stored: etcd, its snapshots and its watch streams
never hold it in plain text, and no call returns it (only the dispatcher
unseals it, into the copy of a task it sends to the task's node). A config
is stored as it is and shown by ``GetConfig``.

Names are claimed, and their users tracked, by index keys written in the
same transaction as the object (``references``): a name is unique across
managers, and an object that a service uses cannot be removed.
"""

from __future__ import annotations

import contextlib
import hmac
import logging
from typing import Any

from shoal.ids import ID_LENGTH, is_id, new_id
from shoal.manager import seal
from shoal.manager.controlapi import references
from shoal.manager.controlapi.common import ControlBase, Ctx, resolve, rpc
from shoal.manager.controlapi.references import FileKind
from shoal.manager.store import AlreadyExists, NotFound, VersionConflict, clone, on_conflict
from shoal.protos import control_pb2 as cpb
from shoal.protos import objects_pb2 as pb
from shoal.rules import limits, validate
from shoal.rules.errors import InvalidRequest

log = logging.getLogger(__name__)

WRITE_ATTEMPTS = 5

FileObject = pb.Secret | pb.Config


def shown(obj: FileObject) -> Any:
    """An object as the API returns it: a secret without its value."""
    if isinstance(obj, pb.Config):
        return obj
    out = clone(obj)
    out.sealed_data = b""
    out.spec.data = b""
    return out


def listed(config: pb.Config) -> pb.Config:
    """A config as a listing shows it: without its data (a listing of every
    config could be far larger than a message may be)."""
    out = clone(config)
    out.spec.data = b""
    return out


class FileAPI(ControlBase):
    # -------------------------------------------------------------- secrets

    @rpc
    async def CreateSecret(self, request: cpb.CreateSecretRequest, context: Ctx) -> pb.Secret:
        spec = clone(request.spec)
        data = spec.data
        spec.data = b""

        def build(object_id: str) -> pb.Secret:
            secret = pb.Secret(spec=spec, size=len(data))
            secret.meta.id = object_id
            secret.sealed_data = seal.seal(self.keyring.seal_key(), data, object_id.encode())
            return secret

        created = await self._create(
            "secret", spec.name, spec.labels, data, request.id, request.reuse_same, build
        )
        log.info("secret %s (%s) created", spec.name, created.meta.id)
        return shown(created)  # type: ignore[no-any-return]

    @rpc
    async def GetSecret(self, request: cpb.ObjectRef, context: Ctx) -> pb.Secret:
        return shown(self.resolve_file("secret", request.ref))  # type: ignore[no-any-return]

    @rpc
    async def ListSecrets(self, request: cpb.ListSecretsRequest, context: Ctx) -> cpb.ListSecretsResponse:
        secrets = sorted(self.view.secrets.values(), key=lambda s: s.spec.name)
        return cpb.ListSecretsResponse(secrets=[shown(s) for s in secrets])

    @rpc
    async def RemoveSecret(self, request: cpb.ObjectRef, context: Ctx) -> cpb.RemoveObjectResponse:
        return await self._remove("secret", request.ref)

    # -------------------------------------------------------------- configs

    @rpc
    async def CreateConfig(self, request: cpb.CreateConfigRequest, context: Ctx) -> pb.Config:
        spec = clone(request.spec)

        def build(object_id: str) -> pb.Config:
            config = pb.Config(spec=spec, size=len(spec.data))
            config.meta.id = object_id
            return config

        created = await self._create(
            "config", spec.name, spec.labels, spec.data, request.id, request.reuse_same, build
        )
        log.info("config %s (%s) created", spec.name, created.meta.id)
        assert isinstance(created, pb.Config)
        return created

    @rpc
    async def GetConfig(self, request: cpb.ObjectRef, context: Ctx) -> pb.Config:
        config = self.resolve_file("config", request.ref)
        assert isinstance(config, pb.Config)
        return config

    @rpc
    async def ListConfigs(self, request: cpb.ListConfigsRequest, context: Ctx) -> cpb.ListConfigsResponse:
        configs: list[pb.Config] = sorted(self.view.configs.values(), key=lambda c: c.spec.name)
        return cpb.ListConfigsResponse(configs=[listed(c) for c in configs])

    @rpc
    async def RemoveConfig(self, request: cpb.ObjectRef, context: Ctx) -> cpb.RemoveObjectResponse:
        return await self._remove("config", request.ref)

    # -------------------------------------------------------------- shared

    def _table(self, kind: FileKind) -> dict[str, FileObject]:
        return self.view.secrets if kind == "secret" else self.view.configs  # type: ignore[return-value]

    def resolve_file(self, kind: FileKind, ref: str) -> FileObject:
        obj: FileObject = resolve(ref, self._table(kind), lambda o: o.spec.name, kind)
        return obj

    async def _get(self, obj: FileObject) -> FileObject:
        """The stored object, read from etcd (after a conflict)."""
        if isinstance(obj, pb.Secret):
            return await self.store.get(pb.Secret, obj.meta.id)
        return await self.store.get(pb.Config, obj.meta.id)

    def _same_bytes(self, obj: FileObject, data: bytes) -> bool:
        if isinstance(obj, pb.Config):
            return hmac.compare_digest(obj.spec.data, data)
        plain = seal.unseal(self.keyring.seal_key(), obj.sealed_data, obj.meta.id.encode())
        return hmac.compare_digest(plain, data)

    async def _create(
        self,
        kind: FileKind,
        name: str,
        labels: Any,
        data: bytes,
        object_id: str,
        reuse_same: bool,
        build: Any,
    ) -> FileObject:
        validate.validate_file_name(kind, name)
        limits.check_labels("label", labels)
        validate.validate_file_data(kind, data)
        if object_id and not is_id(object_id):
            raise InvalidRequest(f'id "{object_id[:40]}": expected {ID_LENGTH} characters of 0-9a-z')
        object_id = object_id or new_id()
        table = self._table(kind)
        async for attempt in on_conflict(WRITE_ATTEMPTS):
            with attempt:
                existing = table.get(object_id) or references.by_name(table.values()).get(name)
                if existing is not None and existing.spec.name == name:
                    if existing.meta.id == object_id or (reuse_same and self._same_bytes(existing, data)):
                        return existing  # a retried create, or the same bytes again
                    raise AlreadyExists(
                        f"{kind} {name} already exists"
                        + (" with other contents: " if reuse_same else ": ")
                        + f"{kind}s cannot be changed; create one of another name and move services "
                        f"to it (service update --{kind}-rm OLD --{kind}-add NEW)"
                    )
                total = sum(o.size for o in table.values())
                if total + len(data) > limits.MAX_FILE_TOTAL:
                    raise InvalidRequest(
                        f"{kind}s: the cluster holds at most {limits.MAX_FILE_TOTAL // limits.MIB} MiB "
                        f"of them ({total // limits.KIB} KiB now); remove some first"
                    )
                writes = await references.create_writes(self.store, kind, name, object_id)
                obj = build(object_id)
                batch = self.store.batch().create(obj)
                for w in writes:
                    w.add_to(batch)
                try:
                    await batch.commit_all_or_nothing()
                    return obj  # type: ignore[no-any-return]
                except VersionConflict:
                    with contextlib.suppress(NotFound):
                        self.view.observe(await self._get(obj))
                    raise
        raise AssertionError("unreachable")

    async def _remove(self, kind: FileKind, ref: str) -> cpb.RemoveObjectResponse:
        async for attempt in on_conflict(WRITE_ATTEMPTS):
            with attempt:
                obj = self.resolve_file(kind, ref)
                writes = await references.remove_writes(
                    self.view, self.store, kind, obj.spec.name, obj.meta.id
                )
                batch = self.store.batch().delete(obj)
                for w in writes:
                    w.add_to(batch)
                try:
                    await batch.commit_all_or_nothing()
                except VersionConflict:
                    try:
                        self.view.observe(await self._get(obj))
                    except NotFound:
                        raise NotFound(f"{kind} {ref} not found") from None
                    raise
                log.info("%s %s (%s) removed", kind, obj.spec.name, obj.meta.id)
                return cpb.RemoveObjectResponse(id=obj.meta.id, name=obj.spec.name)
        raise AssertionError("unreachable")
