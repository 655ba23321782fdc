"""The engine's health verdict on a container, read as a ``HealthReport``.

The engine runs a container's health check itself (``options`` hands it the
spec's ``Healthcheck``) and keeps the verdict and the last few results in
``State.Health`` of an inspect. ``health_report`` reads them: a pure function
of the inspect's attributes, so the controller's health() is one inspect.
"""

from __future__ import annotations

from typing import Any

from shoal.agent.runtime.base import Health, HealthReport

_HEALTH = {"starting": Health.STARTING, "healthy": Health.HEALTHY, "unhealthy": Health.UNHEALTHY}


def health_report(attrs: dict[str, Any] | None) -> HealthReport:
    """The verdict of State.Health (NONE without a health check, or without
    a container) and the last failed check of its log."""
    health = attrs["State"].get("Health") if attrs else None
    if not health:
        return HealthReport(Health.NONE)
    return HealthReport(_HEALTH.get(str(health.get("Status")), Health.NONE), health_message(health))


def health_message(health: dict[str, Any]) -> str:
    """The last failed check of State.Health.Log, as the process backend
    words it: "health check exit code 1: <output>"."""
    for entry in reversed(health.get("Log") or []):
        code = int(entry.get("ExitCode", 0))
        if code == 0:
            continue
        output = str(entry.get("Output", "")).strip()
        # -1: the engine could not run the check or it timed out; the output
        # then says which.
        how = "health check failed" if code < 0 else f"health check exit code {code}"
        return f"{how}: {output}" if output else how
    return ""
