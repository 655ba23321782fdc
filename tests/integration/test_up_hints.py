"""The commands `shoal up` suggests work on the runtime it picked: with the
docker runtime they name the smallest suitable image the engine already has
(here the real engine, which has at least the test image shoal-test:1)."""

from __future__ import annotations

from typing import Any

import pytest

from shoal.cli.hints import CANDIDATES, smallest_local_image, try_hints

pytestmark = pytest.mark.docker


def test_docker_hints_use_the_smallest_suitable_image_the_engine_has(engine: Any) -> None:
    suitable = {
        tag: int(image.attrs["Size"])
        for image in engine.images.list()
        for tag in image.tags
        if tag.rsplit(":", 1)[0].rsplit("/", 1)[-1] in CANDIDATES
    }
    assert "shoal-test:1" in suitable
    chosen = smallest_local_image(engine)
    assert chosen in suitable
    assert suitable[chosen] == min(suitable.values())
    hints = try_hints("docker", prefix="--context lab ")
    assert hints[1].startswith("  shoal --context lab service create --name web --replicas 3 ")
    assert hints[1].split()[-3:] == [smallest_local_image(), "sleep", "3600"]


def test_process_hints_need_no_image() -> None:
    assert try_hints("process")[1] == "  shoal service create --name web --replicas 3 app:1 sleep 3600"
