"""TLS bundles on disk: a folder with ca.pem, cert.pem and key.pem.

Admin bundles, an agent's node identity and a manager's server certificate
all use this layout (the Docker CLI reads the same names from
DOCKER_CERT_PATH). Each file is replaced atomically (written beside, then
renamed), the key first and readable only by its owner, so a reader sees an
old or a new file, never half of one.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

CA, CERT, KEY = "ca.pem", "cert.pem", "key.pem"


@dataclass(frozen=True)
class TLSFiles:
    ca_pem: bytes
    cert_pem: bytes
    key_pem: bytes


def _replace(path: Path, data: bytes, mode: int) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    try:
        os.write(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)


def write_tls_dir(directory: Path, files: TLSFiles) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    os.chmod(directory, 0o700)
    _replace(directory / KEY, files.key_pem, 0o600)
    _replace(directory / CERT, files.cert_pem, 0o644)
    _replace(directory / CA, files.ca_pem, 0o644)


def read_tls_dir(directory: Path) -> TLSFiles | None:
    """The bundle in directory, or None when a file is missing."""
    try:
        return TLSFiles(
            (directory / CA).read_bytes(), (directory / CERT).read_bytes(), (directory / KEY).read_bytes()
        )
    except FileNotFoundError:
        return None
