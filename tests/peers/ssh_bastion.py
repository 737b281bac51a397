"""A real SSH jump host on 127.0.0.1 (paramiko's server side): one host key, one authorized client
key, and nothing but ``direct-tcpip`` channels to 127.0.0.1 (what `ssh -J` and the builder's
bastion setting use). It records where each channel went."""

from __future__ import annotations

import base64
import contextlib
import io
import socket
import threading

import paramiko

from goldsmith_provider.builders.common.keys import KeyPair, generate_ed25519


class _Server(paramiko.ServerInterface):
    def __init__(self, user: str, client_key) -> None:
        self.user, self.client_key = user, client_key
        self.destinations: list[tuple[str, int]] = []

    def get_allowed_auths(self, username):
        return "publickey"

    def check_auth_publickey(self, username, key):
        ok = username == self.user and key.get_base64() == self.client_key.get_base64()
        return paramiko.AUTH_SUCCESSFUL if ok else paramiko.AUTH_FAILED

    def check_channel_request(self, kind, chanid):
        return paramiko.OPEN_FAILED_ADMINISTRATIVELY_PROHIBITED

    def check_channel_direct_tcpip_request(self, chanid, origin, destination):
        if destination[0] not in ("127.0.0.1", "localhost"):
            return paramiko.OPEN_FAILED_ADMINISTRATIVELY_PROHIBITED
        self.destinations.append(destination)
        return paramiko.OPEN_SUCCEEDED


class SshBastion:
    def __init__(self, user: str = "jump") -> None:
        self.user = user
        self.host_key_pair: KeyPair = generate_ed25519("bastion-host")
        self.client_key: KeyPair = generate_ed25519("bastion-client")
        self._host_key = paramiko.Ed25519Key.from_private_key(io.StringIO(self.host_key_pair.private_openssh))
        self._client_pub = paramiko.Ed25519Key(data=base64.b64decode(self.client_key.public_openssh.split()[1]))
        self.listener = socket.socket()
        self.listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.listener.bind(("127.0.0.1", 0))
        self.listener.listen(8)
        self.port = self.listener.getsockname()[1]
        self.channels: list[tuple[str, int]] = []
        self._transports: list = []
        threading.Thread(target=self._accept, daemon=True, name="bastion").start()

    @property
    def host(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def host_key(self) -> str:
        return " ".join(self.host_key_pair.public_openssh.split()[:2])

    def _accept(self) -> None:
        while True:
            try:
                sock, _ = self.listener.accept()
            except OSError:
                return
            transport = paramiko.Transport(sock)
            transport.add_server_key(self._host_key)
            server = _Server(self.user, self._client_pub)
            try:
                transport.start_server(server=server)
            except (paramiko.SSHException, EOFError, OSError):
                transport.close()
                continue
            self._transports.append(transport)
            threading.Thread(target=self._channels, args=(transport, server), daemon=True).start()

    def _channels(self, transport, server) -> None:
        while transport.is_active():
            channel = transport.accept(timeout=1)
            if channel is None:
                continue
            destination = server.destinations[-1]
            self.channels.append(destination)
            try:
                upstream = socket.create_connection(destination, timeout=10)
            except OSError:
                channel.close()
                continue
            upstream.settimeout(None)
            threading.Thread(target=self._pump, args=(channel, upstream), daemon=True).start()
            threading.Thread(target=self._pump, args=(upstream, channel), daemon=True).start()

    @staticmethod
    def _pump(src, dst) -> None:
        try:
            while True:
                data = src.recv(65536)
                if not data:
                    break
                dst.sendall(data)
        except (OSError, EOFError):
            pass
        finally:
            for s in (src, dst):
                with contextlib.suppress(Exception):
                    s.close()

    def close(self) -> None:
        self.listener.close()
        for t in self._transports:
            t.close()
