"""``--secret`` and ``--config`` (and their ``-add``/``-rm`` forms): how a
service refers to secrets and configs.

``NAME`` or ``source=NAME[,target=PATH][,uid=N][,gid=N][,mode=0440]``, as
Docker takes them; the mode is always octal. The manager resolves each name
to its object and checks the rest (``shoal.rules.validate``); these parsers
only make a malformed flag name itself.
"""

from __future__ import annotations

from collections.abc import Iterable, MutableSequence

from shoal.cli.client import CLIError
from shoal.protos import objects_pb2 as pb


def parse_file_ref(flag: str, value: str) -> pb.FileReference:
    ref = pb.FileReference()
    if "=" not in value:
        ref.name = value
    else:
        for part in value.split(","):
            key, sep, v = part.partition("=")
            key = key.strip().lower()
            if not sep:
                raise CLIError(f'{flag} "{value}": expected KEY=VALUE pairs, got "{part}"')
            if key in ("source", "src"):
                ref.name = v
            elif key == "target":
                ref.target = v
            elif key == "uid":
                ref.uid = v
            elif key == "gid":
                ref.gid = v
            elif key == "mode":
                try:
                    ref.mode = int(v, 8)
                except ValueError:
                    raise CLIError(f'{flag} "{value}": mode must be octal, e.g. 0400, got "{v}"') from None
            else:
                raise CLIError(f'{flag} "{value}": unknown key "{key}" (source, target, uid, gid, mode)')
    if not ref.name:
        raise CLIError(f'{flag} "{value}": a name (source) is required')
    return ref


def change_refs(
    refs: MutableSequence[pb.FileReference], flag: str, remove: Iterable[str], add: Iterable[str]
) -> None:
    """Remove references by name, then add new ones (one with the same
    target as an added one is replaced)."""
    removed = set(remove)
    added = [parse_file_ref(f"{flag}-add", item) for item in add]
    targets = {a.target or a.name for a in added}
    kept = [r for r in refs if r.name not in removed and (r.target or r.name) not in targets]
    del refs[:]
    refs.extend(kept + added)
