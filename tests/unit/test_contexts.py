"""Contexts: which cluster a command talks to, what it says when there is
none, and how ``shoal up`` names its own. Every test has its own config dir
and home (the user's ~/.shoal is never touched)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from shoal.cli.client import CLIError
from shoal.cli.contexts import Context, ContextStore, resolve_target
from shoal.cli.local import Naming, _context_name
from shoal.cli.uprecord import UpRecord, record_proc


@pytest.fixture(autouse=True)
def config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("SHOAL_CONFIG_DIR", str(tmp_path / "config"))
    for var in ("SHOAL_CONTEXT", "SHOAL_HOST", "SHOAL_TLS_DIR"):
        monkeypatch.delenv(var, raising=False)
    return tmp_path / "config"


def remote(name: str, host: str = "192.0.2.1:2377") -> Context:
    return Context(name, [host], f"/bundles/{name}")


def refused(host: str | None = None, tls: str | None = None, ctx: str | None = None) -> str:
    with pytest.raises(CLIError) as err:
        resolve_target(host, tls, ctx)
    return str(err.value)


def test_with_no_context_at_all_the_cli_says_how_to_get_a_cluster() -> None:
    assert refused() == "no cluster to talk to: start one with shoal up, or give --host and --tls-dir"


def test_flags_then_context_flag_then_shoal_context_then_the_current_one(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    store = ContextStore()
    for name in ("prod", "dev", "lab"):
        store.save(remote(name, f"{name}.example:2377"))
    store.use("prod")
    assert resolve_target(None, None).hosts == ["prod.example:2377"]
    monkeypatch.setenv("SHOAL_CONTEXT", "dev")
    assert resolve_target(None, None).hosts == ["dev.example:2377"]
    assert resolve_target(None, None, "lab").hosts == ["lab.example:2377"]
    both = resolve_target("10.0.0.1:2377", "/mine", "lab")
    assert (both.hosts, str(both.tls_dir)) == (["10.0.0.1:2377"], "/mine")
    half = resolve_target("10.0.0.1:2377", None, "lab")
    assert (half.hosts, str(half.tls_dir)) == (["10.0.0.1:2377"], "/bundles/lab")
    assert refused(ctx="nope") == 'context "nope" not found (shoal context ls lists them)'


def test_shoal_context_with_a_slash_is_a_context_file_as_before(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "ctx.json"
    path.write_text(json.dumps({"hosts": ["127.0.0.1:9"], "tls_dir": "/b"}))
    monkeypatch.setenv("SHOAL_CONTEXT", str(path))
    assert resolve_target(None, None).hosts == ["127.0.0.1:9"]
    monkeypatch.setenv("SHOAL_CONTEXT", str(tmp_path / "missing.json"))
    assert refused().startswith("no cluster to talk to")


def running_record(state: Path) -> UpRecord:
    """A record of one live process of this test's (the pytest process itself)."""
    state.mkdir(parents=True, exist_ok=True)
    record = UpRecord([record_proc("manager", os.getpid(), [], state / "log")], manager="127.0.0.1:9")
    record.save(state)
    return record


def test_a_stopped_local_cluster_says_so_and_how_to_start_it(config: Path, tmp_path: Path) -> None:
    store = ContextStore()
    up = config / "up"
    store.save(Context("local", ["127.0.0.1:2377"], str(up / "manager/admin"), state_dir=str(up)))
    store.use("local")
    assert refused() == ('no cluster is running for context "local" (it was stopped); start it with shoal up')
    running_record(up)
    assert resolve_target(None, None).hosts == ["127.0.0.1:2377"]
    # A record whose processes are gone (a reboot): a PID that is not ours.
    (up / "up.json").write_text(json.dumps({"procs": [{"role": "manager", "pid": 1, "start_time": 1}]}))
    assert "(its processes have exited)" in refused()
    other = tmp_path / "elsewhere"
    store.save(Context("local-elsewhere", ["127.0.0.1:3"], "/b", state_dir=str(other)))
    assert refused(ctx="local-elsewhere").endswith(f"start it with shoal up --state-dir {other}")


def test_an_old_context_json_is_taken_in_once(config: Path) -> None:
    config.mkdir(parents=True)
    tls = config / "up" / "manager" / "admin"
    (config / "context.json").write_text(json.dumps({"hosts": ["127.0.0.1:2377"], "tls_dir": str(tls)}))
    store = ContextStore()
    assert store.current() == "local"
    local = store.get("local")
    assert local is not None and local.hosts == ["127.0.0.1:2377"] and local.state_dir == str(config / "up")
    store.remove("local")
    assert store.names() == [], "taken in once: removing the context does not bring it back"


def test_shoal_up_names_its_context_after_the_state_dir_and_never_takes_anothers(
    config: Path, tmp_path: Path
) -> None:
    store = ContextStore()
    assert _context_name((config / "up").absolute()) == "local"
    assert _context_name(tmp_path / "my cluster") == "local-my-cluster"
    first = tmp_path / "a" / "up2"
    second = tmp_path / "b" / "up2"
    Naming(store, first, None).save(["127.0.0.1:1"], first / "tls", first)
    assert store.current() == "local-up2"
    with pytest.raises(CLIError) as err:
        Naming(store, second, None)
    assert str(err.value).startswith(f'context "local-up2" belongs to the cluster in {first}')
    # Named on purpose it is fine; the running first one stays current.
    running_record(first)
    said = Naming(store, second, "mine").save(["127.0.0.1:2"], second / "tls", second)
    assert store.current() == "local-up2"
    assert 'the current context is still "local-up2"' in said
    # Its owner's state dir finds it again without a name.
    assert Naming(store, second, None).name == "mine"


def test_context_commands_list_switch_and_remove(config: Path, tmp_path: Path) -> None:
    bundle = tmp_path / "bundle"
    bundle.mkdir()
    for f in ("ca.pem", "cert.pem", "key.pem"):
        (bundle / f).write_text("x")
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])}

    def shoal(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "shoal", "context", *args],
            capture_output=True,
            text=True,
            env=env,
            timeout=60,
        )

    assert shoal("create", "prod", "--host", "192.0.2.1:2377", "--tls-dir", str(bundle)).returncode == 0
    assert shoal("create", "lab", "--host", "192.0.2.2:2377", "--tls-dir", str(bundle)).returncode == 0
    dup = shoal("create", "lab", "--host", "x:1", "--tls-dir", str(bundle))
    assert dup.returncode == 1 and dup.stderr.startswith('Error: context "lab" exists')
    bad = shoal("create", "no/slash", "--host", "x:1", "--tls-dir", str(bundle))
    assert bad.returncode == 1 and "context name" in bad.stderr
    assert shoal("use", "lab").stdout == "lab\n"
    listed = shoal("ls").stdout.splitlines()
    assert listed[0].split() == ["NAME", "DESCRIPTION", "MANAGERS", "STATE"]
    assert listed[1].split()[:2] == ["lab", "*"] and listed[2].split()[0] == "prod"
    (shown,) = json.loads(shoal("inspect").stdout)
    assert shown["name"] == "lab" and shown["current"] and shown["hosts"] == ["192.0.2.2:2377"]
    assert shoal("rm", "lab", "nope").returncode == 1
    assert shoal("ls", "-q").stdout.split() == ["prod"]
    assert ContextStore().current() is None, "removing the current context leaves none current"
