"""The ``docker`` backend: each task is a container on a Docker Engine.

The engine holds every piece of state: a container carries labels that say
which task it runs and which node owns it, so a restarted agent (a new
``DockerRuntime`` with the same node ID) finds its containers again by label
and adopts them. Nothing is written under ``state_dir``. Several agents may
share one engine (tests run many nodes on one machine), so everything this
backend lists, adopts or removes is filtered by ``shoal.node.id``.

Data flow of one task, in Docker terms::

    prepare   image present? else pull it (once per reference, however many
              tasks wait for it); create the container, not started
    start     start it
    wait      poll its state until it is no longer running
    shutdown  kill with the stop signal, SIGKILL after the grace period
    remove    force-remove it with its anonymous volumes

How a ``ContainerSpec`` becomes a container (``container_options``) follows
``docker service create``: ``command`` overrides the image's Entrypoint and
``args`` is the Cmd; env is the agent's ``TaskContext.env`` (SHOAL_* and the
service's env) on top of the image's; limits become the cgroup limits
(``NanoCpus``, ``Memory``; reservations become ``MemoryReservation``); the
health check is Docker's own (the engine runs it); mounts are bind, volume or
tmpfs; and every published port of the task is published in host mode on
``advertise_addr`` (there is no routing mesh yet, so ingress ports are host
ports too).

The Docker SDK blocks. Every call into it runs in a small thread pool owned
by ``_Engine``; logs, which stream for as long as the consumer reads, get a
thread each. Errors of the SDK become ours in one place, ``_translate``:
``TaskRejected`` while the task is prepared or started (the engine's message
is the reason the user sees), ``TaskFailed`` after that, and
``_ContainerGone`` (a ``TaskFailed``) when the container does not exist.
"""

from __future__ import annotations

import asyncio
import base64
import concurrent.futures
import contextlib
import functools
import json
import logging
import math
import re
import threading
from collections.abc import AsyncIterator, Callable, Iterable, MutableMapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import docker
import docker.errors
import docker.types

from shoal.agent.runtime.base import (
    ExitStatus,
    Health,
    RuntimeState,
    TaskContext,
    TaskFailed,
    TaskRejected,
    TaskRuntimeError,
)
from shoal.protos import objects_pb2 as pb

log = logging.getLogger(__name__)

T = TypeVar("T")

# Labels on every container this backend creates; the node label scopes
# every list, adopt and remove to this agent's own containers.
LABEL_TASK_ID = "shoal.task.id"
LABEL_SERVICE_ID = "shoal.service.id"
LABEL_SERVICE_NAME = "shoal.service.name"
LABEL_NODE_ID = "shoal.node.id"
LABEL_SLOT = "shoal.task.slot"

# make_runtime("auto") picks docker when an engine answers within this long:
# a local engine answers a ping in milliseconds, and the agent's start should
# not hang on a dead socket.
PROBE_TIMEOUT = 2.0
# Threads for SDK calls. All are short (inspect, create, kill, remove) except
# pulls, which are shared per image reference; waits and stops poll with
# short calls instead of holding a thread, so this does not grow with tasks.
ENGINE_THREADS = 16
# wait() looks at the container this often. Docker's own wait endpoint would
# hold one thread per running task; an inspect is cheap (the engine answers
# from memory) and half a second is well within what a user notices.
WAIT_POLL_INTERVAL = 0.5
# shutdown() polls the container starting fast (most tasks exit within
# milliseconds of SIGTERM) and backing off to this.
_MAX_STOP_POLL = 0.2
# How long shutdown waits for the container to stop after SIGKILL, as the
# engine's own `docker stop` does before it gives up.
KILL_TIMEOUT = 10.0
# discard(): the task has no owner any more; a short grace only lets it flush.
DISCARD_GRACE = 2.0
# How many log lines may wait for a slow consumer before the log threads
# stop reading (back pressure instead of unbounded memory).
LOG_QUEUE_SIZE = 1024
# A log thread checks this often whether its consumer has gone.
_LOG_STOP_CHECK = 0.5

