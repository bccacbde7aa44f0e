"""A TCP proxy on 127.0.0.1 port 0 in front of a real service (PostgreSQL, Redis) that a test
switches between faults: ``pass`` (forward), ``refuse`` (nothing listens: connection refused),
``drop`` (every connection is reset, new ones too) and ``hang`` (connections are accepted and
bytes are neither forwarded nor answered: a server that is silent, not gone).

Threads, not asyncio, so that it serves synchronous drivers called from worker threads and
from other event loops alike. A connection held in ``hang`` resumes forwarding when the mode
goes back to ``pass`` (a hung statement then completes late, as it would in production).
``latency_s`` delays every message from the client to the service (a slow database).
"""

from __future__ import annotations

import contextlib
import select
import socket
import struct
import threading
from typing import Literal

Mode = Literal["pass", "refuse", "drop", "hang"]


class TcpProxy:
    def __init__(self, target_host: str, target_port: int) -> None:
        self.target = (target_host, target_port)
        self.mode: Mode = "pass"
        self.latency_s = 0.0  # added before each forwarded client -> service message
        self._lock = threading.Lock()
        self._conns: list[socket.socket] = []
        self._listener: socket.socket | None = None
        self._stopped = threading.Event()
        self.port = 0
        self._listen()

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def _listen(self) -> None:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1", self.port))
        sock.listen(64)
        self.port = sock.getsockname()[1]
        self._listener = sock
        threading.Thread(target=self._accept, args=(sock,), daemon=True).start()

    def set(self, mode: Mode) -> None:
        """Switch fault; ``refuse`` and ``drop`` also reset every open connection."""
        with self._lock:
            self.mode = mode
            if mode in ("refuse", "drop"):
                for conn in self._conns:
                    _reset(conn)
                self._conns.clear()
            if mode == "refuse" and self._listener is not None:
                # shutdown wakes the thread blocked in accept(); close alone would not, and
                # the port would go on listening.
                with contextlib.suppress(OSError):
                    self._listener.shutdown(socket.SHUT_RDWR)
                self._listener.close()
                self._listener = None
            elif mode != "refuse" and self._listener is None:
                self._listen()

    def close(self) -> None:
        self._stopped.set()
        self.set("refuse")

    def _accept(self, listener: socket.socket) -> None:
        while not self._stopped.is_set():
            try:
                client, _ = listener.accept()
            except OSError:
                return  # closed: refusing now
            if self.mode == "drop":
                _reset(client)
                continue
            try:
                upstream = socket.create_connection(self.target, timeout=5)
            except OSError:
                _reset(client)
                continue
            with self._lock:
                self._conns += [client, upstream]
            for a, b, slow in ((client, upstream, True), (upstream, client, False)):
                threading.Thread(target=self._pump, args=(a, b, slow), daemon=True).start()

    def _pump(self, src: socket.socket, dst: socket.socket, slow: bool = False) -> None:
        try:
            while not self._stopped.is_set():
                if self.mode == "hang":
                    self._stopped.wait(0.05)
                    continue
                ready, _, _ = select.select([src], [], [], 0.05)
                if not ready or self.mode == "hang":
                    continue
                data = src.recv(65536)
                if not data:
                    break
                if slow and self.latency_s:
                    self._stopped.wait(self.latency_s)
                dst.sendall(data)
        except (OSError, ValueError):  # reset or closed by ``set``
            pass
        finally:
            for s in (src, dst):
                with contextlib.suppress(OSError):
                    s.shutdown(socket.SHUT_RDWR)


def _reset(sock: socket.socket) -> None:
    """Close with RST (linger 0), as a crashed server or a dropped route looks."""
    with contextlib.suppress(OSError):
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    with contextlib.suppress(OSError):
        sock.close()
