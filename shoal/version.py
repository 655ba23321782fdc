"""The version of shoal that runs: the installed package's, as pip knows it."""

from __future__ import annotations

from importlib import metadata


def shoal_version() -> str:
    try:
        return metadata.version("shoal")
    except metadata.PackageNotFoundError:
        return "unknown (not installed)"
