"""Reading a Compose file's YAML without letting it take the machine down.

A YAML file can be small and still expand into a huge document: anchors
and aliases (``&a``/``*a``) and merge keys (``<<: *a``) copy a node
wherever they appear, so ten lines of "billion laughs" mean 10^9 nodes to
anyone who walks the result. The bounds, checked while the file is read,
before any of it is used:

- a file over ``MAX_FILE_BYTES`` is refused before it is parsed;
- mappings and sequences nested deeper than ``MAX_DEPTH`` are refused;
- the nodes that aliases and merge keys bring in, counted with everything
  inside them, may total at most ``MAX_EXPANDED_NODES``;
- an alias inside the node it names (a recursive document) is refused.

A counting composer (PyYAML's, with a weight per node) does this, so a bomb
fails in milliseconds with little memory. Only PyYAML's safe constructors
are used (no tags that build objects), and numbers are never read in base
60 (``22:22`` stays a string). Mappings and sequences come back as
``LMap``/``LList`` with the line of every key and item; a key written twice
in one mapping is an error, as in Compose.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path
from typing import Any

import yaml
from yaml.events import AliasEvent, CollectionStartEvent
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from shoal.stack.located import LList, LMap, Loc, StackError

MAX_FILE_BYTES = 1024 * 1024
MAX_DEPTH = 64
MAX_EXPANDED_NODES = 10_000


def read_bounded(path: str) -> bytes:
    """A file's bytes (stdin for "-"), refused beyond MAX_FILE_BYTES without
    reading further."""
    try:
        if path == "-":
            data = sys.stdin.buffer.read(MAX_FILE_BYTES + 1)
        else:
            size = Path(path).stat().st_size
            if size > MAX_FILE_BYTES:
                raise StackError(f"{path}: {size} bytes; a Compose file may have at most {MAX_FILE_BYTES}")
            with open(path, "rb") as f:
                data = f.read(MAX_FILE_BYTES + 1)
    except OSError as err:
        raise StackError(f"{path}: {err.strerror or err}") from None
    if len(data) > MAX_FILE_BYTES:
        raise StackError(f"{path}: a Compose file may have at most {MAX_FILE_BYTES} bytes")
    return data


class _Loader(yaml.SafeLoader):
    """PyYAML's safe loader, composing under the bounds of the module docstring."""

    def __init__(self, stream: str, name: str) -> None:
        super().__init__(stream)
        self.name = name
        self._depth = 0
        self._expanded = 0
        self._open_anchors: set[str] = set()
        self._weights: dict[int, int] = {}
        # The weight being summed for each node being composed, innermost last.
        self._sums: list[int] = [0]

    def _mark(self, node_or_event: Any) -> Loc:
        return Loc(self.name, node_or_event.start_mark.line + 1)

    def compose_node(self, parent: Node | None, index: Any) -> Node:
        if self.check_event(AliasEvent):
            event = self.peek_event()  # type: ignore[no-untyped-call]
            if event.anchor in self._open_anchors:
                raise StackError(
                    f"recursive alias *{event.anchor} (inside the node it names)", self._mark(event)
                )
            node = super().compose_node(parent, index)
            assert node is not None
            weight = self._weights.get(id(node), 1)
            self._expanded += weight
            self._sums[-1] += weight
            if self._expanded > MAX_EXPANDED_NODES:
                raise StackError(
                    f"aliases and merge keys expand to more than {MAX_EXPANDED_NODES} nodes "
                    "(a YAML bomb?); refused",
                    self._mark(event),
                )
            return node
        event = self.peek_event()  # type: ignore[no-untyped-call]
        collection = isinstance(event, CollectionStartEvent)
        anchor = getattr(event, "anchor", None)
        if collection:
            self._depth += 1
            if self._depth > MAX_DEPTH:
                raise StackError(f"nested more than {MAX_DEPTH} levels deep; refused", self._mark(event))
        if anchor:
            self._open_anchors.add(anchor)
        self._sums.append(0)
        node = super().compose_node(parent, index)
        assert node is not None
        weight = self._sums.pop() + 1
        self._sums[-1] += weight
        self._weights[id(node)] = weight
        if anchor:
            self._open_anchors.discard(anchor)
        if collection:
            self._depth -= 1
        return node


