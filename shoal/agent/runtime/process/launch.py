"""Launching a task: its spec resolved against this host, then the wrapper.

Data flow: ``plan_launch`` turns the task's ``ContainerSpec`` and env into a
``LaunchPlan`` (argv, workdir, env, memory limit), creating the task's
directories and raising ``TaskRejected`` with the field at fault when the task
cannot run here. ``launch`` writes ``launch.sh`` from the plan
(``launch_script``, a pure function), spawns a small ``/bin/sh`` wrapper as the
leader of a new session (so the process group ID is the wrapper's pid) and
records its ``ProcessHandle``. The wrapper forks a subshell that records its
pid, sources ``launch.sh`` and execs the task; it waits for it in the
foreground and records its exit status.

Why the wrapper is built this way:

- It traps every catchable signal with ``:``. A caught signal does not kill
  the shell, and exec resets caught signals to default in the task. Ignoring a
  signal (``trap '' SIG``) would make the task inherit the ignore. So a stop
  signal sent to the group ends the task, the wrapper lives on to write
  ``exit_code``, and signal N becomes exit code 128+N.
- It runs the task in the foreground, not with ``"$@" &``. A non-interactive sh
  starts background commands with SIGINT and SIGQUIT ignored, which cannot be
  undone, so ``stop_signal: SIGINT`` would never stop the task.
- The task's argv lives in ``launch.sh``, not in the wrapper's command line,
  so ``pgrep -f <task command>`` finds the task's own process only.
- dash changes the environment it passes on (it exports PWD and rewrites
  OPTIND, PPID and IFS). ``launch.sh`` puts those back, so the task gets
  exactly the agent's env. dash also drops names that are not shell
  identifiers, so the plan rejects such names.
- ``os.posix_spawn`` (not ``subprocess``) starts the wrapper. It can reset
  every signal disposition and the signal mask in the new process, so a
  signal the agent itself inherited as ignored (``nohup``, a background job)
  does not leak into tasks. It cannot chdir, so ``launch.sh`` does the cd.
"""

from __future__ import annotations

import asyncio
import errno
import grp
import os
import pwd
import re
import shlex
import signal
import stat
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from shoal.agent.runtime.base import TaskContext, TaskFailed, TaskRejected
from shoal.agent.runtime.process.handle import ProcessHandle, proc_stat, running
from shoal.agent.runtime.process.taskdir import TaskDir, read_int, write_atomic

# dash's own PATH when the environment has none: the lookup in the plan must
# find what the wrapper's exec will find.
SH_DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
# launch() waits this long for the wrapper to record the task's pid, so that
# inspect() reports the task's pid, not the wrapper's, from the start (it
# takes about a millisecond; on an overloaded host inspect falls back to the
# wrapper's pid until it appears).
CHILD_PID_WAIT = 1.0
_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
# Variables dash rewrites on the way to the task (see module docstring); of
# these it adds PWD always and OLDPWD on cd, even when the env has neither.
_SHELL_REWRITTEN = ("PWD", "OLDPWD", "OPTIND", "PPID", "IFS")
_SHELL_ADDED = ("PWD", "OLDPWD")
# The wrapper's scratch variables in the task's subshell; launch.sh removes them.
_WRAPPER_VARS = ("_shoal_pid", "_shoal_rest")

# Every signal sh may trap. KILL and STOP cannot be caught. CHLD is left to
# the shell's own child handling.
TRAPPED_SIGNALS = sorted(
    int(s) for s in signal.valid_signals() if s not in (signal.SIGKILL, signal.SIGSTOP, signal.SIGCHLD)
)
# $1 is the task directory. The subshell's /proc/self is the process that
# then execs the task, so its pid is the task's pid (dash has no $BASHPID).
WRAPPER_SCRIPT = f"""\
trap : {" ".join(map(str, TRAPPED_SIGNALS))}
(
  read -r _shoal_pid _shoal_rest </proc/self/stat
  printf '%s\\n' "$_shoal_pid" >"$1/child_pid"
  . "$1/launch.sh"
  exec "$@"
)
printf '%s\\n' "$?" >"$1/exit_code.tmp" && command -p mv -f -- "$1/exit_code.tmp" "$1/exit_code"
"""
# Shown as the wrapper's $0 in ps, next to the task directory.
WRAPPER_NAME = "shoal-task"


