"""Whatever a Compose file holds, loading it either succeeds or fails with
one StackError: never another exception (which the CLI would show as an
unexpected failure). Hypothesis writes services from the keys shoal reads,
with values of every YAML type."""

from __future__ import annotations

import contextlib
import json
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from shoal.stack import StackError, load_stack
from shoal.stack.convert import HANDLED

KEYS = sorted(HANDLED | {"build", "networks", "x-ext"})
DEPLOY_KEYS = [
    "mode", "replicas", "labels", "placement", "resources", "restart_policy",
    "update_config", "rollback_config", "endpoint_mode",
]  # fmt: skip
NESTED_KEYS = [
    "constraints", "preferences", "max_replicas_per_node", "limits", "reservations", "cpus", "memory",
    "condition", "delay", "max_attempts", "window", "parallelism", "failure_action", "monitor",
    "max_failure_ratio", "order", "test", "interval", "timeout", "retries", "start_period", "disable",
    "source", "target", "uid", "gid", "mode", "published", "protocol", "type", "read_only", "spread",
]  # fmt: skip

scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-3, 70000),
    st.floats(allow_nan=False, allow_infinity=False, width=32),
    st.sampled_from(
        ["", "app:1", "1s", "0.5", "512M", "80:80", "a=b", "any", "x", "node.role==worker", "/tmp"]
    ),
    st.text(st.characters(blacklist_categories=("Cs",)), max_size=8),
)
values = st.recursive(
    scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=3),
        st.dictionaries(st.sampled_from(NESTED_KEYS), inner, max_size=3),
    ),
    max_leaves=8,
)
services = st.dictionaries(
    st.sampled_from(KEYS),
    st.one_of(values, st.fixed_dictionaries({}, optional={k: values for k in DEPLOY_KEYS})),
    max_size=6,
)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(body=services, image=st.booleans())
def test_any_service_loads_or_fails_with_a_stack_error(
    tmp_path: Path, body: dict[str, Any], image: bool
) -> None:
    if image:
        body.setdefault("image", "app:1")
    # JSON is YAML: the file holds exactly these values.
    path = tmp_path / "fuzz.yml"
    path.write_text(json.dumps({"services": {"web": body}, "secrets": {"s": {"file": "./missing"}}}))
    with contextlib.suppress(StackError):
        load_stack([str(path)], "fuzz", {})
