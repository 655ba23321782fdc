"""``service ps``, ``node ps`` and ``stack ps``: the tasks of some services
or nodes.

Tasks are fetched once per service (or node) named, filtered here (filters.py),
sorted as docker sorts them (by service and slot, newest first within a slot),
and printed as a table (a slot's older tasks indented ``\\_``), as JSON
(CLI.md's shape) or through a template.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

import click

from shoal.cli import listing
from shoal.cli.client import Client
from shoal.cli.filters import TASK_KEYS, task_matches
from shoal.cli.render import sort_tasks_for_ps, task_display_name, task_json
from shoal.cli.rows import TASKS, task_row
from shoal.protos import control_pb2 as cpb
from shoal.protos import objects_pb2 as pb

HISTORY_INDENT = " \\_ "


@dataclass
class TaskList:
    tasks: list[pb.Task] = field(default_factory=list)
    hostnames: dict[str, str] = field(default_factory=dict)
    down: dict[str, str] = field(default_factory=dict)  # node ID -> why it is down
    addrs: dict[str, str] = field(default_factory=dict)  # node ID -> its address (endpoints)

    def add(self, resp: cpb.ListTasksResponse) -> None:
        seen = {t.meta.id for t in self.tasks}
        self.tasks.extend(t for t in resp.tasks if t.meta.id not in seen)
        self.hostnames.update(resp.node_hostnames)
        self.down.update(resp.node_down)
        self.addrs.update(resp.node_addrs)


def fetch(client: Client, requests: list[cpb.ListTasksRequest]) -> TaskList:
    found = TaskList()
    for request in requests:
        found.add(client.call("ListTasks", request, retry=True))
    return found


F = TypeVar("F", bound=Callable[..., Any])


def check(fmt: str, filters: tuple[str, ...], quiet: bool, no_trunc: bool) -> listing.Asked:
    return listing.ask(TASKS, TASK_KEYS, fmt, filters, quiet, no_trunc)


def print_task_list(found: TaskList, asked: listing.Asked) -> None:
    """The tasks of found, filtered, sorted and printed as asked."""
    tasks = sort_tasks_for_ps([t for t in found.tasks if task_matches(asked.filters, t, found.hostnames)])
    names = [task_display_name(t) for t in tasks]
    # In a table a slot's older tasks are indented under its newest.
    shown = {
        t.meta.id: HISTORY_INDENT + name if asked.output.is_table and i and names[i - 1] == name else name
        for i, (t, name) in enumerate(zip(tasks, names, strict=True))
    }
    now = time.time_ns()
    listing.show(
        TASKS,
        asked,
        tasks,
        lambda t: t.meta.id,
        lambda t: task_row(t, shown[t.meta.id], found.hostnames, found.down, now, asked.trunc, found.addrs),
        lambda t: task_json(t, found.hostnames, found.addrs),
    )


def ps_options(fn: F) -> F:
    """The options service ps, node ps and stack ps share."""
    return listing.options(
        TASKS, "task IDs", "Only tasks that match: id, name, node, desired-state=running|shutdown|accepted"
    )(fn)


def ps_command(metavar: str, help: str, request: Callable[[str], cpb.ListTasksRequest]) -> click.Command:
    """A ps command: the tasks of the objects named (request: the ListTasks
    request of one of them)."""

    @click.command(name="ps", help=help)
    @ps_options
    @click.argument("refs", nargs=-1, required=True, metavar=metavar)
    @click.pass_obj
    def command(
        client_factory: Callable[[], Client],
        refs: tuple[str, ...],
        fmt: str,
        quiet: bool,
        no_trunc: bool,
        filters: tuple[str, ...],
    ) -> None:
        asked = check(fmt, filters, quiet, no_trunc)
        print_task_list(fetch(client_factory(), [request(r) for r in refs]), asked)

    return command