@dataclass(frozen=True)
class LaunchPlan:
    """A task's ContainerSpec resolved against this host."""

    argv: tuple[str, ...]
    workdir: Path
    env: dict[str, str]
    memory_kib: int  # 0: no limit


def process_env(task_env: Mapping[str, str], agent_env: Mapping[str, str]) -> dict[str, str]:
    """The task's environment: the agent's env for it, plus the agent's PATH
    and HOME unless it sets them."""
    env = dict(task_env)
    for name in ("PATH", "HOME"):
        if name not in env and name in agent_env:
            env[name] = agent_env[name]
    return env


def plan_launch(ctx: TaskContext, task_dir: Path) -> LaunchPlan:
    """Resolve the spec against this host, creating the task's directories.
    Raises TaskRejected with a message naming what is wrong."""
    container = ctx.task.spec.container
    argv = tuple(container.command) + tuple(container.args)
    if not argv:
        raise TaskRejected("no command given")
    if container.mounts:
        # Refused rather than ignored: a task that expects its volume
        # must not run without it.
        raise TaskRejected("mounts: the process runtime cannot mount anything (use --runtime docker)")
    check_user(container.user)
    env = process_env(ctx.env, os.environ)
    for name, value in env.items():
        if not _ENV_NAME.fullmatch(name):
            raise TaskRejected(
                f"env: {name!r} is not a valid variable name (the process runtime "
                "starts tasks through /bin/sh, which drops such names)"
            )
        if "\0" in value:
            raise TaskRejected(f"env: the value of {name} contains a NUL byte")
    if any("\0" in arg for arg in argv):
        raise TaskRejected("command: an argument contains a NUL byte")

    task_dir.mkdir(parents=True, exist_ok=True)
    if container.workdir:
        workdir = Path(container.workdir)
        if not workdir.is_absolute():
            raise TaskRejected(f"container.workdir: must be an absolute path, got {container.workdir!r}")
        if not workdir.is_dir():
            raise TaskRejected(f"container.workdir: directory {container.workdir!r} does not exist")
    else:
        workdir = task_dir / "work"
        workdir.mkdir(exist_ok=True)

    check_executable(argv[0], workdir, env.get("PATH", SH_DEFAULT_PATH))
    memory = ctx.task.spec.resources.limits.memory_bytes
    return LaunchPlan(argv=argv, workdir=workdir, env=env, memory_kib=-(-memory // 1024) if memory > 0 else 0)


def check_user(user: str) -> None:
    """Tasks run as the agent's own user: a spec naming another is refused
    (not ignored). USER[:GROUP], names or IDs, as Docker reads them."""
    if not user:
        return
    name, _, group = user.partition(":")
    uid, gid = os.geteuid(), os.getegid()
    try:
        me = pwd.getpwuid(uid).pw_name
    except KeyError:
        me = str(uid)
    try:
        my_group = grp.getgrgid(gid).gr_name
    except KeyError:
        my_group = str(gid)
    if name not in (me, str(uid)) or (group and group not in (my_group, str(gid))):
        raise TaskRejected(
            f'user "{user}": the process runtime runs tasks as the agent\'s user ({me}, uid {uid}); '
            "another user needs --runtime docker"
        )


def launch_script(plan: LaunchPlan) -> str:
    """The shell the wrapper's subshell sources just before exec."""
    q = shlex.quote
    lines = ["# written by shoal's process runtime; sourced by the task wrapper"]
    # 126: the command could not be invoked (POSIX's code for it).
    lines.append(f"cd -- {q(str(plan.workdir))} || exit 126")
    if plan.memory_kib:
        lines.append(f"ulimit -v {plan.memory_kib} || exit 126")
    lines.append("unset " + " ".join(_WRAPPER_VARS))
    # Give back exactly the environment the agent asked for.
    for name in (*_SHELL_REWRITTEN, *_WRAPPER_VARS):
        if name in plan.env:
            lines.append(f"export {name}={q(plan.env[name])}")
    added = [name for name in _SHELL_ADDED if name not in plan.env]
    if added:
        lines.append("unset " + " ".join(added))
    lines.append("set -- " + " ".join(q(arg) for arg in plan.argv))
    return "\n".join(lines) + "\n"


async def launch(plan: LaunchPlan, task: TaskDir) -> ProcessHandle:
    """Spawn the wrapper for `plan` and record its handle in the task's
    directory. Raises TaskRejected when /bin/sh cannot be spawned."""
    path = task.path
    (path / "child_pid").unlink(missing_ok=True)
    (path / "exit_code").unlink(missing_ok=True)
    write_atomic(path / "launch.sh", launch_script(plan))
    append = os.O_WRONLY | os.O_CREAT | os.O_APPEND
    file_actions: list[tuple[Any, ...]] = [
        (os.POSIX_SPAWN_OPEN, 0, os.devnull, os.O_RDONLY, 0),
        (os.POSIX_SPAWN_OPEN, 1, str(path / "stdout.log"), append, 0o640),
        (os.POSIX_SPAWN_OPEN, 2, str(path / "stderr.log"), append, 0o640),
    ]
    file_actions += [(os.POSIX_SPAWN_CLOSE, fd) for fd in _inheritable_fds()]
    try:
        pid = os.posix_spawn(
            "/bin/sh",
            ["/bin/sh", "-c", WRAPPER_SCRIPT, WRAPPER_NAME, str(path)],
            plan.env,
            file_actions=file_actions,
            setsid=True,
            setsigdef=[*TRAPPED_SIGNALS, int(signal.SIGCHLD)],
            setsigmask=(),
        )
    except OSError as e:
        raise TaskRejected(f'exec: "/bin/sh": {os_error(e.errno or errno.EIO)}') from e
    st = proc_stat(pid)  # our unreaped child: /proc/<pid> exists
    if st is None:
        raise TaskFailed(f"task wrapper {pid} vanished right after it was spawned")
    handle = ProcessHandle(pid=pid, start_time=st.start_time, argv=plan.argv)
    # If the agent dies right here, the task runs unrecorded and a restarted
    # agent may start it again. The window is microseconds. The wrapper's
    # command line names the task directory, so `pgrep -f <dir>` finds it.
    write_atomic(task.handle_file, handle.to_json())
    task.log.debug("started wrapper pid %d: %s", pid, shlex.join(plan.argv))
    loop = asyncio.get_running_loop()
    deadline = loop.time() + CHILD_PID_WAIT
    while read_int(path / "child_pid") is None and running(handle):
        if loop.time() > deadline:
            break
        await asyncio.sleep(0.002)
    return handle


def check_executable(name: str, workdir: Path, search_path: str) -> None:
    """Raise TaskRejected unless `name` would exec, using the wording of
    runc/Go's exec errors that users know from Docker."""
    if "/" in name:
        path = workdir / name  # an absolute name replaces workdir
        try:
            mode = path.stat().st_mode
        except OSError as e:
            raise TaskRejected(f'exec: "{name}": stat {name}: {os_error(e.errno or errno.ENOENT)}') from e
        if stat.S_ISDIR(mode):
            raise TaskRejected(f'exec: "{name}": is a directory')
        if not stat.S_ISREG(mode) or not os.access(path, os.X_OK):
            raise TaskRejected(f'exec: "{name}": {os_error(errno.EACCES)}')
        return
    if name:
        for entry in search_path.split(":"):
            candidate = workdir / (entry or ".") / name
            try:
                if stat.S_ISREG(candidate.stat().st_mode) and os.access(candidate, os.X_OK):
                    return
            except OSError:
                continue
    raise TaskRejected(f'exec: "{name}": executable file not found in $PATH')


def os_error(err: int) -> str:
    """An errno as Go words it: "no such file or directory"."""
    text = os.strerror(err)
    return text[:1].lower() + text[1:]


def _inheritable_fds() -> Iterator[int]:
    """Our descriptors beyond stdio that an exec would pass on. Python's own
    descriptors are close-on-exec, but a library may have made one
    inheritable. Tasks live long, so a leaked socket stays open for that long."""
    for entry in os.listdir("/proc/self/fd"):
        fd = int(entry)
        if fd > 2:
            try:
                if os.get_inheritable(fd):
                    yield fd
            except OSError:  # the listing's own descriptor, closed by now
                pass
