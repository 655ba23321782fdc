"""Secret and config names, and who uses them, consistent across managers.

Like service names (``unique``), each name is an etcd key of its own,
written in the same transaction as the object it names; its value also
lists the services that use the object:

    <prefix>index/secrets/<name>     {"id": <secret ID>, "users": [<service ID>, ...]}
    <prefix>index/configs/<name>     the same for configs

A service *uses* a secret when its spec or its previous spec (a rollback
would bring it back) refers to it. Creating, updating and removing a
service rewrites the keys of the names it starts or stops using, comparing
each key's revision; removing a secret deletes its key only when nobody
uses it, comparing the revision too. So a service can never come to use a
secret that another manager removes at the same moment: one of the two
transactions fails and is planned again.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Literal

from shoal.manager.controlapi.unique import IndexWrite
from shoal.manager.store import AlreadyExists, NotFound, Store, View
from shoal.protos import objects_pb2 as pb
from shoal.rules.errors import InvalidRequest

FileKind = Literal["secret", "config"]
KINDS: tuple[FileKind, ...] = ("secret", "config")


@dataclass
class Holder:
    """What one index key holds: the object's ID and its users."""

    id: str
    users: list[str] = field(default_factory=list)

    def encode(self) -> bytes:
        return json.dumps({"id": self.id, "users": sorted(set(self.users))}, sort_keys=True).encode()

    @staticmethod
    def decode(value: bytes) -> Holder:
        data = json.loads(value)
        users = [u for u in data.get("users", []) if isinstance(u, str)]
        return Holder(str(data.get("id", "")), users)


def name_key(store: Store, kind: FileKind, name: str) -> bytes:
    return store.prefix + f"index/{kind}s/".encode() + name.encode()


def referenced(spec: pb.ServiceSpec | None) -> dict[FileKind, dict[str, str]]:
    """The secrets and configs a spec refers to: kind -> {name: ID}."""
    out: dict[FileKind, dict[str, str]] = {"secret": {}, "config": {}}
    if spec is not None:
        for ref in spec.task.container.secrets:
            out["secret"][ref.name] = ref.id
        for ref in spec.task.container.configs:
            out["config"][ref.name] = ref.id
    return out


def used_by(service: pb.Service | None) -> dict[FileKind, dict[str, str]]:
    """What a service uses: its spec's references and its previous spec's."""
    if service is None:
        return {"secret": {}, "config": {}}
    out = referenced(service.previous_spec if service.HasField("previous_spec") else None)
    for kind, names in referenced(service.spec).items():
        out[kind].update(names)
    return out


async def create_writes(store: Store, kind: FileKind, name: str, object_id: str) -> list[IndexWrite]:
    """The key that claims a new object's name; AlreadyExists when another
    object holds it (none when a retried create already wrote it)."""
    key = name_key(store, kind, name)
    held = await store.etcd.get(key)
    if held is None:
        return [IndexWrite("create", key, Holder(object_id).encode(), 0)]
    holder = Holder.decode(held.value)
    if holder.id != object_id:
        raise AlreadyExists(f'{kind} "{name}" already exists ({holder.id})')
    return []


async def remove_writes(
    view: View, store: Store, kind: FileKind, name: str, object_id: str
) -> list[IndexWrite]:
    """Free an object's name; refused (naming them) while services use it."""
    key = name_key(store, kind, name)
    held = await store.etcd.get(key)
    if held is None:
        return []
    holder = Holder.decode(held.value)
    if holder.id != object_id:
        return []
    if holder.users:
        names = sorted(_service_name(view, u) for u in holder.users)
        which = "service" if len(names) == 1 else "services"
        raise InvalidRequest(
            f"{kind} {name} is in use by {which} {', '.join(names)} (its spec or its previous spec); "
            f"remove it from them first (service update --{kind}-rm {name})"
        )
    return [IndexWrite("delete", key, b"", held.mod_revision)]


async def service_writes(
    store: Store, service_id: str, old: pb.Service | None, new: pb.Service | None
) -> list[IndexWrite]:
    """The index writes that take a service from using what `old` uses to
    what `new` uses (None: absent). A name it starts to use must be held by
    the ID the reference names (NotFound otherwise: removed meanwhile)."""
    before, after = used_by(old), used_by(new)
    writes: list[IndexWrite] = []
    for kind in KINDS:
        for name in sorted(set(before[kind]) | set(after[kind])):
            if (name in before[kind]) == (name in after[kind]):
                continue
            key = name_key(store, kind, name)
            held = await store.etcd.get(key)
            if name in after[kind]:
                if held is None or Holder.decode(held.value).id != after[kind][name]:
                    raise NotFound(f"{kind} {name} not found")
                holder = Holder.decode(held.value)
                holder.users.append(service_id)
            else:
                if held is None:
                    continue
                holder = Holder.decode(held.value)
                holder.users = [u for u in holder.users if u != service_id]
            writes.append(IndexWrite("update", key, holder.encode(), held.mod_revision))
    return writes


def _service_name(view: View, service_id: str) -> str:
    svc = view.services.get(service_id)
    return svc.spec.name if svc is not None else service_id


def by_name(objects: Iterable[pb.Secret | pb.Config]) -> dict[str, pb.Secret | pb.Config]:
    return {obj.spec.name: obj for obj in objects}
