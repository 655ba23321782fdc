"""Printing a listing as the docker CLI does: ``--format`` and aligned tables.

A Listing names the fields of its rows (docker's names: ``ID``, ``Name``,
``DesiredState`` ...), their column headers, and its default table. What
``--format`` selects:

    table (default)      the default table
    json                 the JSON array of CLI.md (snake_case fields)
    table TEMPLATE       a table of the template's fields, with headers
    TEMPLATE             the template once per row (``{{.Name}}``, ``{{json .}}``)

``\\t`` and ``\\n`` typed in a format are a tab and a newline. Tables are
aligned as Go's tabwriter aligns docker's: each tab-ended cell padded to its
column's widest cell plus 3 spaces, at least 10 characters. A format (and a
filter) is checked before anything is asked of a manager, so a bad one
changes nothing.

Every listing takes the same options (``options``: ``--format``, ``-q``,
``--no-trunc``, ``-f``), checked into one ``Asked`` (``ask``) and printed by
``show`` (or ``emit``, for a listing that builds its own rows).
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

import click

from shoal.cli.client import CLIError
from shoal.cli.filters import Filters, parse_filters
from shoal.cli.templates import Template, TemplateError, parse

F = TypeVar("F", bound=Callable[..., Any])
T = TypeVar("T")

MIN_WIDTH = 10
PADDING = 3


def tabulate(text: str, min_width: int = MIN_WIDTH, padding: int = PADDING) -> str:
    """Align tab-separated cells into columns (the text after a line's last
    tab is not a cell: it is printed as it is)."""
    lines = [line.split("\t") for line in text.split("\n")]
    widths: list[int] = []
    for cells in lines:
        for i, cell in enumerate(cells[:-1]):
            if i == len(widths):
                widths.append(min_width)
            widths[i] = max(widths[i], len(cell) + padding)
    out = []
    for cells in lines:
        padded = [cell.ljust(widths[i]) for i, cell in enumerate(cells[:-1])]
        out.append(("".join(padded) + cells[-1]).rstrip())
    return "\n".join(out)


def table(rows: list[list[str]], headers: list[str]) -> str:
    """Rows under headers, aligned as docker aligns its tables."""
    return tabulate("\n".join("\t".join(cells) for cells in [headers, *rows]))


def natural_key(text: str) -> list[Any]:
    """Sorts names as docker does (sortorder.NaturalLess): web2 before web10."""
    return [int(part) if i % 2 else part for i, part in enumerate(re.split(r"(\d+)", text))]


@dataclass(frozen=True)
class Listing:
    headers: Mapping[str, str]  # field -> column header
    default: str  # the default format, "table {{.ID}}\t..."

    @property
    def fields(self) -> list[str]:
        return list(self.headers)


@dataclass(frozen=True)
class Output:
    """A checked --format: how to print a listing's rows."""

    kind: str  # "json", "table" or "template"
    template: Template | None = None

    @property
    def is_table(self) -> bool:
        return self.kind == "table"


@dataclass(frozen=True)
class Asked:
    """What the user asked of a listing, checked before any call."""

    output: Output
    filters: Filters
    quiet: bool
    trunc: bool


def format_option(listing: Listing) -> Callable[[F], F]:
    fields = ", ".join(listing.fields)
    return click.option(
        "--format",
        "fmt",
        default="table",
        metavar="FORMAT",
        help=(
            "table (the default), json, a Go template such as '{{.Name}}', or 'table TEMPLATE' "
            f"for a table of those columns. Fields: {fields}"
        ),
    )


def no_trunc_option(fn: F) -> F:
    return click.option("--no-trunc", is_flag=True, help="Show IDs (and errors) whole")(fn)


def options(listing: Listing, ids: str, filter_help: str) -> Callable[[F], F]:
    """The options of a listing: --format, -q (printing only the ``ids``),
    --no-trunc, -f/--filter (filter_help: "Only ... that match: KEYS")."""
    decorators: list[Callable[[F], F]] = [
        format_option(listing),
        click.option("--quiet", "-q", is_flag=True, help=f"Print only the {ids}"),
        no_trunc_option,
        click.option(
            "--filter",
            "-f",
            "filters",
            multiple=True,
            metavar="KEY=VALUE",
            help=f"{filter_help} (repeat: any value of a key, every key)",
        ),
    ]

    def apply(fn: F) -> F:
        for decorate in reversed(decorators):
            fn = decorate(fn)
        return fn

    return apply


def ask(
    listing: Listing,
    keys: Mapping[str, tuple[str, ...] | None],
    fmt: str,
    filters: Sequence[str] = (),
    quiet: bool = False,
    no_trunc: bool = False,
) -> Asked:
    """The options of a listing, checked (CLIError for a bad one)."""
    return Asked(check_format(listing, fmt), parse_filters(filters, keys), quiet, not no_trunc)


def check_format(listing: Listing, fmt: str) -> Output:
    """The output --format asks for; CLIError for a bad template."""
    text = fmt.strip()
    if text == "json":
        return Output("json")
    if text == "table":
        text = listing.default
    text = text.replace("\\t", "\t").replace("\\n", "\n")
    as_table = text.startswith("table")
    if as_table:
        text = text[len("table") :].strip(" ")
    try:
        template = parse(text, listing.fields)
    except TemplateError as err:
        raise CLIError(f"--format: {err}") from None
    return Output("table" if as_table else "template", template)


def emit(
    listing: Listing, output: Output, rows: list[dict[str, Any]], json_rows: Callable[[], list[Any]]
) -> None:
    """Print rows as output says (json_rows: the CLI.md JSON, made only if asked for)."""
    if output.kind == "json":
        click.echo(json.dumps(json_rows(), indent=2))
        return
    assert output.template is not None
    try:
        rendered = [output.template.render(row) for row in rows]
        if output.is_table:
            text = "\n".join([output.template.header(listing.headers), *rendered])
            click.echo(tabulate(text))
        else:
            for line in rendered:
                click.echo(line)
    except TemplateError as err:
        raise CLIError(f"--format: {err}") from None


def show(
    listing: Listing,
    asked: Asked,
    items: Sequence[T],
    id_of: Callable[[T], str],
    row: Callable[[T], dict[str, Any]],
    json_of: Callable[[T], Any],
) -> None:
    """Print items as asked: their IDs (-q), or their rows (row: an item's
    row; json_of: its CLI.md JSON)."""
    if asked.quiet:
        for item in items:
            click.echo(id_of(item))
        return
    emit(listing, asked.output, [row(i) for i in items], lambda: [json_of(i) for i in items])