_STREAMS = ("stdout", "stderr")
# What Docker accepts as a container name.
_CONTAINER_NAME = re.compile(r"[a-zA-Z0-9][a-zA-Z0-9_.-]+")
_NEVER = "0001-01-01T00:00:00Z"  # Go's zero time: a container never started
_HEALTH = {"starting": Health.STARTING, "healthy": Health.HEALTHY, "unhealthy": Health.UNHEALTHY}
_MOUNT_TYPES = ("bind", "volume", "tmpfs")
_PROTOCOLS = ("tcp", "udp", "sctp")
_SECOND_NS = 1_000_000_000


def registry_auth(task: pb.Task) -> dict[str, str] | None:
    """The credentials the manager sent with the task (base64 JSON, as
    Docker's X-Registry-Auth), as the SDK's auth_config."""
    if not task.registry_auth:
        return None
    try:
        decoded = json.loads(base64.b64decode(task.registry_auth))
    except ValueError:
        return None
    return {str(k): str(v) for k, v in decoded.items()} if isinstance(decoded, dict) else None


class EngineUnavailable(RuntimeError):
    """No Docker engine answers (raised when the runtime is built)."""


class _ContainerGone(TaskFailed):
    """The task's container does not exist (any more)."""


def _translate(err: BaseException, doing: str, rejected: bool = False) -> BaseException:
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
        return _ContainerGone(message)
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


# ------------------------------------------------------------ spec -> options


@dataclass(frozen=True)
class ImageRef:
    """An image reference as Docker reads it."""

    repository: str  # "registry:5000/team/app", "busybox"
    tag: str = ""  # "latest" when the reference names neither tag nor digest
    digest: str = ""  # "sha256:..."

    @classmethod
    def parse(cls, text: str) -> ImageRef:
        """Read a reference as Docker does: "busybox" is busybox:latest;
        "host:5000/app" is a repository with a registry port, not a tag;
        "app:1@sha256:..." pulls by the digest (the tag is then only a
        comment)."""
        text = text.strip()
        if not text:
            raise TaskRejected("container.image: no image given")
        name, at, digest = text.partition("@")
        slash, colon = name.rfind("/"), name.rfind(":")
        repository, tag = (name[:colon], name[colon + 1 :]) if colon > slash else (name, "")
        # The rest (case, characters) the engine checks, in its own words.
        if not repository or (at and not digest) or (colon > slash and not tag):
            raise TaskRejected(f"container.image: invalid reference format: {text!r}")
        if digest:
            return cls(repository, digest=digest)
        return cls(repository, tag=tag or "latest")

    @property
    def pull_tag(self) -> str:
        """The `tag` parameter of the engine's pull: a tag or a digest."""
        return self.digest or self.tag

    def __str__(self) -> str:
        return f"{self.repository}@{self.digest}" if self.digest else f"{self.repository}:{self.tag}"


@dataclass(frozen=True)
class ContainerOptions:
    """A task's container, resolved from its spec; what create() sends."""

    name: str
    image: ImageRef
    entrypoint: list[str] | None
    command: list[str] | None
    environment: list[str]
    working_dir: str | None
    labels: dict[str, str]
    stop_signal: str | None
    stop_timeout: int | None  # seconds
    healthcheck: dict[str, Any] | None
    mounts: list[dict[str, Any]] = field(default_factory=list)
    # "80/tcp" -> [(host ip, host port or None for any free one)]
    port_bindings: dict[str, list[tuple[str, int | None]]] = field(default_factory=dict)
    nano_cpus: int | None = None
    mem_limit: int | None = None
    mem_reservation: int | None = None


def container_name(ctx: TaskContext, node_id: str) -> str:
    """Docker's task name, service.slot.taskid (global: service.node.taskid),
    as the agent put it in SHOAL_TASK_NAME; made a valid container name."""
    task = ctx.task
    name = ctx.env.get("SHOAL_TASK_NAME") or (
        f"{task.service_name}.{task.slot if task.slot else task.node_id or node_id}.{task.meta.id}"
    )
    if not _CONTAINER_NAME.fullmatch(name):
        name = re.sub(r"[^a-zA-Z0-9_.-]", "_", name).lstrip("_.-")
        if not _CONTAINER_NAME.fullmatch(name):
            name = f"shoal.{task.meta.id}"
    return name


