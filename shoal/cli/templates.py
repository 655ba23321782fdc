"""Go-style templates for ``--format``, the subset the docker CLI's users type.

A template is text with actions in ``{{ }}``. An action is a pipeline:
commands separated by ``|``, each command's result given to the next as its
last argument. A command is a field (``.Name``, ``.Labels.zone``, ``.`` for
the whole row), a function call (``json``, ``upper``, ``lower``, ``title``,
``truncate S N``, ``join LIST SEP``, ``split S SEP``, ``pad S PRE POST``,
``println``), a quoted string or a number, or a parenthesised pipeline.
``{{-`` and ``-}}`` trim the whitespace beside the action, as in Go.
Control structures (``if``, ``range``, ``with``, variables) are not
supported: a template that uses them is refused when parsed.

    parse(text, fields) -> Template      (TemplateError on a bad template)
    Template.render(row) -> str          one row: a mapping of field -> value
    Template.header(headers) -> str      the header line of a ``table`` format

Values print as Go prints them: strings as they are, booleans ``true`` /
``false``, lists ``[a b]``, maps ``map[k:v]``, a missing value ``<no value>``;
``json`` writes compact JSON with sorted keys, as Go's encoder does for maps.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass
from typing import Any


class TemplateError(ValueError):
    """A template that cannot be parsed or names something unknown."""


# ------------------------------------------------------------------ functions


def _title(text: str) -> str:
    """Go's strings.Title: the first letter of each word in upper case."""
    out = []
    previous = " "
    for ch in text:
        out.append(ch.upper() if not (previous.isalnum() or previous == "_") else ch)
        previous = ch
    return "".join(out)


def _truncate(text: str, length: int) -> str:
    return text if len(text) < length else text[:length]


def _pad(text: str, prefix: int, suffix: int) -> str:
    return text if text == "" else " " * prefix + text + " " * suffix


