"""The services part of the ControlAPI: create, inspect, update, scale,
roll back, remove, list.

Every spec is defaulted (``shoal.specs``) and validated (``validate``) here;
its secret and config references are resolved to the objects of those
names. Names and published ports are claimed, and the secrets and configs
it uses are marked used, in the same transaction as the service
(``unique``, ``references``); a create carries its own ID so that a retried
create is the same create. With ``validate_only`` a create or update checks
all of that and stores nothing.
"""

from __future__ import annotations

import base64
import contextlib
import json
import secrets
from typing import Any

from shoal import specs
from shoal.ids import ID_LENGTH, is_id, new_id
from shoal.manager import seal
from shoal.manager.controlapi import references, unique
from shoal.manager.controlapi.common import ControlBase, Ctx, rpc
from shoal.manager.controlapi.networks import check_networks
from shoal.manager.nodes import running_on_down_nodes
from shoal.manager.store import (
    AlreadyExists,
    NotFound,
    VersionConflict,
    clone,
    now_ns,
    on_conflict,
    update_with_retry,
)
from shoal.protos import control_pb2 as cpb
from shoal.protos import objects_pb2 as pb
from shoal.rules import limits, validate
from shoal.rules.errors import InvalidRequest

# Attempts of a write whose index claims raced another writer.
WRITE_ATTEMPTS = 5


