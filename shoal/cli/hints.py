"""What ``shoal up`` suggests typing next: commands that work on the runtime
it picked.

The process runtime runs COMMAND on the host whatever IMAGE says, so any name
does (``app:1``). The docker runtime needs an image it can run without a
registry: the smallest one already on this engine among those below (each
has ``sleep``); with none, how to get one.
"""

from __future__ import annotations

from typing import Any

# Images with a shell and `sleep`, small first as a rule; the smallest
# present wins. shoal-test is the busybox image scripts/build-test-images makes.
CANDIDATES = ("shoal-test", "busybox", "alpine", "debian", "ubuntu")
NO_IMAGE = [
    "No small image is on this Docker engine; get one first, e.g.:",
    "  docker pull busybox          (needs a registry)",
    "  scripts/build-test-images    (in a shoal checkout: builds shoal-test:1 offline)",
]


def smallest_local_image(client: Any = None) -> str | None:
    """The smallest tagged image here whose repository is a candidate."""
    try:
        import docker

        engine = client or docker.from_env(timeout=5)
        images = engine.images.list()
    except Exception:
        return None  # no engine, or it does not answer: no hint to give
    best: tuple[int, str] | None = None
    for image in images:
        for tag in image.tags:
            repository = tag.rsplit(":", 1)[0]
            if repository.rsplit("/", 1)[-1] not in CANDIDATES:
                continue
            size = int(image.attrs.get("Size") or 0)
            if best is None or (size, tag) < best:
                best = (size, tag)
    return best[1] if best else None


def try_hints(runtime: str, image: str | None = None, prefix: str = "") -> list[str]:
    """The lines after "Try:" (image: for docker, the one to use; found
    when not given; prefix: global options the commands need, such as
    ``--context NAME`` for a cluster whose context is not the current one)."""
    shoal = f"shoal {prefix}"
    if runtime == "docker":
        image = image or smallest_local_image()
        if image is None:
            return [f"  {shoal}node ls", *("  " + line for line in NO_IMAGE)]
    else:
        image = "app:1"
    return [
        f"  {shoal}node ls",
        f"  {shoal}service create --name web --replicas 3 {image} sleep 3600",
        f"  {shoal}service ps web",
        f"  {shoal}service scale web=6",
        f"  {shoal}service rm web",
    ]