def container_options(ctx: TaskContext, node_id: str, advertise_addr: str = "") -> ContainerOptions:
    """The container for a task, in Docker's terms (see the module docstring).
    Raises TaskRejected for what the engine would not get a clear message
    for; everything else the engine checks itself."""
    task = ctx.task
    spec = task.spec.container
    labels = dict(spec.labels)
    # Ours last: a service label must not disown the container.
    labels.update(
        {
            LABEL_TASK_ID: task.meta.id,
            LABEL_SERVICE_ID: task.service_id,
            LABEL_SERVICE_NAME: task.service_name,
            LABEL_NODE_ID: node_id,
            LABEL_SLOT: str(task.slot),
        }
    )
    limits, reservations = task.spec.resources.limits, task.spec.resources.reservations
    return ContainerOptions(
        name=container_name(ctx, node_id),
        image=ImageRef.parse(spec.image),
        entrypoint=list(spec.command) or None,
        command=list(spec.args) or None,
        environment=[f"{key}={value}" for key, value in ctx.env.items()],
        working_dir=spec.workdir or None,
        labels=labels,
        # Empty: the image's STOPSIGNAL, else SIGTERM (the engine decides).
        stop_signal=spec.stop_signal or None,
        stop_timeout=(
            math.ceil(spec.stop_grace_period / _SECOND_NS) if spec.HasField("stop_grace_period") else None
        ),
        healthcheck=_healthcheck(spec.healthcheck),
        mounts=[_mount(i, m) for i, m in enumerate(spec.mounts)],
        port_bindings=_port_bindings(task.ports, advertise_addr or "0.0.0.0"),
        nano_cpus=limits.nano_cpus or None,
        mem_limit=limits.memory_bytes or None,
        mem_reservation=reservations.memory_bytes or None,
    )


def _healthcheck(hc: pb.HealthCheck) -> dict[str, Any] | None:
    """Docker's HealthConfig: the same fields, in nanoseconds; zeros mean the
    image's values or Docker's defaults. ["NONE"] disables the image's check;
    no test and no field set leaves the image's check as it is."""
    test = list(hc.test)
    if not test and not (hc.interval or hc.timeout or hc.retries or hc.start_period):
        return None
    check: dict[str, Any] = docker.types.Healthcheck(
        test=test,
        interval=hc.interval,
        timeout=hc.timeout,
        retries=hc.retries,
        start_period=hc.start_period,
    )
    return check


def _mount(index: int, m: pb.Mount) -> dict[str, Any]:
    where = f"container.mounts[{index}]"
    kind = m.type or "volume"
    if kind not in _MOUNT_TYPES:
        raise TaskRejected(f"{where}.type: must be bind, volume or tmpfs, got {m.type!r}")
    if m.tmpfs_size and kind != "tmpfs":
        raise TaskRejected(f"{where}.tmpfs_size: only a tmpfs mount has a size, this one is {kind}")
    if kind == "tmpfs" and m.source:
        raise TaskRejected(f"{where}.source: a tmpfs mount has no source, got {m.source!r}")
    mount: dict[str, Any] = docker.types.Mount(
        target=m.target,
        # Empty for a volume: an anonymous one, removed with the container.
        source=m.source or None,
        type=kind,
        read_only=m.readonly,
        tmpfs_size=m.tmpfs_size or None,
    )
    return mount