def _json(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"), sort_keys=True, ensure_ascii=False)


def _println(*values: Any) -> str:
    return " ".join(go_text(v) for v in values) + "\n"


FUNCTIONS: dict[str, Callable[..., Any]] = {
    "json": _json,
    "upper": lambda s: go_text(s).upper(),
    "lower": lambda s: go_text(s).lower(),
    "title": lambda s: _title(go_text(s)),
    "truncate": lambda s, n: _truncate(go_text(s), int(n)),
    "join": lambda items, sep: go_text(sep).join(go_text(i) for i in items),
    "split": lambda s, sep: go_text(s).split(go_text(sep)),
    "pad": lambda s, pre, post: _pad(go_text(s), int(pre), int(post)),
    "println": _println,
}
# How many arguments each function takes (println: any).
_ARITY = {"json": 1, "upper": 1, "lower": 1, "title": 1, "truncate": 2, "join": 2, "split": 2, "pad": 3}

# In a table's header line every function shows the column's header as it
# is, except pad (it keeps the header aligned with its column), as docker does.
HEADER_FUNCTIONS: dict[str, Callable[..., Any]] = {
    **{name: (lambda v, *_rest: v) for name in _ARITY},
    "pad": FUNCTIONS["pad"],
    "println": _println,
}


def go_text(value: Any) -> str:
    """A value as Go's text/template prints it."""
    if value is None:
        return "<no value>"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return value
    if isinstance(value, list | tuple):
        return "[" + " ".join(go_text(v) for v in value) + "]"
    if isinstance(value, Mapping):
        return "map[" + " ".join(f"{k}:{go_text(value[k])}" for k in sorted(value)) + "]"
    return str(value)


# ------------------------------------------------------------------ syntax tree


@dataclass(frozen=True)
class Field:
    path: tuple[str, ...]  # () is the row itself (".")


@dataclass(frozen=True)
class Literal:
    value: Any


@dataclass(frozen=True)
class Call:
    name: str
    args: tuple[Node, ...]


@dataclass(frozen=True)
class Pipeline:
    commands: tuple[Node, ...]


Node = Field | Literal | Call | Pipeline

_TOKEN = re.compile(
    r"""\s*(?:
        (?P<field>(?:\.[A-Za-z_][A-Za-z0-9_]*)+|\.)
      | (?P<string>"(?:[^"\\]|\\.)*"|`[^`]*`)
      | (?P<number>-?\d+(?:\.\d+)?)
      | (?P<ident>[A-Za-z_][A-Za-z0-9_]*)
      | (?P<punct>[|()])
    )""",
    re.VERBOSE,
)
_KEYWORDS = {"if", "else", "end", "range", "with", "define", "template", "block", "break", "continue"}


def _tokens(text: str) -> list[tuple[str, str]]:
    out = []
    pos = 0
    while pos < len(text):
        if text[pos:].strip() == "":
            break
        m = _TOKEN.match(text, pos)
        if m is None or m.end() == pos:
            raise TemplateError(f'cannot read "{text[pos:].strip()[:20]}" in "{{{{{text.strip()}}}}}"')
        kind = m.lastgroup or ""
        out.append((kind, m.group(kind)))
        pos = m.end()
    return out


class _Parser:
    def __init__(self, text: str) -> None:
        self.text = text
        self.tokens = _tokens(text)
        self.pos = 0

    def peek(self) -> tuple[str, str] | None:
        return self.tokens[self.pos] if self.pos < len(self.tokens) else None

    def take(self) -> tuple[str, str]:
        token = self.tokens[self.pos]
        self.pos += 1
        return token

    def pipeline(self, closing: str | None = None) -> Pipeline:
        commands = [self.command()]
        while (token := self.peek()) is not None and token == ("punct", "|"):
            self.take()
            commands.append(self.command())
        token = self.peek()
        if closing is None and token is not None:
            raise TemplateError(f'unexpected "{token[1]}" in "{{{{{self.text.strip()}}}}}"')
        return Pipeline(tuple(commands))

    def command(self) -> Node:
        operands: list[Node] = []
        while (token := self.peek()) is not None and token != ("punct", "|") and token != ("punct", ")"):
            operands.append(self.operand())
        if not operands:
            raise TemplateError(f'missing value in "{{{{{self.text.strip()}}}}}"')
        head, *args = operands
        if isinstance(head, Call) and not head.args:
            return Call(head.name, tuple(args))
        if args:
            raise TemplateError(f'"{self.text.strip()}": only a function can take arguments')
        return head

    def operand(self) -> Node:
        kind, value = self.take()
        if kind == "field":
            return Field(tuple(p for p in value.split(".") if p))
        if kind == "string":
            if value.startswith("`"):
                return Literal(value[1:-1])
            return Literal(json.loads(value))
        if kind == "number":
            return Literal(float(value) if "." in value else int(value))
        if kind == "ident":
            if value in _KEYWORDS:
                raise TemplateError(f'"{value}" is not supported (only fields and functions are)')
            if value in ("true", "false"):
                return Literal(value == "true")
            if value not in FUNCTIONS:
                raise TemplateError(f'function "{value}" not defined (known: {", ".join(sorted(FUNCTIONS))})')
            return Call(value, ())
        if value == "(":
            inner = self.pipeline(closing=")")
            if self.peek() != ("punct", ")"):
                raise TemplateError(f'unclosed "(" in "{{{{{self.text.strip()}}}}}"')
            self.take()
            return inner
        raise TemplateError(f'unexpected "{value}" in "{{{{{self.text.strip()}}}}}"')


def _check(node: Node, fields: Collection[str] | None, piped: bool = False) -> None:
    """Refuse unknown fields and calls with the wrong number of arguments
    (piped: the call also gets the value before the | as its last one)."""
    if isinstance(node, Field):
        if fields is not None and node.path and node.path[0] not in fields:
            raise TemplateError(f'no field "{node.path[0]}": the fields are {", ".join(sorted(fields))}')
    elif isinstance(node, Call):
        arity = _ARITY.get(node.name)
        given = len(node.args) + (1 if piped else 0)
        if arity is not None and given != arity:
            plural = "s" if arity > 1 else ""
            raise TemplateError(f"{node.name}: takes {arity} argument{plural}, got {given}")
        for arg in node.args:
            _check(arg, fields)
    elif isinstance(node, Pipeline):
        for i, command in enumerate(node.commands):
            if i and not isinstance(command, Call):
                raise TemplateError("only a function can follow | in a pipeline")
            _check(command, fields, piped=i > 0)


# ------------------------------------------------------------------ evaluation


def _lookup(row: Any, path: tuple[str, ...]) -> Any:
    value = row
    for part in path:
        if isinstance(value, Mapping):
            value = value.get(part)
        else:
            return None
    return value


def _eval(node: Node, row: Any, funcs: Mapping[str, Callable[..., Any]], piped: tuple[Any, ...] = ()) -> Any:
    if isinstance(node, Field):
        return _lookup(row, node.path)
    if isinstance(node, Literal):
        return node.value
    if isinstance(node, Call):
        args = [_eval(a, row, funcs) for a in node.args] + list(piped)
        arity = _ARITY.get(node.name)
        if arity is not None and len(args) != arity:
            raise TemplateError(
                f"{node.name}: takes {arity} argument{'s' if arity > 1 else ''}, got {len(args)}"
            )
        try:
            return funcs[node.name](*args)
        except (TypeError, ValueError) as err:
            raise TemplateError(f"{node.name}: {err}") from None
    value: Any = None
    for i, command in enumerate(node.commands):
        value = _eval(command, row, funcs, (value,) if i else ())
    return value


@dataclass(frozen=True)
class Template:
    parts: tuple[str | Pipeline, ...]

    def render(self, row: Mapping[str, Any]) -> str:
        return "".join(p if isinstance(p, str) else go_text(_eval(p, row, FUNCTIONS)) for p in self.parts)

    def header(self, headers: Mapping[str, str]) -> str:
        """The line a ``table`` format puts above its rows: each field
        replaced by its column header (``DesiredState`` -> ``DESIRED STATE``)."""
        named = {k: headers.get(k, _default_header(k)) for k in self.fields()}
        return "".join(
            p if isinstance(p, str) else go_text(_eval(p, named, HEADER_FUNCTIONS)) for p in self.parts
        )

    def fields(self) -> set[str]:
        found: set[str] = set()

        def walk(node: Node) -> None:
            if isinstance(node, Field) and node.path:
                found.add(node.path[0])
            elif isinstance(node, Call):
                for a in node.args:
                    walk(a)
            elif isinstance(node, Pipeline):
                for c in node.commands:
                    walk(c)

        for p in self.parts:
            if not isinstance(p, str):
                walk(p)
        return found


def _default_header(field: str) -> str:
    """``DesiredState`` -> ``DESIRED STATE``."""
    return re.sub(r"(?<=[a-z0-9])(?=[A-Z])", " ", field).upper()


_ACTION = re.compile(r"\{\{(-\s)?(.*?)(\s-)?\}\}", re.DOTALL)


def parse(text: str, fields: Collection[str] | None = None) -> Template:
    """The template in text; with fields, a field outside them is refused."""
    parts: list[str | Pipeline] = []
    pos = 0
    trim_next = False
    for m in _ACTION.finditer(text):
        literal = text[pos : m.start()]
        if trim_next:
            literal = literal.lstrip()
        if m.group(1):
            literal = literal.rstrip()
        if literal:
            parts.append(literal)
        body = m.group(2)
        if body.strip().startswith("/*"):
            pipeline = None  # a comment
        else:
            pipeline = _Parser(body).pipeline()
            _check(pipeline, fields)
            parts.append(pipeline)
        trim_next = bool(m.group(3))
        pos = m.end()
    rest = text[pos:]
    if "{{" in rest:
        raise TemplateError(f'unclosed action in "{rest[rest.index("{{") :][:30]}"')
    if trim_next:
        rest = rest.lstrip()
    if rest:
        parts.append(rest)
    return Template(tuple(parts))
