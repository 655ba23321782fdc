"""The Docker engine behind one wrapper: SDK calls off the loop, errors ours.

The Docker SDK blocks. ``Engine`` runs every call into it in a small thread
pool (``Engine.run``) and is the only code that calls it, besides the log
threads (``logs``). Its methods speak in container IDs and our types:
find the containers of a task by label, inspect, create, start, stop (the
shared stop protocol of ``common``), remove, and pull an image once however
many tasks wait for it.

Errors of the SDK become ours in one place, ``translate``: ``TaskRejected``
while the task is prepared or started (the engine's message is the reason the
user sees), ``TaskFailed`` after that, and ``ContainerGone`` (a
``TaskFailed``) when the container does not exist.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import functools
import logging
import signal
from collections.abc import Callable
from typing import Any, TypeVar

import docker
import docker.errors

from shoal.agent.runtime.base import ExitStatus, TaskFailed, TaskRejected, TaskRuntimeError
from shoal.agent.runtime.common import TaskLog, stop_task
from shoal.agent.runtime.docker.options import LABEL_NODE_ID, LABEL_TASK_ID, ContainerOptions, ImageRef
from shoal.signals import parse_signal

log = logging.getLogger(__name__)

T = TypeVar("T")

# make_runtime("auto") picks docker when an engine answers within this long:
# a local engine answers a ping in milliseconds, and the agent's start should
# not hang on a dead socket.
PROBE_TIMEOUT = 2.0
# Threads for SDK calls. All are short (inspect, create, kill, remove) except
# pulls, which are shared per image reference; waits and stops poll with
# short calls instead of holding a thread, so this does not grow with tasks.
ENGINE_THREADS = 16
# stop() looks at the container with an inspect each time (cheap: the engine
# answers from memory), backing off to this.
MAX_STOP_POLL = 0.2


class EngineUnavailable(RuntimeError):
    """No Docker engine answers (raised when the runtime is built)."""


class ContainerGone(TaskFailed):
    """The task's container does not exist (any more)."""


def translate(err: BaseException, doing: str, rejected: bool = False) -> BaseException:
    """The one place where Docker SDK errors become ours. `doing` says what
    failed ("starting container"); the engine's explanation follows it.
    `rejected` marks the calls whose failure means the task can never run
    here (pull, create, start). Anything that is not an SDK or connection
    error is returned unchanged (a bug, or already ours)."""
    if isinstance(err, TaskRuntimeError) or not isinstance(err, docker.errors.DockerException | OSError):
        return err
    if isinstance(err, docker.errors.APIError):
        why = str(err.explanation or err)
    elif isinstance(err, docker.errors.DockerException):
        why = str(err)
    else:  # requests' errors are OSErrors: the engine's socket is gone or hangs
        why = f"Docker engine unreachable: {err}"
    message = f"{doing} failed: {why}"
    if rejected:
        return TaskRejected(message)
    if isinstance(err, docker.errors.NotFound) and not isinstance(err, docker.errors.ImageNotFound):
        return ContainerGone(message)
    return TaskFailed(message)


def probe_engine(timeout: float = PROBE_TIMEOUT) -> str | None:
    """None when a Docker engine (as DOCKER_HOST etc. name it) answers a ping
    within `timeout` seconds, else what went wrong."""
    try:
        client = docker.from_env(timeout=timeout)
    except docker.errors.DockerException as err:
        return str(err)
    try:
        client.ping()
    except (docker.errors.DockerException, OSError) as err:
        return str(err)
    finally:
        client.close()
    return None


