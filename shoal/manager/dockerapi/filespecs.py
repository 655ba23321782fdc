"""Secrets and configs as the Engine API shows them and takes them.

Pure. A secret is shown without its value (neither the engine nor shoal
ever returns one); a config with its data, base64 as Go encodes bytes. A
spec sent to create one may not ask for a secret driver or templating:
shoal stores the bytes given, so a task would get other contents than
asked for; that is refused, not ignored.
"""

from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass, field
from typing import Any

from shoal.manager.dockerapi.fields import Fields, refuse
from shoal.manager.dockerapi.wire import meta
from shoal.protos import objects_pb2 as pb

Json = dict[str, Any]


def secret(s: pb.Secret) -> Json:
    out = meta(s.meta)
    out["Spec"] = {"Name": s.spec.name, "Labels": dict(s.spec.labels)}
    return out


def config(c: pb.Config) -> Json:
    out = meta(c.meta)
    out["Spec"] = {"Name": c.spec.name, "Labels": dict(c.spec.labels)}
    if c.spec.data:
        out["Spec"]["Data"] = base64.b64encode(c.spec.data).decode()
    return out


@dataclass
class FileSpec:
    """What a SecretSpec or ConfigSpec asks for."""

    name: str = ""
    labels: dict[str, str] = field(default_factory=dict)
    data: bytes = b""
    data_given: bool = False


def file_spec(body: Any, kind: str) -> FileSpec:
    """A SecretSpec (kind "secret") or ConfigSpec body, read; anything else
    it asks for (a driver, templating) is refused."""
    ignored: list[str] = []
    fields = Fields(body, "", ignored)
    out = FileSpec(name=fields.text("Name") or "", labels=fields.text_map("Labels"))
    raw = fields.text("Data")
    if raw is not None:
        try:
            out.data = base64.b64decode(raw, validate=True)
        except (binascii.Error, ValueError):
            raise refuse("Data", "expected the bytes in base64") from None
        out.data_given = True
    fields.finish()
    if ignored:
        reasons = {
            "Driver": f"shoal keeps {kind}s itself (no {kind} drivers)",
            "Templating": f"shoal does not template {kind}s: a task gets the bytes given",
        }
        path = ignored[0]
        raise refuse(path, reasons.get(path.split(".", 1)[0], f"not a field of a {kind} shoal knows"))
    return out
