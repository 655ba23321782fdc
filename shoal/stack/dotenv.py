"""``.env`` files (the one beside the first Compose file) and ``env_file:``.

One ``KEY=VALUE`` a line; blank lines and lines starting with ``#`` are
skipped; ``export KEY=VALUE`` is allowed; a value in single quotes is taken
as it is, in double quotes with ``\\n``, ``\\t``, ``\\"`` and ``\\\\`` escapes;
an unquoted value ends at `` #`` (a comment) and is stripped. ``KEY`` alone
(``env_file:`` only) means the deploying shell's value, if it has one.
"""

from __future__ import annotations

import re
from pathlib import Path

from shoal.stack.located import Loc, StackError
from shoal.stack.yamlsafe import MAX_FILE_BYTES, read_bounded

_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_.\-]*")
_ESCAPES = {"n": "\n", "t": "\t", "r": "\r", '"': '"', "\\": "\\", "$": "$"}


def _unquote(raw: str, loc: Loc) -> str:
    value = raw.strip()
    if value.startswith("'"):
        end = value.find("'", 1)
        if end < 0:
            raise StackError("unterminated single quote", loc)
        return value[1:end]
    if value.startswith('"'):
        out: list[str] = []
        i = 1
        while i < len(value):
            c = value[i]
            if c == "\\" and i + 1 < len(value):
                out.append(_ESCAPES.get(value[i + 1], "\\" + value[i + 1]))
                i += 2
                continue
            if c == '"':
                return "".join(out)
            out.append(c)
            i += 1
        raise StackError("unterminated double quote", loc)
    comment = value.find(" #")
    return (value[:comment] if comment >= 0 else value).strip()


def parse_env(text: str, name: str, allow_bare: bool = False) -> dict[str, str | None]:
    """KEY -> value (None for a bare KEY when allow_bare). StackError with
    the file and line for a line that is not KEY=VALUE."""
    out: dict[str, str | None] = {}
    for number, line in enumerate(text.splitlines(), 1):
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            continue
        loc = Loc(name, number)
        if stripped.startswith("export "):
            stripped = stripped[len("export ") :].lstrip()
        key, sep, raw = stripped.partition("=")
        key = key.strip()
        if not _NAME.fullmatch(key):
            raise StackError(f'expected KEY=VALUE, got "{stripped[:60]}"', loc)
        if not sep:
            if not allow_bare:
                raise StackError(f'expected KEY=VALUE, got "{stripped[:60]}"', loc)
            out[key] = None
            continue
        out[key] = _unquote(raw, loc)
    return out


def read_env_file(path: Path, allow_bare: bool = False) -> dict[str, str | None]:
    data = read_bounded(str(path))
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise StackError(f"{path}: not UTF-8 text") from None
    return parse_env(text, str(path), allow_bare)


def dotenv_beside(first_file: str) -> dict[str, str]:
    """The variables of the ``.env`` beside the first Compose file (the
    current directory's for stdin); empty when there is none."""
    folder = Path.cwd() if first_file == "-" else Path(first_file).parent
    path = folder / ".env"
    if not path.is_file():
        return {}
    if path.stat().st_size > MAX_FILE_BYTES:
        raise StackError(f"{path}: at most {MAX_FILE_BYTES} bytes")
    return {k: v for k, v in read_env_file(path).items() if v is not None}
