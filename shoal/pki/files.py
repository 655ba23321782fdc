"""TLS bundles on disk: a folder with ca.pem, cert.pem and key.pem.

Admin bundles, an agent's node identity and a manager's server certificate
all use this layout (the Docker CLI reads the same names from
DOCKER_CERT_PATH). Each file is replaced atomically (written beside, then
renamed, with fsyncs: ``shoal.fsutil``), the key first and readable only by
its owner, so a reader, or an agent starting after a power loss, sees an old
or a new file, never half of one.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from shoal.fsutil import write_atomically

CA, CERT, KEY = "ca.pem", "cert.pem", "key.pem"


@dataclass(frozen=True)
class TLSFiles:
    ca_pem: bytes
    cert_pem: bytes
    key_pem: bytes


def write_tls_dir(directory: Path, files: TLSFiles) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    os.chmod(directory, 0o700)
    write_atomically(directory / KEY, files.key_pem, 0o600)
    write_atomically(directory / CERT, files.cert_pem, 0o644)
    write_atomically(directory / CA, files.ca_pem, 0o644)


def read_tls_dir(directory: Path) -> TLSFiles | None:
    """The bundle in directory, or None when a file is missing."""
    try:
        return TLSFiles(
            (directory / CA).read_bytes(), (directory / CERT).read_bytes(), (directory / KEY).read_bytes()
        )
    except FileNotFoundError:
        return None


class BadBundle(ValueError):
    """A bundle file is there but unusable (empty, truncated, garbled)."""


def check_tls_files(directory: Path, files: TLSFiles) -> None:
    """BadBundle naming the first file that does not hold what it should."""
    from cryptography import x509
    from cryptography.hazmat.primitives import serialization

    for name, data, load in (
        (CA, files.ca_pem, x509.load_pem_x509_certificates),
        (CERT, files.cert_pem, x509.load_pem_x509_certificate),
        (KEY, files.key_pem, lambda d: serialization.load_pem_private_key(d, None)),
    ):
        try:
            load(data)
        except (ValueError, TypeError):
            what = "empty" if not data.strip() else "not a valid PEM file"
            raise BadBundle(f"{directory / name} is {what}") from None
