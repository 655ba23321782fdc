"""The task behind tests/bench/mesh.py: a small server that costs little.

Run by a process task (standalone: a task gets no PYTHONPATH). It listens on
``$SHOAL_TASK_ADDR:$PORT``; each connection starts with one byte:

- ``S`` (sink): read everything until EOF, then answer the byte count as a
  line (the client times a large upload);
- ``E`` (echo): read one line, answer it, close (a small request).
"""

from __future__ import annotations

import os
import socket
import threading

BUFFER = 1 << 20


def handle(conn: socket.socket) -> None:
    with conn:
        kind = conn.recv(1)
        if kind == b"S":
            buf = bytearray(BUFFER)
            total = 0
            while n := conn.recv_into(buf):
                total += n
            conn.sendall(f"{total}\n".encode())
        elif kind == b"E":
            data = b""
            while not data.endswith(b"\n"):
                more = conn.recv(4096)
                if not more:
                    return
                data += more
            conn.sendall(data)


def main() -> None:
    srv = socket.socket()
    srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    srv.bind((os.environ.get("SHOAL_TASK_ADDR", "127.0.0.1"), int(os.environ["PORT"])))
    srv.listen(1024)
    while True:
        conn, _ = srv.accept()
        conn.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
        threading.Thread(target=handle, args=(conn,), daemon=True).start()


if __name__ == "__main__":
    main()
