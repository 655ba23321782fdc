"""Go-style durations and sizes, as CLI.md specifies."""

from __future__ import annotations

import pytest

from shoal.durations import format_duration, parse_duration, parse_size


@pytest.mark.parametrize(
    ("text", "ns"),
    [
        ("300ms", 300_000_000),
        ("5s", 5_000_000_000),
        ("1m30s", 90_000_000_000),
        ("2h", 7_200_000_000_000),
        ("0", 0),
        ("1.5s", 1_500_000_000),
    ],
)
def test_durations_parse_like_go(text: str, ns: int) -> None:
    assert parse_duration(text) == ns
    assert parse_duration(format_duration(ns)) == ns


@pytest.mark.parametrize("text", ["5x", "", "abc", "1 m", "-5s", "5"])
def test_malformed_durations_are_refused_with_examples(text: str) -> None:
    with pytest.raises(ValueError, match=r"expected e\.g\. 300ms"):
        parse_duration(text)


@pytest.mark.parametrize(
    ("text", "size"),
    [
        ("512k", 512 << 10),
        ("256m", 256 << 20),
        ("1g", 1 << 30),
        ("512KiB", 512 << 10),
        ("256MiB", 256 << 20),
        ("1GiB", 1 << 30),
        ("100", 100),
    ],
)
def test_sizes_take_binary_units(text: str, size: int) -> None:
    assert parse_size(text) == size


@pytest.mark.parametrize("text", ["12q", "abc", "1iB", "-1m"])
def test_malformed_sizes_are_refused(text: str) -> None:
    with pytest.raises(ValueError, match="invalid size"):
        parse_size(text)
