"""A tmpfs per task for its secrets and configs: never the node's disk.

``FileStore.write(plan, values)`` mounts a tmpfs at the task's folder
(``STATE_DIR/runtime/files/<task>``: nosuid, nodev, noexec, mode 0700,
sized to its files) and writes each file with its owner and mode;
``remove(task)`` unmounts and deletes it; ``known()`` lists the folders
there are, so that an agent that restarts can remove those of tasks it no
longer has. An agent that cannot mount (not root, or no CAP_SYS_ADMIN)
uses a private folder on the host's ``/dev/shm`` instead, which is a
tmpfs too; without either, tasks with secrets are rejected, saying why.

Mounting goes through libc (``mount(2)``, ``umount2(2)``): one system call,
no helper process.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import hashlib
import logging
import os
import shutil
from pathlib import Path

from shoal.agent.runtime.base import TaskRejected
from shoal.agent.taskfiles.plan import FilePlan

log = logging.getLogger(__name__)

MS_NOSUID = 2
MS_NODEV = 4
MS_NOEXEC = 8
MNT_DETACH = 2
SHM = Path("/dev/shm")
PAGE = 4096


def _libc() -> ctypes.CDLL:
    return ctypes.CDLL(None, use_errno=True)


def mount_tmpfs(path: Path, size: int) -> None:
    """Mount a tmpfs of `size` bytes at path (nosuid, nodev, noexec, 0700)."""
    size = -(-size // PAGE) * PAGE
    data = f"size={size},mode=0700".encode()
    flags = MS_NOSUID | MS_NODEV | MS_NOEXEC
    if _libc().mount(b"tmpfs", str(path).encode(), b"tmpfs", flags, data) != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"mount tmpfs at {path}: {os.strerror(err)}")


def unmount(path: Path) -> None:
    """Detach the mount at path (the kernel frees it once nothing uses it)."""
    if _libc().umount2(str(path).encode(), MNT_DETACH) != 0:
        err = ctypes.get_errno()
        if err not in (errno.EINVAL, errno.ENOENT):  # not mounted (any more)
            raise OSError(err, f"unmount {path}: {os.strerror(err)}")


def is_tmpfs(path: Path) -> bool:
    """Whether path is the mount point of a tmpfs (from /proc/self/mounts)."""
    try:
        lines = Path("/proc/self/mounts").read_text().splitlines()
    except OSError:
        return False
    wanted = str(path)
    return any(len(f) > 2 and f[1] == wanted and f[2] == "tmpfs" for f in (line.split() for line in lines))


class FileStore:
    """The secret and config folders of one agent's tasks."""

    def __init__(self, base: Path, mount: bool, usable: bool = True) -> None:
        self.base = base
        self.mount = mount  # a tmpfs per task (else base is on a tmpfs already)
        self.usable = usable

    @classmethod
    def for_agent(cls, state_dir: Path) -> FileStore:
        """The store for an agent: tmpfs mounts under STATE_DIR/runtime/files
        when this process may mount, else a folder on /dev/shm."""
        base = state_dir / "runtime" / "files"
        if os.geteuid() == 0 and _can_mount(base):
            return cls(base, mount=True)
        if is_tmpfs(SHM):
            # One folder per agent state dir: several agents may share a host.
            tag = hashlib.sha256(str(state_dir.resolve()).encode()).hexdigest()[:16]
            log.info("cannot mount a tmpfs per task; keeping secrets and configs under %s", SHM)
            return cls(SHM / f"shoal-{os.geteuid()}" / tag, mount=False)
        log.warning(
            "cannot mount a tmpfs and %s is no tmpfs: tasks with secrets or configs are rejected", SHM
        )
        return cls(base, mount=False, usable=False)

    def root(self, task_id: str) -> Path:
        return self.base / task_id

    def write(self, plan: FilePlan, values: dict[str, bytes]) -> None:
        """The task's tmpfs with its files (anything left of an earlier
        attempt is removed first). TaskRejected when it cannot be done."""
        if not self.usable:
            raise TaskRejected(
                "secrets and configs need a tmpfs: run the agent as root (it mounts one per task) "
                f"or give it a {SHM} tmpfs"
            )
        missing = [f"{f.kind} {f.name}" for f in plan.files if f.object_id not in values]
        if missing:
            raise TaskRejected(
                f"{', '.join(missing)}: not sent with the task (removed meanwhile?); it cannot start"
            )
        self.remove(plan.task_id)
        try:
            self.base.mkdir(parents=True, exist_ok=True, mode=0o700)
            plan.root.mkdir(mode=0o700)
            if self.mount:
                mount_tmpfs(plan.root, plan.size(values))
            for sub in ("secrets", "configs"):
                (plan.root / sub).mkdir(mode=0o700)
            for f in plan.files:
                f.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
                _write_file(f.path, values[f.object_id], f.mode, f.uid, f.gid)
        except OSError as err:
            self.remove(plan.task_id)
            raise TaskRejected(f"writing the task's secrets and configs: {err}") from err

    def remove(self, task_id: str) -> None:
        """Unmount and delete the task's folder; nothing when there is none."""
        root = self.root(task_id)
        if self.mount and os.path.ismount(root):
            unmount(root)
        shutil.rmtree(root, ignore_errors=True)

    def known(self) -> set[str]:
        """The tasks that have a folder here."""
        try:
            return {p.name for p in self.base.iterdir() if p.is_dir() and not p.name.startswith(".")}
        except OSError:
            return set()


def _write_file(path: Path, data: bytes, mode: int, uid: int, gid: int) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view) :]
        if uid >= 0 or gid >= 0:
            os.fchown(fd, uid, gid)
        os.fchmod(fd, mode)
    finally:
        os.close(fd)


def _can_mount(base: Path) -> bool:
    """Whether a tmpfs can be mounted here (root in a container may lack
    CAP_SYS_ADMIN): a trial mount at STATE_DIR/runtime/files/.probe."""
    probe = base / ".probe"
    try:
        probe.mkdir(parents=True, exist_ok=True, mode=0o700)
        mount_tmpfs(probe, PAGE)
    except OSError as err:
        log.info("cannot mount a tmpfs (%s)", err)
        return False
    finally:
        if os.path.ismount(probe):
            unmount(probe)
        with contextlib.suppress(OSError):
            probe.rmdir()
    return True