def _port_bindings(ports: Iterable[pb.PortConfig], host_ip: str) -> dict[str, list[tuple[str, int | None]]]:
    bindings: dict[str, list[tuple[str, int | None]]] = {}
    for index, port in enumerate(ports):
        protocol = (port.protocol or "tcp").lower()
        if protocol not in _PROTOCOLS:
            raise TaskRejected(f"ports[{index}].protocol: must be tcp, udp or sctp, got {port.protocol!r}")
        if not port.target_port:
            raise TaskRejected(f"ports[{index}].target_port: must be set")
        # publish_mode "ingress" is published in host mode too: no routing
        # mesh yet. Published 0: the engine picks a free host port.
        bindings.setdefault(f"{port.target_port}/{protocol}", []).append(
            (host_ip, port.published_port or None)
        )
    return bindings


# ----------------------------------------------------------------- the engine


class _TaskLog(logging.LoggerAdapter[logging.Logger]):
    """Prefixes every record with the task it is about."""

    def process(self, msg: Any, kwargs: MutableMapping[str, Any]) -> tuple[Any, MutableMapping[str, Any]]:
        return f"task {self.extra['task_id'] if self.extra else '?'}: {msg}", kwargs


class _Engine:
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
            raise _translate(err, doing, rejected) from err

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
        except _ContainerGone:
            return None
        return attrs

    async def stop(self, container_id: str, grace_period: float, stop_signal: str, tlog: _TaskLog) -> None:
        """What `docker stop` does, with any signal and a fractional grace:
        send stop_signal (empty: the container's own StopSignal), SIGKILL
        after grace_period, return once it no longer runs. No error when it
        is gone or already stopped."""
        attrs = await self.inspect(container_id)
        if attrs is None or not _running(attrs):
            return
        sig = stop_signal.strip() or attrs["Config"].get("StopSignal") or "SIGTERM"
        if sig.upper().removeprefix("SIG") not in ("KILL", "9"):
            try:
                await self.run("signalling container", self._kill, container_id, sig)
            except TaskFailed as err:
                # Stopping must not fail over a bad spec; the kill follows.
                tlog.warning("%s; killing it after the grace period", err)
            if await self._stopped_within(container_id, grace_period):
                return
            tlog.info("still running %.1fs after %s; killing it", grace_period, sig)
        await self.run("killing container", self._kill, container_id, "SIGKILL")
        if not await self._stopped_within(container_id, KILL_TIMEOUT):
            raise TaskFailed(
                f"container {container_id[:12]} still runs {KILL_TIMEOUT:.0f}s after SIGKILL; "
                f"see `docker inspect {container_id[:12]}`"
            )

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

    async def _stopped_within(self, container_id: str, timeout: float) -> bool:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        delay = 0.01
        while True:
            attrs = await self.inspect(container_id)
            if attrs is None or not _running(attrs):
                return True
            remaining = deadline - loop.time()
            if remaining <= 0:
                return False
            await asyncio.sleep(min(delay, remaining))
            delay = min(delay * 2, _MAX_STOP_POLL)

    # -- images

    async def ensure_image(self, ref: ImageRef, tlog: _TaskLog, auth: dict[str, str] | None = None) -> None:
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
            ports=[tuple(key.split("/")) for key in opts.port_bindings] or None,
            host_config=host_config,
        )
        return str(created["Id"])


def _running(attrs: dict[str, Any]) -> bool:
    return bool(attrs["State"].get("Running"))


def _exit_status(state: dict[str, Any]) -> ExitStatus:
    notes = []
    if state.get("OOMKilled"):
        notes.append("OOMKilled: the container ran out of memory")
    if state.get("Error"):
        notes.append(str(state["Error"]))
    return ExitStatus(int(state.get("ExitCode", 0)), message="; ".join(notes))


def _health_message(health: dict[str, Any]) -> str:
    """The last failed check of State.Health.Log, as the process backend
    words it: "health check exit code 1: <output>"."""
    for entry in reversed(health.get("Log") or []):
        code = int(entry.get("ExitCode", 0))
        if code == 0:
            continue
        output = str(entry.get("Output", "")).strip()
        # -1: the engine could not run the check or it timed out; the output
        # then says which.
        how = "health check failed" if code < 0 else f"health check exit code {code}"
        return f"{how}: {output}" if output else how
    return ""


# ---------------------------------------------------------------------- logs

