"""Where a task's secrets and configs go: a pure plan, no I/O.

A task's files live in a directory of their own (a tmpfs, see ``tmpfs``):

    <dir>/secrets/<target>    each secret
    <dir>/configs/<target>    each config

The process runtime hands the two folders to the task as
``$SHOAL_SECRETS_DIR`` and ``$SHOAL_CONFIGS_DIR`` (a target is a path
relative to them). A container runtime bind-mounts each file read-only
where Docker would put it: a secret at ``/run/secrets/<target>``, a config
at ``/<target>``, or at the target itself when it is an absolute path.

Owner and mode: as the reference says (uid and gid default to 0 in a
container); without a mode, 0444, as Docker does, except secrets on the
process runtime: 0400, readable by the task's user only (the agent's). The
process runtime runs tasks as the agent's user, so a reference naming
another owner is refused rather than ignored.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from shoal.agent.runtime.base import FileMount, TaskRejected
from shoal.protos import objects_pb2 as pb

SECRETS_ENV = "SHOAL_SECRETS_DIR"
CONFIGS_ENV = "SHOAL_CONFIGS_DIR"
SECRETS_IN_CONTAINER = "/run/secrets"
# Room on each task's tmpfs beyond its files' bytes (directories, inodes).
SLACK_BYTES = 64 * 1024


@dataclass(frozen=True)
class PlannedFile:
    kind: str  # "secret" or "config"
    name: str
    object_id: str
    path: Path  # on the node
    container_target: str  # where a container sees it
    uid: int
    gid: int
    mode: int


@dataclass(frozen=True)
class FilePlan:
    task_id: str
    root: Path
    files: tuple[PlannedFile, ...]

    @property
    def env(self) -> dict[str, str]:
        """What the process runtime tells the task."""
        return {SECRETS_ENV: str(self.root / "secrets"), CONFIGS_ENV: str(self.root / "configs")}

    @property
    def mounts(self) -> tuple[FileMount, ...]:
        """What a container runtime bind-mounts."""
        return tuple(FileMount(str(f.path), f.container_target) for f in self.files)

    def size(self, values: dict[str, bytes]) -> int:
        """Bytes the tmpfs must hold: the files and some slack."""
        return sum(len(values.get(f.object_id, b"")) for f in self.files) + SLACK_BYTES


def _container_target(kind: str, target: str) -> str:
    if target.startswith("/"):
        return target
    return f"{SECRETS_IN_CONTAINER}/{target}" if kind == "secret" else f"/{target}"


def _owner(value: str, where: str, in_container: bool) -> int:
    if not value:
        return 0 if in_container else -1
    if not value.isdigit():
        raise TaskRejected(f"{where}: expected a numeric ID, got {value!r}")
    return int(value)


def plan_files(task: pb.Task, root: Path, in_container: bool) -> FilePlan | None:
    """Where each of the task's files goes (None: the task has none).
    ``in_container``: the runtime runs containers (Docker's targets and
    owners apply); else tasks run as the agent's user. Raises TaskRejected
    for a reference this runtime cannot honour."""
    container = task.spec.container
    if not container.secrets and not container.configs:
        return None
    files: list[PlannedFile] = []
    for kind, refs in (("secret", container.secrets), ("config", container.configs)):
        for ref in refs:
            target = ref.target or ref.name
            where = f'{kind} "{ref.name}"'
            uid = _owner(ref.uid, f"{where} uid", in_container)
            gid = _owner(ref.gid, f"{where} gid", in_container)
            if not in_container and (uid not in (-1, os.geteuid()) or gid not in (-1, os.getegid())):
                raise TaskRejected(
                    f"{where}: uid/gid {ref.uid or '-'}/{ref.gid or '-'}: the process runtime runs tasks "
                    f"as the agent's user ({os.geteuid()}/{os.getegid()}) and cannot give files to another"
                )
            default_mode = 0o400 if kind == "secret" and not in_container else 0o444
            relative = target.strip("/")
            if any(part in ("", ".", "..") for part in relative.split("/")):
                # The manager refuses such targets; a node does not rely on it.
                raise TaskRejected(f"{where}: target {target!r} leaves the task's folder")
            files.append(
                PlannedFile(
                    kind=kind,
                    name=ref.name,
                    object_id=ref.id,
                    path=root / f"{kind}s" / relative,
                    container_target=_container_target(kind, target),
                    uid=uid,
                    gid=gid,
                    mode=ref.mode if ref.HasField("mode") else default_mode,
                )
            )
    return FilePlan(task.meta.id, root, tuple(files))