def _construct_map(loader: _Loader, node: MappingNode) -> Any:
    data = LMap(loader._mark(node))
    yield data
    seen: set[Any] = set()
    for key_node, _ in node.value:
        if isinstance(key_node, ScalarNode) and key_node.tag != "tag:yaml.org,2002:merge":
            key = key_node.value
            if key in seen:
                raise StackError(f'key "{key}" appears twice in one mapping', loader._mark(key_node))
            seen.add(key)
    loader.flatten_mapping(node)
    for key_node, value_node in node.value:
        key = loader.construct_object(key_node, deep=True)
        if isinstance(key, dict | list):
            raise StackError("a mapping key must be a plain value", loader._mark(key_node))
        value = loader.construct_object(value_node, deep=True)
        data.put(key if isinstance(key, str) else _key_text(key), value, loader._mark(key_node))


def _key_text(key: Any) -> str:
    if key is None:
        return "null"
    if isinstance(key, bool):
        return "true" if key else "false"
    return str(key)


def _construct_seq(loader: _Loader, node: SequenceNode) -> Any:
    data = LList(loader._mark(node))
    yield data
    for item in node.value:
        data.add(loader.construct_object(item, deep=True), loader._mark(item))


# YAML 1.1 reads 22:22 as a number in base 60 (1342): a port mapping
# written without quotes would change meaning. Numbers here are decimal,
# octal (0440, as file modes are written), hex or binary, never base 60.
_INT = "tag:yaml.org,2002:int"
_FLOAT = "tag:yaml.org,2002:float"
_Loader.yaml_implicit_resolvers = {
    first: [(tag, regexp) for tag, regexp in resolvers if tag not in (_INT, _FLOAT)]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
_Loader.add_implicit_resolver(
    _INT,
    re.compile(r"^(?:[-+]?0b[0-1_]+|[-+]?0[0-7_]+|[-+]?(?:0|[1-9][0-9_]*)|[-+]?0x[0-9a-fA-F_]+)$"),
    list("-+0123456789"),
)
_Loader.add_implicit_resolver(
    _FLOAT,
    re.compile(
        r"^(?:[-+]?(?:[0-9][0-9_]*)\.[0-9_]*(?:[eE][-+]?[0-9]+)?|\.[0-9_]+(?:[eE][-+]?[0-9]+)?"
        r"|[-+]?\.(?:inf|Inf|INF)|\.(?:nan|NaN|NAN))$"
    ),
    list("-+0123456789."),
)


def _construct_str(loader: _Loader, node: ScalarNode) -> str:
    value = str(loader.construct_scalar(node))
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        # PyYAML decodes each "\uXXXX" on its own: a character beyond the
        # BMP escaped as a pair ("\ud83d\ude00", as JSON writes it) comes
        # out as two surrogates. Join the pairs; a lone one is no text.
        try:
            value = value.encode("utf-16", "surrogatepass").decode("utf-16")
        except UnicodeDecodeError:
            raise StackError("not valid Unicode text (a lone surrogate escape)", loader._mark(node)) from None
    return value


_Loader.add_constructor("tag:yaml.org,2002:str", _construct_str)
_Loader.add_constructor("tag:yaml.org,2002:map", _construct_map)
_Loader.add_constructor("tag:yaml.org,2002:seq", _construct_seq)


def parse(text: str, name: str) -> Any:
    """The one document in text (None when empty), under the bounds."""
    loader = _Loader(text, name)
    try:
        return loader.get_single_data()
    except StackError:
        raise
    except yaml.MarkedYAMLError as err:
        mark = err.problem_mark or err.context_mark
        where = Loc(name, mark.line + 1) if mark is not None else None
        context = err.context or ""
        if err.context_mark is not None and mark is not None and err.context_mark.line != mark.line:
            context += f" (from line {err.context_mark.line + 1})"
        problem = " ".join(p for p in (context, err.problem) if p) or "invalid YAML"
        raise StackError(f"invalid YAML: {problem}", where) from None
    except yaml.YAMLError as err:
        raise StackError(f"{name}: invalid YAML: {err}") from None
    except RecursionError:
        raise StackError(f"{name}: nested too deeply; refused") from None
    finally:
        loader.dispose()


def load_file(path: str) -> Any:
    """Read and parse one Compose file (see ``parse``)."""
    data = read_bounded(path)
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as err:
        raise StackError(f"{path}: not UTF-8 text (byte {err.start})") from None
    return parse(text, path)
