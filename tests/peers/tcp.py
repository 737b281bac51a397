"""A byte pump between two sockets, shared by the test peers that relay TCP (ec2_guest, flaky_tcp)."""

from __future__ import annotations

import contextlib
import socket


def pump(src: socket.socket, dst: socket.socket) -> None:
    """Copy ``src`` to ``dst`` until either side closes; then shut both down."""
    try:
        while data := src.recv(65536):
            dst.sendall(data)
    except OSError:
        pass
    finally:
        for s in (src, dst):
            with contextlib.suppress(OSError):
                s.shutdown(socket.SHUT_RDWR)