class Engine:
    """The Docker SDK behind a thread pool; the only code that calls it
    (besides the log threads)."""

    def __init__(self, client: Any, node_id: str) -> None:
        self.client = client
        self.api: Any = client.api
        self.node_id = node_id
        self._pool = concurrent.futures.ThreadPoolExecutor(ENGINE_THREADS, thread_name_prefix="shoal-docker")
        self._pulls: dict[str, asyncio.Task[None]] = {}

    async def run(self, doing: str, fn: Callable[..., T], *args: Any, rejected: bool = False, **kw: Any) -> T:
        """fn(*args, **kw) in the pool, its errors translated."""
        loop = asyncio.get_running_loop()
        try:
            return await loop.run_in_executor(self._pool, functools.partial(fn, *args, **kw))
        except (docker.errors.DockerException, OSError) as err:
            raise translate(err, doing, rejected) from err

    async def close(self) -> None:
        for pull in self._pulls.values():
            pull.cancel()
        self._pool.shutdown(wait=False, cancel_futures=True)
        await asyncio.to_thread(self.client.close)

    # -- containers (calls that only read, or are idempotent by themselves)

    async def find(self, task_id: str) -> list[str]:
        """IDs of this node's containers of the task (one, or none)."""
        filters = {"label": [f"{LABEL_NODE_ID}={self.node_id}", f"{LABEL_TASK_ID}={task_id}"]}
        found = await self.run("listing containers", self.api.containers, all=True, filters=filters)
        return [str(c["Id"]) for c in found]

    async def task_ids(self) -> set[str]:
        filters = {"label": f"{LABEL_NODE_ID}={self.node_id}"}
        found = await self.run("listing containers", self.api.containers, all=True, filters=filters)
        return {str(c["Labels"][LABEL_TASK_ID]) for c in found if c.get("Labels", {}).get(LABEL_TASK_ID)}

    async def inspect(self, container_id: str) -> dict[str, Any] | None:
        """The container's attributes, or None when it does not exist."""
        try:
            attrs: dict[str, Any] = await self.run(
                "inspecting container", self.api.inspect_container, container_id
            )
        except ContainerGone:
            return None
        return attrs

    async def stop(self, container_id: str, grace_period: float, stop_signal: str, tlog: TaskLog) -> None:
        """What `docker stop` does, with any signal and a fractional grace:
        send stop_signal (empty: the container's own StopSignal), SIGKILL
        after grace_period, return once it no longer runs. No error when it
        is gone or already stopped."""
        attrs = await self.inspect(container_id)
        if attrs is None or not is_running(attrs):
            return
        sig = stop_signal.strip() or attrs["Config"].get("StopSignal") or "SIGTERM"
        await stop_task(
            _ContainerStop(self, container_id, sig, tlog),
            grace_period,
            tlog,
            poll_max=MAX_STOP_POLL,
            kill_at_once=_is_sigkill(sig),
        )

    async def signal(self, container_id: str, sig: str, doing: str = "signalling container") -> None:
        """Send sig (a name or number, as the engine reads it); no error when
        the container is gone or no longer runs."""
        await self.run(doing, self._kill, container_id, sig)

    async def create(self, opts: ContainerOptions) -> str:
        """Create the container (not started); its ID. TaskRejected on error."""
        container_id: str = await self.run("creating container", self._create, opts, rejected=True)
        return container_id

    async def start(self, container_id: str) -> None:
        """TaskRejected with the engine's message when it cannot start."""
        await self.run("starting container", self.api.start, container_id, rejected=True)

    async def remove(self, container_id: str) -> None:
        """Force-remove it with its anonymous volumes; no error when gone."""
        await self.run("removing container", self._remove, container_id)

    # -- images

    async def ensure_image(self, ref: ImageRef, tlog: TaskLog, auth: dict[str, str] | None = None) -> None:
        """Pull the image unless it is present. Tasks that need the same
        reference at once share one pull. Raises TaskRejected when the pull
        fails."""
        if await self.run(f"inspecting image {ref}", self._has_image, str(ref), rejected=True):
            return
        key = str(ref)
        pull = self._pulls.get(key)
        if pull is None:
            tlog.info("pulling image %s", ref)
            pull = asyncio.ensure_future(
                self.run(f"pulling image {ref}", self._pull, ref, auth, rejected=True)
            )
            self._pulls[key] = pull
            pull.add_done_callback(functools.partial(self._pull_done, key))
        # One waiter cancelled (its task shut down) must not cancel the others'.
        await asyncio.shield(pull)

    def _pull_done(self, key: str, pull: asyncio.Task[None]) -> None:
        if self._pulls.get(key) is pull:
            del self._pulls[key]
        if not pull.cancelled() and pull.exception() is None:  # the waiters log failures
            log.info("pulled image %s", key)

    # -- blocking helpers, run in the pool

    def _has_image(self, name: str) -> bool:
        try:
            self.api.inspect_image(name)
        except docker.errors.ImageNotFound:
            return False
        return True

    def _pull(self, ref: ImageRef, auth: dict[str, str] | None = None) -> None:
        # Credentials: those the service was created with (`--with-registry-
        # auth`), else the SDK sends those of ~/.docker/config.json for the
        # reference's registry, as the docker CLI does.
        pulling = self.api.pull(ref.repository, tag=ref.pull_tag, stream=True, decode=True, auth_config=auth)
        for event in pulling:
            # A pull that fails midway reports it in the stream, not by status.
            if isinstance(event, dict) and event.get("error"):
                raise docker.errors.APIError(str(event["error"]), explanation=str(event["error"]))

    def _kill(self, container_id: str, sig: str) -> None:
        try:
            self.api.kill(container_id, signal=sig)
        except docker.errors.NotFound:
            pass
        except docker.errors.APIError as err:
            if err.status_code != 409:  # 409: not running (any more)
                raise

    def _remove(self, container_id: str) -> None:
        try:
            self.api.remove_container(container_id, v=True, force=True)
        except docker.errors.NotFound:
            pass
        except docker.errors.APIError as err:
            # Another remove of ours got there first; the container is going.
            if not (err.status_code == 409 and "already in progress" in str(err.explanation)):
                raise

    def _create(self, opts: ContainerOptions) -> str:
        host_config = self.api.create_host_config(
            port_bindings=opts.port_bindings or None,
            mounts=opts.mounts or None,
            nano_cpus=opts.nano_cpus,
            mem_limit=opts.mem_limit,
            mem_reservation=opts.mem_reservation,
            network_mode=opts.network,
            dns=opts.dns or None,
        )
        created = self.api.create_container(
            str(opts.image),
            name=opts.name,
            entrypoint=opts.entrypoint,
            command=opts.command,
            environment=opts.environment,
            working_dir=opts.working_dir,
            labels=opts.labels,
            stop_signal=opts.stop_signal,
            stop_timeout=opts.stop_timeout,
            healthcheck=opts.healthcheck,
            user=opts.user,
            ports=[tuple(key.split("/")) for key in opts.port_bindings] or None,
            host_config=host_config,
        )
        return str(created["Id"])


