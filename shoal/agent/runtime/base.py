"""The runtime seam: what the agent asks of a backend that runs tasks.

A backend is a pair, mirroring SwarmKit's executor/controller split:

- ``Runtime`` (one per agent) describes what the backend can do, lists what it
  already runs (so that a restarted agent adopts tasks instead of starting
  duplicates) and makes a ``TaskController`` for each assigned task;
- ``TaskController`` (one per task) moves that task through its life:
  prepare -> start -> wait -> shutdown -> remove.

The agent's worker drives controllers; backends never report to the manager
themselves. Errors a backend raises are ``TaskRejected`` (the task can never
start here: bad command, missing image) or ``TaskFailed`` (it started and then
broke); anything else is a bug and fails the task with its message.

Optional abilities (health checks, logs, exec, commit) are separate small
Protocols so that a backend states what it supports by what it implements.
What both backends share beyond this seam (the stop protocol, its timeouts,
the task logger) lives in ``common``; a scripted backend for tests is
``fake``.
"""

from __future__ import annotations

import enum
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import NamedTuple, Protocol, runtime_checkable

from shoal.protos import objects_pb2 as pb


class TaskRuntimeError(Exception):
    """Base of the errors a backend raises about one task."""


class TaskRejected(TaskRuntimeError):
    """The task cannot run here (command not found, image missing, ...)."""


class TaskFailed(TaskRuntimeError):
    """The task ran, or tried to, and broke."""


class Health(enum.IntEnum):
    NONE = pb.HEALTH_NONE
    STARTING = pb.HEALTH_STARTING
    HEALTHY = pb.HEALTH_HEALTHY
    UNHEALTHY = pb.HEALTH_UNHEALTHY


@dataclass(frozen=True)
class HealthReport:
    """A task's health as its checks last said, with their words."""

    state: Health
    # The last failed check, e.g. "health check exit code 1: <its output>";
    # "" while none has failed. It may outlive a later success: the worker
    # shows it only once the state is UNHEALTHY ("unhealthy: <message>").
    message: str = ""


class LogLine(NamedTuple):
    """One line of a task's output, as LogReading yields it."""

    stream: str  # "stdout" or "stderr"
    line: bytes  # with its newline, unless the output ended without one
    written_at: int  # Unix ns; 0 when the backend cannot know


@dataclass(frozen=True)
class ExitStatus:
    """How a task's main process ended."""

    exit_code: int
    # Set when the backend cannot know the real code (e.g. a signal); shown
    # to the user as the task's error.
    message: str = ""


@dataclass(frozen=True)
class RuntimeState:
    """What the backend sees of a task right now (for adoption)."""

    exists: bool
    running: bool
    pid: int = 0
    exit: ExitStatus | None = None


@dataclass(frozen=True)
class FileMount:
    """A secret or config file the agent wrote (on tmpfs) for a task, and
    where a container sees it."""

    source: str  # the file on the node
    target: str  # absolute path in the container


@dataclass(frozen=True)
class TaskContext:
    """Everything a backend needs to run one task, resolved by the agent."""

    task: pb.Task
    node_id: str
    # SHOAL_* variables plus the service's env, in order; later wins.
    env: dict[str, str] = field(default_factory=dict)
    # The task's secrets and configs, written before prepare() (a backend
    # with containers mounts them read-only; the process runtime reads them
    # through $SHOAL_SECRETS_DIR and $SHOAL_CONFIGS_DIR in env).
    files: tuple[FileMount, ...] = ()
    # Where the task's ports are reached on this node (agent/endpoints.py):
    # ingress targets on host ports the agent chose, host-mode ports on
    # their published port.
    endpoints: tuple[pb.TaskEndpoint, ...] = ()


class TaskController(Protocol):
    """Runs one task. Every method may be called again after an agent
    restart; each must be idempotent."""

    async def inspect(self) -> RuntimeState:
        """Report whether the task exists and runs (adoption after restart)."""
        ...

    async def prepare(self) -> None:
        """Make everything ready to start (workdir, image); raise TaskRejected
        when the task can never start here."""
        ...

    async def start(self) -> int:
        """Start the task's main process and return its pid (0 when it is
        not known, as for a container that ended at once); raise
        TaskRejected if it cannot start. A task started before (by this
        agent or an earlier one) is not started again: its pid is returned."""
        ...

    async def wait(self) -> ExitStatus:
        """Return once the main process has ended, with how it ended."""
        ...

    async def shutdown(self, grace_period: float, stop_signal: str) -> None:
        """Send the stop signal, then kill after grace_period seconds; return
        once nothing of the task runs."""
        ...

    async def remove(self) -> None:
        """Forget the task: delete its files or container. Idempotent."""
        ...


@runtime_checkable
class HealthReporting(Protocol):
    """A controller that can tell whether its task is healthy."""

    async def health(self) -> HealthReport:
        """The task's current health as its health check last reported, with
        the last failed check's message."""
        ...


