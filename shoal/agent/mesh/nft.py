"""The nftables rules of the kernel data path: rendered here, applied by ``nft``.

Each agent owns one table, ``ip shoal-<node ID>``, so that several agents on
one host (as in tests) never touch each other's rules, and nothing of anyone
else's is ever changed::

    table ip shoal-<node> {
      map ports { type inet_proto . inet_service : verdict; }
      chain prerouting { type nat hook prerouting priority dstnat - 10; ...
        ip daddr <node address> meta l4proto . th dport vmap @ports }
      chain output { type nat hook output priority -110; ...
        ip daddr <node address> meta l4proto . th dport vmap @ports }
      chain p_tcp_8080 {
        meta l4proto tcp dnat ip to numgen inc mod 3 map {
          0 : 127.0.0.11 . 20001,        <- a backend on this host
          1 : 127.0.0.12 . 20417,
          2 : <node address> . 8080 } }  <- the relay (a backend elsewhere)
    }

Prerouting catches clients from other hosts, output clients on this host
(locally generated packets never pass prerouting). Only new connections are
DNATed: conntrack keeps every established one on its backend, so rewriting a
port's chain never breaks a connection. A port's chain is rewritten whole in
one transaction (``flush`` then the new rule), and the map's element is
added or deleted with it, so each change is atomic.
"""

from __future__ import annotations

import asyncio
import re
import shutil
import subprocess
from collections.abc import Sequence

from shoal.agent.mesh.table import PortKey
from shoal.defaults import MESH

_NAME = re.compile(r"[a-zA-Z][a-zA-Z0-9_-]{0,60}")

Target = tuple[str, int]


class NftError(Exception):
    """nft refused the rules, or is missing."""


def table_name(node_id: str) -> str:
    name = f"shoal-{node_id}"
    if not _NAME.fullmatch(name):
        raise ValueError(f"node ID {node_id!r} does not make an nft table name")
    return name


def chain_name(key: PortKey) -> str:
    return f"p_{key[0]}_{key[1]}"


def create_table(table: str, addr: str, bridge: str = "") -> str:
    """The script that (re)creates the table empty: any leftover of an
    earlier agent that did not clean up (kill -9) goes first. Discovery's
    addresses (``vips``, ``taskaddrs``) are routed for the host's own
    processes (output) and, given the docker runtime's bridge, for its
    containers (prerouting, that interface only)."""
    match = f"ip daddr {addr} meta l4proto . th dport vmap @ports"
    vips = "ip daddr . meta l4proto . th dport vmap @vips"
    tasks = "meta l4proto { tcp, udp } dnat ip to ip daddr . meta l4proto . th dport map @taskaddrs"
    from_bridge = f'iifname "{bridge}" ' if bridge else ""
    containers = f"    {from_bridge}{vips}\n    {from_bridge}{tasks}\n" if bridge else ""
    # What is still addressed to a service or task address after the nat
    # chains ran had no route (a service with no task running yet): refuse
    # it here rather than let it leave the host for whatever answers to
    # that address on the real network.
    unrouted = f"ip daddr {{ {MESH.vip_net}, {MESH.task_addr_net} }}"
    refuse = f"    {unrouted} meta l4proto tcp reject with tcp reset\n    {unrouted} reject\n"
    forward = (
        "  chain unrouted_forward {\n"
        "    type filter hook forward priority filter; policy accept;\n"
        f'    iifname "{bridge}" {unrouted} meta l4proto tcp reject with tcp reset\n'
        f'    iifname "{bridge}" {unrouted} reject\n'
        "  }\n"
        if bridge
        else ""
    )
    return (
        f"table ip {table}\n"
        f"delete table ip {table}\n"
        f"table ip {table} {{\n"
        "  map ports { type inet_proto . inet_service : verdict; }\n"
        "  map vips { type ipv4_addr . inet_proto . inet_service : verdict; }\n"
        "  map taskaddrs { type ipv4_addr . inet_proto . inet_service : ipv4_addr . inet_service; }\n"
        "  chain prerouting {\n"
        "    type nat hook prerouting priority dstnat - 10; policy accept;\n"
        f"    {match}\n"
        f"{containers}"
        "  }\n"
        "  chain output {\n"
        "    type nat hook output priority -110; policy accept;\n"
        f"    {match}\n"
        f"    {vips}\n"
        f"    {tasks}\n"
        "  }\n"
        "  chain unrouted_output {\n"
        "    type filter hook output priority filter; policy accept;\n"
        f"{refuse}"
        "  }\n"
        f"{forward}"
        "}\n"
    )