def is_running(attrs: dict[str, Any]) -> bool:
    """Whether a container's attributes (an inspect) say it runs."""
    return bool(attrs["State"].get("Running"))


def exit_status(state: dict[str, Any]) -> ExitStatus:
    """How a stopped container ended, from its State: the exit code, and
    "OOMKilled" or the engine's error as the message."""
    notes = []
    if state.get("OOMKilled"):
        notes.append("OOMKilled: the container ran out of memory")
    if state.get("Error"):
        notes.append(str(state["Error"]))
    return ExitStatus(int(state.get("ExitCode", 0)), message="; ".join(notes))


class _ContainerStop:
    """A container as the stop protocol sees it."""

    def __init__(self, engine: Engine, container_id: str, sig: str, tlog: TaskLog) -> None:
        self._engine = engine
        self._id = container_id
        self._tlog = tlog
        # As the engine reads it: a name ("SIGTERM", "term") or a number.
        self.stop_signal_name = sig

    async def running(self) -> bool:
        attrs = await self._engine.inspect(self._id)
        return attrs is not None and is_running(attrs)

    async def send_stop_signal(self) -> None:
        try:
            await self._engine.signal(self._id, self.stop_signal_name)
        except TaskFailed as err:
            # Stopping must not fail over a bad spec; the kill follows.
            self._tlog.warning("%s; killing it after the grace period", err)

    async def kill(self) -> None:
        await self._engine.signal(self._id, "SIGKILL", doing="killing container")

    def stuck_error(self, kill_timeout: float) -> str:
        short = self._id[:12]
        return f"container {short} still runs {kill_timeout:.0f}s after SIGKILL; see `docker inspect {short}`"


def _is_sigkill(sig: str) -> bool:
    """Whether a stop signal as the engine reads it is SIGKILL (then there is
    no grace to give); a name this host does not know is left to the engine."""
    try:
        return parse_signal(sig) == signal.SIGKILL
    except ValueError:
        return False