@runtime_checkable
class LogReading(Protocol):
    """A controller that can return the task's output."""

    def logs(self, follow: bool, tail: int | None) -> AsyncIterator[LogLine]:
        """Yield the task's output a line at a time (the last `tail` lines,
        all when None), then, with `follow`, lines as they are written."""
        ...


@dataclass(frozen=True)
class NodeNetwork:
    """A network a backend made for its tasks (the docker runtime's bridge):
    the node's resolver listens on its gateway, and the mesh routes service
    addresses for traffic coming in from its interface."""

    name: str
    interface: str
    gateway: str
    subnet: str


@runtime_checkable
class Networking(Protocol):
    """A backend whose tasks live on a network of the node's own."""

    def ensure_network(self) -> NodeNetwork:
        """Make (or find) the network; tasks started from now on join it.
        Blocking."""
        ...

    def service_of(self, address: str) -> str | None:
        """The service whose task has `address` on that network, if any."""
        ...


class Runtime(Protocol):
    """A backend as the agent sees it."""

    name: str

    def controller(self, ctx: TaskContext) -> TaskController:
        """Make the controller of one task (cheap: no I/O)."""
        ...

    async def known_task_ids(self) -> set[str]:
        """Tasks this backend holds anything of (running or not), so that the
        agent can adopt or clean them up after a restart."""
        ...

    async def discard(self, task_id: str) -> None:
        """Stop (with SIGKILL after a short grace) and remove a task the agent
        holds no assignment for any more, knowing only its ID."""
        ...

    async def close(self) -> None:
        """Release the backend's own resources; tasks keep running."""
        ...


# ---------------------------------------------------------------- exec and commit
# (shoal exec, shoal commit: optional abilities, asked for by the agent's
# shoal.agent.taskio on behalf of an admin.)


class ExecFailed(TaskRuntimeError):
    """A command could not be run inside the task; exit_code is what the
    user's `shoal exec` exits with (126: cannot be invoked, 127: not found),
    as Docker's."""

    def __init__(self, message: str, exit_code: int = 126) -> None:
        super().__init__(message)
        self.exit_code = exit_code


@dataclass(frozen=True)
class ExecSpec:
    """One command to run inside a running task."""

    command: tuple[str, ...]
    # Added to the task's environment (later wins).
    env: dict[str, str] = field(default_factory=dict)
    workdir: str = ""  # empty: the task's
    tty: bool = False
    stdin: bool = False  # else the command's stdin is empty (/dev/null)
    rows: int = 0  # with tty: the window's size (0: leave the default)
    cols: int = 0
    # A value unique to this exec (the agent's exec ID): backends may mark
    # the command with it to find its processes again (hang-up).
    marker: str = ""


STDOUT = 0
STDERR = 1


class ExecProcess(Protocol):
    """A command running inside a task, as ``Execing.exec`` started it. Only
    one coroutine reads, one writes; all methods but ``read`` and ``wait``
    return promptly."""

    async def read(self) -> tuple[int, bytes] | None:
        """The next piece of output, (STDOUT or STDERR, at most
        execflow.CHUNK bytes; with a tty everything is STDOUT), or None once
        the output has ended."""
        ...

    async def write(self, data: bytes) -> None:
        """Give data to the command's stdin; returns once it was taken (so
        a command that does not read holds the writer back)."""
        ...

    async def close_stdin(self) -> None:
        """End of input. With a tty there is no separate stdin: Ctrl-D is
        typed instead, as a terminal's user would."""
        ...

    async def resize(self, rows: int, cols: int) -> None:
        """With a tty: the window's new size (the command gets SIGWINCH)."""
        ...

    async def signal(self, sig: int) -> None:
        """Send sig to the command and everything it started (SIGHUP when
        its client went away, SIGKILL after a grace)."""
        ...

    async def wait(self) -> int:
        """The command's exit code (128 + N when signal N ended it), once
        it has ended."""
        ...

    async def close(self) -> None:
        """Release what the backend holds for it (descriptors, sockets)."""
        ...


@runtime_checkable
class Execing(Protocol):
    """A controller that can run further commands inside its running task."""

    async def exec(self, spec: ExecSpec) -> ExecProcess:
        """Start spec's command in the task: its environment, working
        directory and user, in a session of its own. Raises ExecFailed when
        it cannot start."""
        ...


@dataclass(frozen=True)
class CommitOptions:
    """What `shoal commit` asks for (references already checked)."""

    repository: str
    tag: str
    message: str = ""
    changes: tuple[str, ...] = ()
    author: str = ""
    pause: bool = True
    push: bool = False
    # Docker's X-Registry-Auth (base64 JSON) for the push; empty: none.
    registry_auth: str = ""


@dataclass(frozen=True)
class CommitResult:
    image_id: str
    pushed: bool = False
    push_error: str = ""  # the commit worked, the push did not


class CommitFailed(TaskRuntimeError):
    """The task's container could not be committed."""


@runtime_checkable
class Committing(Protocol):
    """A controller whose task can be saved as an image."""

    async def commit(self, options: CommitOptions) -> CommitResult:
        """Commit the task's container as repository:tag (and push it when
        asked); CommitFailed when the commit itself fails."""
        ...
