"""The ``process`` backend: each task is a process group on the host.

There is no image and no isolation: the task's ``ContainerSpec`` gives the argv
(``command + args``), the working directory and, through the agent's
``TaskContext.env``, the environment. The image reference is only recorded
(``SHOAL_TASK_IMAGE``, set by the agent). The memory limit is applied as
RLIMIT_AS (address space, not resident memory: runtimes that reserve large
virtual ranges, such as Go or the JVM, may need a generous limit). The CPU
limit is not enforced by this backend. Processes that leave the task's process
group (``setsid``, daemons) are not tracked. A cgroup backend would handle them.

Data flow: the agent's worker calls the ``ProcessTaskController`` that
``ProcessRuntime`` made. start() plans the launch and spawns a ``/bin/sh``
wrapper that runs the task and records how it ended (``launch``). Everything
about a task lives in its directory (``taskdir``), so a restarted agent (a new
``ProcessRuntime`` on the same state_dir) adopts running tasks: inspect()
reads handle.json and checks /proc, and wait() watches the wrapper with a
pidfd, which works for processes that are not our children (``handle``).

The rooms, each with one job:

    handle       ProcessHandle (handle.json) and /proc probing: alive, group, pidfd
    taskdir      the task's directory: its files read back, stop, delete
    launch       spec -> LaunchPlan, launch.sh, spawning the wrapper
    stopping     stop_signal -> SignalPlan; the stop protocol on the group
    logs         stdout.log and stderr.log read back (tail, follow)
    execs        shoal exec: a further command beside the task
    health       health checks run by the agent, by Docker's rules
    controller   ProcessTaskController: the TaskController of one task
    runtime      ProcessRuntime: the Runtime (controllers, list, discard)
"""

from __future__ import annotations

from shoal.agent.runtime.process.controller import ProcessTaskController
from shoal.agent.runtime.process.handle import HANDLE_VERSION, ProcessHandle
from shoal.agent.runtime.process.runtime import ProcessRuntime
from shoal.agent.runtime.process.taskdir import KILLED_EXIT_CODE, KILLED_MESSAGE

__all__ = [
    "HANDLE_VERSION",
    "KILLED_EXIT_CODE",
    "KILLED_MESSAGE",
    "ProcessHandle",
    "ProcessRuntime",
    "ProcessTaskController",
]
