"""``shoal commit`` on the docker runtime: the engine's commit, then a push.

The commit is ``POST /commit`` (paused while it runs unless asked not to,
``--change`` instructions applied); the push, when asked for, uses the
credentials the client sent (``--with-registry-auth``). A push that fails
leaves the committed image on the node and is reported on its own, with the
registry's words.
"""

from __future__ import annotations

from typing import Any

from shoal.agent.runtime.base import CommitFailed, CommitOptions, CommitResult, TaskRuntimeError
from shoal.agent.runtime.docker.engine import Engine
from shoal.agent.runtime.docker.options import registry_auth
from shoal.protos import objects_pb2 as pb


async def commit_container(engine: Engine, container_id: str, options: CommitOptions) -> CommitResult:
    try:
        made: dict[str, Any] = await engine.run(
            "committing the container",
            engine.api.commit,
            container_id,
            repository=options.repository,
            tag=options.tag,
            message=options.message or None,
            author=options.author or None,
            pause=options.pause,
            changes=list(options.changes) or None,
        )
    except TaskRuntimeError as err:
        raise CommitFailed(str(err)) from None
    image_id = str(made.get("Id", ""))
    if not options.push:
        return CommitResult(image_id)
    # Decoded as a task's credentials are (the same X-Registry-Auth form).
    auth = registry_auth(pb.Task(registry_auth=options.registry_auth))
    reference = f"{options.repository}:{options.tag}"
    try:
        await engine.run(f"pushing {reference}", _push, engine.api, options.repository, options.tag, auth)
    except TaskRuntimeError as err:
        return CommitResult(image_id, push_error=str(err))
    return CommitResult(image_id, pushed=True)


def _push(api: Any, repository: str, tag: str, auth: dict[str, str] | None) -> None:
    import docker.errors

    for event in api.push(repository, tag=tag, stream=True, decode=True, auth_config=auth):
        # A push that fails midway says so in the stream, not by its status.
        if isinstance(event, dict) and event.get("error"):
            raise docker.errors.APIError(str(event["error"]), explanation=str(event["error"]))