VipKey = tuple[str, str, int]  # (address, protocol, port)


def vip_chain(key: VipKey) -> str:
    return f"v_{key[0].replace('.', '_')}_{key[1]}_{key[2]}"


def set_vip(table: str, key: VipKey, targets: Sequence[Target], existed: bool) -> str:
    """Send new connections to a virtual address's port over `targets`."""
    chain = vip_chain(key)
    entries = ", ".join(f"{i} : {addr} . {port}" for i, (addr, port) in enumerate(targets))
    lines = [
        f"add chain ip {table} {chain}",
        f"flush chain ip {table} {chain}",
        f"add rule ip {table} {chain} meta l4proto {key[1]} "
        f"dnat ip to numgen inc mod {len(targets)} map {{ {entries} }}",
    ]
    if not existed:
        lines.append(f"add element ip {table} vips {{ {key[0]} . {key[1]} . {key[2]} : jump {chain} }}")
    return "\n".join(lines) + "\n"


def drop_vip(table: str, key: VipKey) -> str:
    return (
        f"delete element ip {table} vips {{ {key[0]} . {key[1]} . {key[2]} }}\n"
        f"delete chain ip {table} {vip_chain(key)}\n"
    )


def set_task_route(table: str, key: VipKey, target: Target, existed: bool) -> str:
    element = f"{key[0]} . {key[1]} . {key[2]}"
    drop = f"delete element ip {table} taskaddrs {{ {element} }}\n" if existed else ""
    return drop + f"add element ip {table} taskaddrs {{ {element} : {target[0]} . {target[1]} }}\n"


def drop_task_route(table: str, key: VipKey) -> str:
    return f"delete element ip {table} taskaddrs {{ {key[0]} . {key[1]} . {key[2]} }}\n"


def set_port(table: str, key: PortKey, targets: Sequence[Target], existed: bool) -> str:
    """Send new connections to `key` over `targets`, in turn."""
    chain = chain_name(key)
    entries = ", ".join(f"{i} : {addr} . {port}" for i, (addr, port) in enumerate(targets))
    lines = [f"add chain ip {table} {chain}", f"flush chain ip {table} {chain}"]
    lines.append(
        f"add rule ip {table} {chain} meta l4proto {key[0]} "
        f"dnat ip to numgen inc mod {len(targets)} map {{ {entries} }}"
    )
    if not existed:
        lines.append(f"add element ip {table} ports {{ {key[0]} . {key[1]} : jump {chain} }}")
    return "\n".join(lines) + "\n"


def drop_port(table: str, key: PortKey) -> str:
    return (
        f"delete element ip {table} ports {{ {key[0]} . {key[1]} }}\n"
        f"delete chain ip {table} {chain_name(key)}\n"
    )


def delete_table(table: str) -> str:
    return f"table ip {table}\ndelete table ip {table}\n"


def _binary() -> str | None:
    return shutil.which("nft") or shutil.which("nft", path="/usr/sbin:/sbin")


def tables() -> set[str]:
    """The names of the ip tables on this host (empty without nft)."""
    binary = _binary()
    if binary is None:
        return set()
    res = subprocess.run([binary, "list", "tables", "ip"], capture_output=True, text=True, check=False)
    return {line.split()[-1] for line in res.stdout.splitlines() if line.startswith("table ip ")}


def remove_leftover(node_id: str) -> bool:
    """Delete the table of an agent that could not (killed); whether there
    was one."""
    table = table_name(node_id)
    binary = _binary()
    if binary is None or table not in tables():
        return False
    subprocess.run([binary, "delete", "table", "ip", table], capture_output=True, check=False)
    return True


async def run(script: str) -> None:
    """Apply a script in one transaction (all or nothing); NftError with
    nft's words when it refuses."""
    binary = _binary()
    if binary is None:
        raise NftError("nft is not installed (Debian: apt-get install nftables)")
    proc = await asyncio.create_subprocess_exec(
        binary,
        "-f",
        "-",
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    _, err = await proc.communicate(script.encode())
    if proc.returncode != 0:
        first = err.decode(errors="replace").strip().splitlines()
        raise NftError(first[0] if first else f"nft exited with status {proc.returncode}")
