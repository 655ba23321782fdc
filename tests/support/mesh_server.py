"""A task for mesh tests (process runtime): who answered, and whom it saw.

Run as ``python3 mesh_server.py`` by a process task. It listens on
``$SHOAL_TASK_ADDR:$PORT`` (TCP, and UDP on ``$SHOAL_PORT_<T>_UDP`` when
given) and answers each request with one line::

    slot=<SHOAL_TASK_SLOT> peer=<the address it saw> proxy=<client from a PROXY header, or ->

A TCP client sends one line (any text) and reads the answer; a PROXY
protocol header (v1 text or v2 binary) before it is read and reported.
Standalone on purpose: a process task gets no PYTHONPATH.

``python3 mesh_server.py ask NAME PORT`` is a client task instead: it asks
the node's resolver (``$SHOAL_DNS``, ADDR:PORT) for NAME, sends a request to
the first address and PORT, and writes the answer to ``answer.txt`` in its
working directory (trying again every half second until it works).
"""

from __future__ import annotations

import ipaddress
import os
import socket
import struct
import sys
import threading

V2_SIGNATURE = b"\r\n\r\n\x00\r\nQUIT\n"


def read_proxy(conn: socket.socket, buf: bytes) -> tuple[str, bytes]:
    """The client address a PROXY header names ("-" without one), and the
    bytes after it."""
    while len(buf) < 16 and not buf.endswith(b"\n"):
        more = conn.recv(4096)
        if not more:
            break
        buf += more
    if buf.startswith(b"PROXY "):
        while b"\r\n" not in buf:
            buf += conn.recv(4096)
        line, _, rest = buf.partition(b"\r\n")
        parts = line.decode().split()
        return (f"{parts[2]}:{parts[4]}" if len(parts) >= 6 else parts[1]), rest
    if buf.startswith(V2_SIGNATURE):
        while len(buf) < 16:
            buf += conn.recv(4096)
        length = struct.unpack("!H", buf[14:16])[0]
        while len(buf) < 16 + length:
            buf += conn.recv(4096)
        body, rest = buf[16 : 16 + length], buf[16 + length :]
        if buf[13] >> 4 == 1 and len(body) >= 12:  # AF_INET
            src = ipaddress.IPv4Address(body[0:4])
            port = struct.unpack("!H", body[8:10])[0]
            return f"{src}:{port}", rest
        return "v2-local", rest
    return "-", buf


def serve_tcp(addr: str, port: int, slot: str) -> None:
    srv = socket.socket()
    srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    srv.bind((addr, port))
    srv.listen(128)
    while True:
        conn, peer = srv.accept()
        threading.Thread(target=answer, args=(conn, peer, slot), daemon=True).start()


def answer(conn: socket.socket, peer: tuple[str, int], slot: str) -> None:
    with conn:
        try:
            proxy, rest = read_proxy(conn, b"")
            while b"\n" not in rest:
                more = conn.recv(4096)
                if not more:
                    break
                rest += more
            conn.sendall(f"slot={slot} peer={peer[0]}:{peer[1]} proxy={proxy}\n".encode())
        except OSError:
            pass


def serve_udp(addr: str, port: int, slot: str) -> None:
    srv = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    srv.bind((addr, port))
    while True:
        _, peer = srv.recvfrom(2048)
        srv.sendto(f"slot={slot} peer={peer[0]}:{peer[1]} proxy=-\n".encode(), peer)


def resolve(name: str, server: str) -> str:
    """NAME's first A record, asked of server (ADDR:PORT) over UDP."""
    addr, _, port = server.rpartition(":")
    query = struct.pack("!HHHHHH", 0x5EED, 0x0100, 1, 0, 0, 0)
    query += b"".join(bytes([len(p)]) + p.encode() for p in name.split(".")) + b"\x00"
    query += struct.pack("!HH", 1, 1)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.settimeout(2)
        s.sendto(query, (addr, int(port)))
        data, _ = s.recvfrom(4096)
    count = struct.unpack("!H", data[6:8])[0]
    if not count:
        raise OSError(f"{name}: no address")
    return str(ipaddress.IPv4Address(data[-4:]))


def ask(name: str, port: int) -> None:
    while True:
        try:
            addr = resolve(name, os.environ["SHOAL_DNS"])
            with socket.create_connection((addr, port), timeout=3) as s:
                s.sendall(b"hello\n")
                answer = s.makefile().readline()
            if answer:
                with open("answer.txt", "w") as f:
                    f.write(f"{name}={addr} {answer}")
                threading.Event().wait()
        except OSError:
            pass
        threading.Event().wait(0.5)


def main() -> None:
    if len(sys.argv) == 4 and sys.argv[1] == "ask":
        ask(sys.argv[2], int(sys.argv[3]))
        return
    addr = os.environ.get("SHOAL_TASK_ADDR", "127.0.0.1")
    slot = os.environ.get("SHOAL_TASK_SLOT", "?")
    threads = []
    for name, value in os.environ.items():
        if name.startswith("SHOAL_PORT_") and name.endswith("_UDP"):
            threads.append(threading.Thread(target=serve_udp, args=(addr, int(value), slot), daemon=True))
        elif name.startswith("SHOAL_PORT_"):
            threads.append(threading.Thread(target=serve_tcp, args=(addr, int(value), slot), daemon=True))
    for t in threads:
        t.start()
    for t in threads:
        t.join()


if __name__ == "__main__":
    main()