class ServiceAPI(ControlBase):
    @rpc
    async def CreateService(self, request: cpb.CreateServiceRequest, context: Ctx) -> pb.Service:
        spec = clone(request.spec)
        if not spec.name:
            spec.name = _generated_name()
        specs.apply_defaults(spec)
        validate.validate_service_spec(spec, self.max_replicas())
        check_networks(self.view, spec, request.planned_networks if request.validate_only else ())
        self._resolve_files(spec, request.planned_secrets, request.planned_configs, request.validate_only)
        if request.id and not is_id(request.id):
            raise InvalidRequest(f'id "{request.id[:40]}": expected {ID_LENGTH} characters of 0-9a-z')
        service_id = request.id or new_id()
        if request.validate_only:
            await unique.plan(self.view, self.store, service_id, None, spec)
            checked = pb.Service(spec=spec, spec_version=1)
            checked.meta.id = service_id
            return checked
        async for attempt in on_conflict(WRITE_ATTEMPTS):
            with attempt:
                existing = self.view.services.get(service_id)
                # A retried create gets the ports its first attempt got.
                unique.assign_published(self.view, spec, existing.spec if existing is not None else None)
                done = self._same_create(existing, spec)
                if done is not None:
                    return done
                service = pb.Service(spec=spec, spec_version=1)
                service.meta.id = service_id
                writes = await unique.plan(self.view, self.store, service_id, None, spec)
                writes += await references.service_writes(self.store, service_id, None, service)
                writes.append(unique.new_vip(self.view, self.store, service))
                if request.registry_auth:
                    service.registry_auth_sealed = await self._seal_auth(request.registry_auth, service_id)
                batch = self.store.batch().create(service)
                for w in writes:
                    w.add_to(batch)
                try:
                    await batch.commit_all_or_nothing()
                    return service
                except VersionConflict:
                    # A claim raced another writer, or the service exists (a
                    # retry whose first attempt did commit): look again.
                    with contextlib.suppress(NotFound):
                        self.view.observe(await self.store.get(pb.Service, service_id))
                    raise
        raise AssertionError("unreachable")

    @staticmethod
    def _same_create(existing: pb.Service | None, spec: pb.ServiceSpec) -> pb.Service | None:
        """The service a retried create already made; AlreadyExists when its ID
        is taken by another service."""
        if existing is None:
            return None
        if existing.spec.SerializeToString(deterministic=True) == spec.SerializeToString(deterministic=True):
            return existing
        raise AlreadyExists(f"service ID {existing.meta.id} is already used by service {existing.spec.name}")

    async def _seal_auth(self, auth: str, service_id: str) -> bytes:
        """Check the credentials' shape and seal them with the cluster's key."""
        limits.check_text("registry_auth", auth, limits.MAX_REGISTRY_AUTH)
        try:
            decoded = json.loads(base64.b64decode(auth, validate=True))
            if not isinstance(decoded, dict):
                raise ValueError
        except ValueError:
            raise InvalidRequest(
                "registry_auth: expected base64 of a JSON object (username, password)"
            ) from None
        return seal.seal(self.keyring.seal_key(), auth.encode(), service_id.encode())

    def _resolve_files(
        self, spec: pb.ServiceSpec, planned_secrets: Any, planned_configs: Any, validate_only: bool
    ) -> None:
        """Point each secret and config reference at the object of its name
        (NotFound when there is none; with validate_only, a name the caller
        is about to create is let through), and bound what one task carries."""
        container = spec.task.container
        total = 0
        kinds: list[tuple[references.FileKind, Any, Any, set[str]]] = [
            ("secret", container.secrets, self.view.secrets, set(planned_secrets)),
            ("config", container.configs, self.view.configs, set(planned_configs)),
        ]
        for kind, refs, table, planned in kinds:
            names = references.by_name(table.values())
            for ref in refs:
                obj = names.get(ref.name)
                if obj is None:
                    if validate_only and ref.name in planned:
                        ref.id = ""
                        continue
                    raise NotFound(f"{kind} {ref.name} not found (create it with `shoal {kind} create`)")
                ref.id = obj.meta.id
                total += obj.size
        if total > limits.MAX_TASK_FILE_BYTES:
            raise InvalidRequest(
                f"secrets and configs: at most {limits.MAX_TASK_FILE_BYTES // limits.MIB} MiB in all per "
                f"service (each task carries them to its node), got {total // limits.KIB} KiB"
            )

    @rpc
    async def GetService(self, request: cpb.ObjectRef, context: Ctx) -> pb.Service:
        return self.resolve_service(request.ref)

    @rpc
    async def UpdateService(self, request: cpb.UpdateServiceRequest, context: Ctx) -> pb.Service:
        current = self.resolve_service(request.ref)
        if request.version and request.version != current.meta.version:
            raise VersionConflict(
                f"service {current.spec.name} was changed by someone else since you read it "
                "(version conflict); retry"
            )
        service = clone(current)
        if request.version:
            service.meta.version = request.version
        if request.rollback:
            if not current.HasField("previous_spec"):
                raise InvalidRequest(f"service {current.spec.name} has no previous spec to roll back to")
            spec = clone(current.previous_spec)
        else:
            spec = clone(request.spec)
            if spec.mode != current.spec.mode:
                raise InvalidRequest("mode: cannot change the mode of an existing service")
            specs.apply_defaults(spec)
            validate.validate_service_spec(spec, self.max_replicas())
            check_networks(self.view, spec, request.planned_networks if request.validate_only else ())
        self._resolve_files(spec, request.planned_secrets, request.planned_configs, request.validate_only)
        if spec.name != current.spec.name:
            raise InvalidRequest(f'name: a service cannot be renamed (it is "{current.spec.name}")')
        unique.assign_published(self.view, spec, current.spec)
        if request.force:
            spec.task.force_update = current.spec.task.force_update + 1
        if request.registry_auth:
            service.registry_auth_sealed = await self._seal_auth(request.registry_auth, current.meta.id)
        template_changed = spec.task.SerializeToString(
            deterministic=True
        ) != current.spec.task.SerializeToString(deterministic=True) or (
            list(spec.ports),
            list(spec.expose),
        ) != (
            list(current.spec.ports),
            list(current.spec.expose),
        )
        if template_changed:
            service.previous_spec.CopyFrom(current.spec)
            service.previous_spec_version = current.spec_version
            service.spec_version = (
                specs.rollback_version(current) if request.rollback else specs.next_version(current)
            )
            # The updater rolls the new version out; this is where it starts.
            if request.rollback:
                service.update_status.state = pb.UPDATE_STATE_ROLLBACK_STARTED
                service.update_status.message = "manually requested rollback"
            else:
                service.update_status.state = pb.UPDATE_STATE_UPDATING
                service.update_status.message = "update in progress"
            service.update_status.started_at = now_ns()
            service.update_status.completed_at = 0
        service.spec.CopyFrom(spec)
        writes = await unique.plan(self.view, self.store, current.meta.id, current.spec, spec)
        if request.validate_only:
            return service
        writes += await references.service_writes(self.store, current.meta.id, current, service)
        if not writes:
            return await self.store.update(service)
        batch = self.store.batch().update(service)
        for w in writes:
            w.add_to(batch)
        await batch.commit_all_or_nothing()
        return service

    @rpc
    async def ScaleService(self, request: cpb.ScaleServiceRequest, context: Ctx) -> pb.Service:
        current = self.resolve_service(request.ref)
        if current.spec.mode not in (pb.SERVICE_MODE_REPLICATED, pb.SERVICE_MODE_REPLICATED_JOB):
            raise InvalidRequest(f"scale can only be used with replicated mode (service {current.spec.name})")
        validate.check_replicas("replicas", request.replicas, self.max_replicas())

        def scale(service: pb.Service) -> None:
            service.spec.replicas = request.replicas

        updated: pb.Service = await update_with_retry(
            self.view, self.store, pb.Service, current.meta.id, scale
        )
        return updated

    @rpc
    async def RemoveService(self, request: cpb.ObjectRef, context: Ctx) -> cpb.RemoveServiceResponse:
        async for attempt in on_conflict(WRITE_ATTEMPTS):
            with attempt:
                service = self.resolve_service(request.ref)
                writes = await unique.plan(self.view, self.store, service.meta.id, service.spec, None)
                writes += await unique.vip_release(self.store, service)
                writes += await references.service_writes(self.store, service.meta.id, service, None)
                batch = self.store.batch().delete(service)
                for w in writes:
                    w.add_to(batch)
                try:
                    await batch.commit_all_or_nothing()
                    return cpb.RemoveServiceResponse(id=service.meta.id, name=service.spec.name)
                except VersionConflict:
                    try:
                        self.view.observe(await self.store.get(pb.Service, service.meta.id))
                    except NotFound:
                        raise NotFound(f"service {request.ref} not found") from None
                    raise
        raise AssertionError("unreachable")

    @rpc
    async def ListServices(self, request: cpb.ListServicesRequest, context: Ctx) -> cpb.ListServicesResponse:
        out = cpb.ListServicesResponse()
        unseen = running_on_down_nodes(self.view.nodes, self.view.tasks_by_node)
        for service in sorted(self.view.services.values(), key=lambda s: s.spec.name):
            tasks = self.view.tasks_by_service.get(service.meta.id, {}).values()
            running = self.view.running_by_service[service.meta.id] - unseen[service.meta.id]
            completed = self.view.completed_by_service[service.meta.id]
            desired = service.spec.replicas
            if service.spec.mode in (pb.SERVICE_MODE_GLOBAL, pb.SERVICE_MODE_GLOBAL_JOB):
                desired = sum(1 for t in tasks if t.desired_state <= pb.TASK_STATE_RUNNING)
            out.services.add(
                service=service, replicas_desired=desired, replicas_running=running, completed=completed
            )
        return out


_ADJECTIVES = ["brave", "calm", "eager", "fond", "keen", "lucid", "merry", "quiet", "swift", "wise"]
_NOUNS = ["perch", "trout", "pike", "carp", "bass", "eel", "smelt", "shad", "tench", "roach"]


def _generated_name() -> str:
    """A Docker-like name for a service created without --name."""
    return f"{secrets.choice(_ADJECTIVES)}_{secrets.choice(_NOUNS)}{secrets.randbelow(100)}"
