"""``/secrets`` and ``/configs``: list, create, inspect, update, remove.

shoal's secrets and configs are immutable (the ControlAPI has no update).
The engine lets an update change labels only, and ``docker stack deploy``
sends one for every secret and config of a stack deployed again, with the
same bytes. So an update is accepted when it changes nothing: the same
name and labels, and (when it sends data) the same bytes, which the
ControlAPI itself checks (a create of the same name with ``reuse_same``
returns the existing object only for the very same bytes). Anything else is
refused, naming what cannot change.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from shoal.manager.controlapi.servicer import Control
from shoal.manager.dockerapi import filespecs, filters
from shoal.manager.dockerapi.errors import BAD_REQUEST, CONFLICT, DockerError
from shoal.manager.dockerapi.handlers import (
    Handler,
    Route,
    backend,
    call,
    empty_response,
    json_response,
    read_json,
    version_param,
)
from shoal.protos import control_pb2 as cpb

NO_CONTENT = 204


@dataclass(frozen=True)
class Kind:
    """What differs between secrets and configs."""

    word: str  # "secret", "config"
    list_filters: tuple[str, ...]
    show: Callable[[Any], dict[str, Any]]

    def methods(self, control: Control) -> tuple[Any, Any, Any, Any]:
        """(list, get, create, remove) of the ControlAPI for this kind."""
        if self.word == "secret":
            return control.ListSecrets, control.GetSecret, control.CreateSecret, control.RemoveSecret
        return control.ListConfigs, control.GetConfig, control.CreateConfig, control.RemoveConfig

    def create_request(self, spec: filespecs.FileSpec, reuse_same: bool = False) -> Any:
        if self.word == "secret":
            return cpb.CreateSecretRequest(
                spec={"name": spec.name, "labels": spec.labels, "data": spec.data}, reuse_same=reuse_same
            )
        return cpb.CreateConfigRequest(
            spec={"name": spec.name, "labels": spec.labels, "data": spec.data}, reuse_same=reuse_same
        )

    def list_request(self) -> Any:
        return cpb.ListSecretsRequest() if self.word == "secret" else cpb.ListConfigsRequest()


SECRETS = Kind("secret", ("names", "name", "id", "label"), filespecs.secret)
CONFIGS = Kind("config", ("name", "id", "label"), filespecs.config)


def _handlers(kind: Kind) -> list[Route]:
    plural = f"/{kind.word}s"

    async def list_all(request: web.Request) -> web.StreamResponse:
        wanted = filters.parse(request.query.get("filters"), kind.list_filters)
        listing, _, _, _ = kind.methods(backend(request).control)
        response = await call(request, listing, kind.list_request())
        objects = response.secrets if kind.word == "secret" else response.configs
        out = [
            kind.show(o)
            for o in objects
            if filters.exact(wanted, "names", o.spec.name)
            and filters.prefix(wanted, "name", o.spec.name)
            and filters.prefix(wanted, "id", o.meta.id)
            and filters.labels(wanted, "label", o.spec.labels)
        ]
        return json_response(out)

    async def create(request: web.Request) -> web.StreamResponse:
        spec = filespecs.file_spec(await read_json(request), kind.word)
        _, _, make, _ = kind.methods(backend(request).control)
        created = await call(request, make, kind.create_request(spec))
        return json_response({"ID": created.meta.id}, 201)

    async def inspect(request: web.Request) -> web.StreamResponse:
        _, get, _, _ = kind.methods(backend(request).control)
        return json_response(kind.show(await call(request, get, cpb.ObjectRef(ref=request.match_info["id"]))))

    async def update(request: web.Request) -> web.StreamResponse:
        version = version_param(request, kind.word)
        spec = filespecs.file_spec(await read_json(request), kind.word)
        _, get, make, _ = kind.methods(backend(request).control)
        current = await call(request, get, cpb.ObjectRef(ref=request.match_info["id"]))
        name = current.spec.name
        if version != current.meta.version:
            raise DockerError(
                CONFLICT, f"update out of sequence: {kind.word} {name} is at version {current.meta.version}"
            )
        immutable = f"shoal's {kind.word}s cannot be changed; create one of another name instead"
        if spec.name and spec.name != name:
            raise DockerError(BAD_REQUEST, f"Name: {kind.word} {name} cannot be renamed ({immutable})")
        if spec.labels != dict(current.spec.labels):
            raise DockerError(
                BAD_REQUEST, f"Labels: the labels of {kind.word} {name} cannot change ({immutable})"
            )
        if spec.data_given:
            same = filespecs.FileSpec(name, dict(current.spec.labels), spec.data)
            kept = await call(request, make, kind.create_request(same, reuse_same=True))
            if kept.meta.id != current.meta.id:  # it was removed meanwhile: put things back
                await call(
                    request, kind.methods(backend(request).control)[3], cpb.ObjectRef(ref=kept.meta.id)
                )
                raise DockerError(CONFLICT, f"update out of sequence: {kind.word} {name} was removed")
        return empty_response()

    async def remove(request: web.Request) -> web.StreamResponse:
        _, _, _, drop = kind.methods(backend(request).control)
        await call(request, drop, cpb.ObjectRef(ref=request.match_info["id"]))
        return empty_response(NO_CONTENT)

    handlers: list[tuple[str, str, Handler]] = [
        ("GET", plural, list_all),
        ("POST", f"{plural}/create", create),
        ("GET", f"{plural}/{{id}}", inspect),
        ("POST", f"{plural}/{{id}}/update", update),
        ("DELETE", f"{plural}/{{id}}", remove),
    ]
    return handlers


ROUTES: list[Route] = [*_handlers(SECRETS), *_handlers(CONFIGS)]
