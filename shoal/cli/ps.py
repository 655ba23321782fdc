"""``service ps`` and ``node ps``: the tasks of some services or nodes.

Tasks are fetched once per service (or node) named, filtered here (filters.py),
sorted as docker sorts them (by service and slot, newest first within a slot),
and printed as a table (a slot's older tasks indented ``\\_``), as JSON
(CLI.md's shape) or through a template.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import click

from shoal.cli import listing
from shoal.cli.client import Client
from shoal.cli.filters import TASK_KEYS, Filters, parse_filters, task_matches
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


@dataclass(frozen=True)
class Asked:
    """What the user asked of a ps, checked before any call."""

    output: listing.Output
    filters: Filters
    quiet: bool
    trunc: bool


def check(fmt: str, filters: tuple[str, ...], quiet: bool, no_trunc: bool) -> Asked:
    return Asked(listing.check_format(TASKS, fmt), parse_filters(filters, TASK_KEYS), quiet, not no_trunc)


def print_task_list(found: TaskList, asked: Asked) -> None:
    """The tasks of found, filtered, sorted and printed as asked."""
    output, chosen, trunc = asked.output, asked.filters, asked.trunc
    tasks = sort_tasks_for_ps([t for t in found.tasks if task_matches(chosen, t, found.hostnames)])
    if asked.quiet:
        for t in tasks:
            click.echo(t.meta.id)
        return
    now = time.time_ns()
    rows = []
    last = ""
    for t in tasks:
        name = task_display_name(t)
        shown = HISTORY_INDENT + name if output.is_table and name == last else name
        last = name
        rows.append(task_row(t, shown, found.hostnames, found.down, now, trunc, found.addrs))
    listing.emit(TASKS, output, rows, lambda: [task_json(t, found.hostnames, found.addrs) for t in tasks])


def ps_options(fn: Callable[..., Any]) -> Callable[..., Any]:
    """The options service ps and node ps share."""
    options: list[Callable[[Callable[..., Any]], Callable[..., Any]]] = [
        listing.format_option(TASKS),
        click.option("--quiet", "-q", is_flag=True, help="Print only the task IDs"),
        listing.no_trunc_option,
        click.option(
            "--filter",
            "-f",
            "filters",
            multiple=True,
            metavar="KEY=VALUE",
            help="Only tasks that match: id, name, node, desired-state=running|shutdown|accepted "
            "(repeat: any value of a key, every key)",
        ),
    ]
    for option in reversed(options):
        fn = option(fn)
    return fn
