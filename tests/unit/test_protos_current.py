"""The checked-in generated protobuf code is what scripts/gen-protos makes."""

from __future__ import annotations

import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_generated_protobuf_code_is_current(tmp_path: Path) -> None:
    subprocess.run([str(ROOT / "scripts" / "gen-protos"), str(tmp_path)], check=True, cwd=ROOT)
    generated = sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*") if p.is_file())
    assert generated, "gen-protos produced nothing"
    stale = [str(rel) for rel in generated if (tmp_path / rel).read_bytes() != (ROOT / rel).read_bytes()]
    assert not stale, f"regenerate with scripts/gen-protos: {stale}"
    checked_in = {p.relative_to(ROOT) for p in (ROOT / "shoal" / "protos").glob("*_pb2*")}
    assert checked_in == set(generated)
