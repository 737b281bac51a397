"""A TCP front for a real sshd that misbehaves the way a booting guest does, then hands over.

``script`` says what the first connections get, one entry each: ``close`` (accepted and closed at
once: sshd not started yet behind a port forward), ``garbage`` (a non-SSH banner, then closed), or
``stall`` (accepted, never answered: the banner times out). Every later connection is forwarded to
the real sshd. ``refusing=True`` instead never listens at all (connections are refused) until
:meth:`listen` is called. ``connections`` counts what was accepted.
"""

from __future__ import annotations

import contextlib
import socket
import threading

from .tcp import pump


class FlakyFront:
    def __init__(self, target_port: int, script: list[str] | None = None, *, refusing: bool = False) -> None:
        self.target_port = target_port
        self.script = list(script or [])
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", 0))  # bound but not listening: connections are refused
        self.port = self.sock.getsockname()[1]
        self.connections = 0
        self.behaviours: list[str] = []
        self._open: list[socket.socket] = []
        self._listening = False
        if not refusing:
            self.listen()

    def listen(self) -> None:
        if not self._listening:
            self._listening = True
            self.sock.listen(16)
            threading.Thread(target=self._accept, daemon=True, name="flaky-front").start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.sock.accept()
            except OSError:
                return
            behaviour = self.script[self.connections] if self.connections < len(self.script) else "forward"
            self.connections += 1
            self.behaviours.append(behaviour)
            self._open.append(client)
            if behaviour == "close":
                client.close()
            elif behaviour == "garbage":
                with contextlib.suppress(OSError):
                    client.sendall(b"HTTP/1.1 400 Bad Request\r\n\r\n")
                client.close()
            elif behaviour == "stall":
                pass  # keep it open, say nothing: the client's banner timeout fires
            else:
                upstream = socket.create_connection(("127.0.0.1", self.target_port), timeout=10)
                upstream.settimeout(None)
                self._open.append(upstream)
                for a, b in ((client, upstream), (upstream, client)):
                    threading.Thread(target=self._pump, args=(a, b), daemon=True).start()

    _pump = staticmethod(pump)

    def close(self) -> None:
        for s in self._open + [self.sock]:
            with contextlib.suppress(OSError):
                s.close()

    def __enter__(self) -> "FlakyFront":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