# A line of one stream: (stream, timestamp, line). The engine's RFC 3339
# timestamps have a fixed width, so they compare as bytes.
_LogLine = tuple[str, bytes, bytes]
_LogItem = _LogLine | BaseException | None  # None: the stream ended


class _LogPump:
    """Reads one stream of a container's log in a thread of its own (it
    blocks for as long as the log is followed) and hands its lines to an
    asyncio.Queue, waiting while the queue is full."""

    def __init__(
        self,
        api: Any,
        container_id: str,
        stream: str,
        follow: bool,
        tail: int | None,
        queue: asyncio.Queue[_LogItem],
    ) -> None:
        self._api = api
        self._container_id = container_id
        self._stream_name = stream
        self._follow = follow
        self._tail = tail
        self._queue = queue
        self._loop = asyncio.get_running_loop()
        self._stopped = threading.Event()
        self._lock = threading.Lock()
        self._response: Any = None
        self._thread = threading.Thread(target=self._run, name=f"shoal-docker-logs-{stream}", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        """Make the thread end soon: closing the response's socket wakes a
        read that blocks while a followed container is quiet."""
        self._stopped.set()
        with self._lock:
            response, self._response = self._response, None
        if response is not None:
            with contextlib.suppress(Exception):
                response.close()

    def _run(self) -> None:
        try:
            self._read()
        except BaseException as err:
            if not self._stopped.is_set():
                self._put(err)
        finally:
            self._put(None)

    def _read(self) -> None:
        response = self._api.logs(
            self._container_id,
            stdout=self._stream_name == "stdout",
            stderr=self._stream_name == "stderr",
            stream=True,
            follow=self._follow,
            tail="all" if self._tail is None else max(self._tail, 0),
            timestamps=True,
        )
        with self._lock:
            if self._stopped.is_set():
                response.close()
                return
            self._response = response
        pending = bytearray()
        since = b""  # the timestamp of the message the pending line began in
        # Each frame is one log message with its timestamp; a line longer than
        # the log driver's buffer (16 KiB) comes in several.
        for frame in response:
            if self._stopped.is_set():
                return
            stamp, _, text = bytes(frame).partition(b" ")
            if not pending:
                since = stamp
            pending += text
            while (end := pending.find(b"\n")) >= 0:
                self._put((self._stream_name, since, bytes(pending[: end + 1])))
                del pending[: end + 1]
                since = stamp
        if pending:
            self._put((self._stream_name, since, bytes(pending)))

    def _put(self, item: _LogItem) -> None:
        try:
            put = asyncio.run_coroutine_threadsafe(self._queue.put(item), self._loop)
        except RuntimeError:  # the loop is closed: nobody reads any more
            self._stopped.set()
            return
        while True:
            try:
                put.result(timeout=_LOG_STOP_CHECK)
                return
            except concurrent.futures.TimeoutError:
                if self._stopped.is_set():
                    put.cancel()
                    return
            except (concurrent.futures.CancelledError, RuntimeError):
                return


async def _next_line(queue: asyncio.Queue[_LogItem]) -> _LogLine | None:
    item = await queue.get()
    if isinstance(item, BaseException):
        err = _translate(item, "reading the logs")
        if err is item:
            raise item
        raise err from item
    return item


def _stamp_ns(stamp: bytes) -> int:
    """The engine's RFC 3339 timestamp (nanosecond digits) as Unix ns; 0 if
    it cannot be read."""
    import datetime

    text = stamp.decode(errors="replace").rstrip("Z")
    whole, _, fraction = text.partition(".")
    try:
        seconds = datetime.datetime.fromisoformat(whole).replace(tzinfo=datetime.UTC).timestamp()
    except ValueError:
        return 0
    return int(seconds) * 1_000_000_000 + int((fraction + "000000000")[:9] or 0)


def _earliest(heads: list[_LogLine | None]) -> int | None:
    """The index of the line logged first (stdout first on a tie); None when
    every stream has ended."""
    best: int | None = None
    for i, head in enumerate(heads):
        if head is None:
            continue
        current = heads[best] if best is not None else None
        if current is None or head[1] < current[1]:
            best = i
    return best


# ---------------------------------------------------------------- controller


class DockerTaskController:
    """Runs one task as a container (see the module docstring)."""

    def __init__(self, ctx: TaskContext, engine: _Engine, advertise_addr: str) -> None:
        self.ctx = ctx
        self._engine = engine
        self._advertise_addr = advertise_addr
        self._task_id = ctx.task.meta.id
        self._id: str | None = None
        self._last_health_message = ""
        self.log = _TaskLog(log, {"task_id": self._task_id})

    @property
    def container_id(self) -> str | None:
        """The container's ID once prepare() or a lookup has found it."""
        return self._id

    @property
    def last_health_message(self) -> str:
        """The last failed health check as of the last health() call, e.g.
        "health check exit code 1: <its output>"; "" while none has failed."""
        return self._last_health_message

    async def inspect(self) -> RuntimeState:
        """Report the container's state: running, or how it exited."""
        attrs = await self._attrs()
        if attrs is None:
            return RuntimeState(exists=False, running=False)
        state = attrs["State"]
        pid = int(state.get("Pid") or 0)
        if _running(attrs):
            return RuntimeState(exists=True, running=True, pid=pid)
        if state.get("StartedAt", _NEVER) != _NEVER:  # started, and stopped since
            return RuntimeState(exists=True, running=False, pid=pid, exit=_exit_status(state))
        return RuntimeState(exists=True, running=False, pid=pid)  # created, not started

    async def prepare(self) -> None:
        """Pull the image if it is missing and create the container (not
        started). A container of this task that exists already is reused."""
        opts = container_options(self.ctx, self._engine.node_id, self._advertise_addr)
        if await self._find() is not None:
            self.log.debug("reusing its existing container %s", self._id)
            return
        await self._engine.ensure_image(opts.image, self.log, registry_auth(self.ctx.task))
        self._id = await self._engine.create(opts)
        self.log.debug("created container %s (%s)", opts.name, self._id[:12])

    async def start(self) -> None:
        """Start the container; do nothing if it was started before (by this
        agent or an earlier one). Raises TaskRejected with the engine's
        message when it cannot start (port taken, executable not found)."""
        container_id = await self._require()
        attrs = await self._engine.inspect(container_id)
        if attrs is not None and attrs["State"].get("StartedAt", _NEVER) != _NEVER:
            return
        await self._engine.start(container_id)
        self.log.debug("started container %s", container_id[:12])

    async def wait(self) -> ExitStatus:
        """Return once the container has stopped, with its exit code (and
        "OOMKilled" or the engine's error as the message)."""
        container_id = await self._require()
        while True:
            attrs = await self._engine.inspect(container_id)
            if attrs is None:
                raise TaskFailed(f"container {container_id[:12]} disappeared (removed outside shoal?)")
            if not _running(attrs):
                break
            await asyncio.sleep(WAIT_POLL_INTERVAL)
        state = attrs["State"]
        if state.get("StartedAt", _NEVER) == _NEVER:
            raise TaskFailed("task was never started")
        status = _exit_status(state)
        self.log.debug("exited with code %d", status.exit_code)
        return status

    async def shutdown(self, grace_period: float, stop_signal: str) -> None:
        """Send stop_signal (empty: the container's StopSignal, by default
        SIGTERM), SIGKILL after grace_period; return once it has stopped."""
        container_id = await self._find()
        if container_id is not None:
            await self._engine.stop(container_id, grace_period, stop_signal, self.log)

    async def remove(self) -> None:
        """Force-remove the container and its anonymous volumes. Idempotent."""
        for container_id in await self._engine.find(self._task_id):
            await self._engine.remove(container_id)
        self._id = None

    async def health(self) -> Health:
        """The engine's verdict (State.Health): NONE without a health check."""
        attrs = await self._attrs()
        health = attrs["State"].get("Health") if attrs else None
        if not health:
            return Health.NONE
        self._last_health_message = _health_message(health)
        return _HEALTH.get(str(health.get("Status")), Health.NONE)

    async def logs(self, follow: bool, tail: int | None) -> AsyncIterator[tuple[str, bytes, int]]:
        """Yield ("stdout" | "stderr", line, written_at) with the newline kept
        and the engine's timestamp of the line (Unix ns). tail keeps
        the last lines of the log, both streams counted together (as `docker
        logs --tail`). The engine serves each stream separately: without
        follow they are merged back in the order the engine logged them; with
        follow, lines come as they arrive until the container stops or the
        consumer stops iterating."""
        container_id = await self._require()
        shared: asyncio.Queue[_LogItem] = asyncio.Queue(LOG_QUEUE_SIZE)
        queues = [shared, shared] if follow else [asyncio.Queue(LOG_QUEUE_SIZE) for _ in _STREAMS]
        pumps = [
            _LogPump(self._engine.api, container_id, stream, follow, tail, queue)
            for stream, queue in zip(_STREAMS, queues, strict=True)
        ]
        for pump in pumps:
            pump.start()
        try:
            if follow:
                ended = 0
                while ended < len(pumps):
                    line = await _next_line(shared)
                    if line is None:
                        ended += 1
                    else:
                        yield line[0], line[2], _stamp_ns(line[1])
            else:
                heads = [await _next_line(queue) for queue in queues]
                while (first := _earliest(heads)) is not None:
                    head = heads[first]
                    assert head is not None
                    yield head[0], head[2], _stamp_ns(head[1])
                    heads[first] = await _next_line(queues[first])
        finally:
            for pump in pumps:
                pump.stop()

    # ----------------------------------------------------------------- helpers

    async def _find(self) -> str | None:
        if self._id is None:
            found = await self._engine.find(self._task_id)
            self._id = found[0] if found else None
        return self._id

    async def _require(self) -> str:
        container_id = await self._find()
        if container_id is None:
            raise TaskFailed(f"task {self._task_id} has no container (was it prepared?)")
        return container_id

    async def _attrs(self) -> dict[str, Any] | None:
        container_id = await self._find()
        if container_id is None:
            return None
        attrs = await self._engine.inspect(container_id)
        if attrs is None:
            self._id = None  # removed behind our back: look it up afresh next time
        return attrs


class DockerRuntime:
    """The ``docker`` backend: tasks are containers on the engine that
    `client` (default: ``docker.from_env()``) talks to, labelled with
    `node_id`. The runtime owns the client and closes it in close()."""

    name = "docker"

    def __init__(
        self,
        state_dir: Path,
        node_id: str,
        advertise_addr: str = "",
        client: docker.DockerClient | None = None,
    ) -> None:
        if not node_id:
            raise ValueError("the docker runtime needs the node ID (its containers are labelled with it)")
        # Unused: the engine holds all state (see the module docstring).
        self.state_dir = state_dir
        self.node_id = node_id
        # Where published ports are bound; empty: every address (0.0.0.0).
        self.advertise_addr = advertise_addr
        if client is None:
            try:
                client = docker.from_env()
            except docker.errors.DockerException as err:
                raise EngineUnavailable(f"no Docker engine answers: {err}") from err
        self._engine = _Engine(client, node_id)

    def controller(self, ctx: TaskContext) -> DockerTaskController:
        """Make the controller of one task (no I/O)."""
        return DockerTaskController(ctx, self._engine, self.advertise_addr)

    async def known_task_ids(self) -> set[str]:
        """The task IDs of all this node's containers, running or not."""
        return await self._engine.task_ids()

    async def discard(self, task_id: str) -> None:
        """Stop (stop signal, SIGKILL after 2 s) and remove the containers of
        a task known only by its ID."""
        tlog = _TaskLog(log, {"task_id": task_id})
        for container_id in await self._engine.find(task_id):
            await self._engine.stop(container_id, DISCARD_GRACE, "", tlog)
            await self._engine.remove(container_id)

    async def close(self) -> None:
        """Close the client; the containers keep running (a later agent
        adopts them)."""
        await self._engine.close()
