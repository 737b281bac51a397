"""A real OpenSSH server on 127.0.0.1 for communicator tests (runs as the current user, root here)."""

from __future__ import annotations

import os
import socket
import subprocess
import tempfile
import time
from pathlib import Path

from goldsmith_provider.builders.common.keys import generate_ed25519


class LocalSshd:
    def __init__(self) -> None:
        self.dir = Path(tempfile.mkdtemp(prefix="goldsmith-sshd-"))
        self.host = generate_ed25519("test-host")
        self.client = generate_ed25519("goldsmith-build-test")
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        self.proc: subprocess.Popen | None = None

    def __enter__(self) -> "LocalSshd":
        d = self.dir
        (d / "host_key").write_text(self.host.private_openssh)
        (d / "host_key").chmod(0o600)
        (d / "authorized_keys").write_text(self.client.public_openssh + "\n")
        (d / "authorized_keys").chmod(0o600)
        (d / "sshd_config").write_text(
            f"Port {self.port}\nListenAddress 127.0.0.1\nHostKey {d}/host_key\nAuthorizedKeysFile {d}/authorized_keys\n"
            f"PidFile {d}/sshd.pid\nPasswordAuthentication no\nKbdInteractiveAuthentication no\nUsePAM no\n"
            "PermitRootLogin prohibit-password\nStrictModes no\nSubsystem sftp internal-sftp\nLogLevel ERROR\n")
        Path("/run/sshd").mkdir(exist_ok=True)
        self.proc = subprocess.Popen(["/usr/sbin/sshd", "-D", "-e", "-f", str(d / "sshd_config")],
                                     stdout=subprocess.DEVNULL, stderr=open(d / "sshd.log", "wb"))
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.5).close()
                return self
            except OSError:
                time.sleep(0.1)
        raise RuntimeError("sshd did not start: " + (d / "sshd.log").read_text())

    def __exit__(self, *exc) -> None:
        if self.proc:
            self.proc.terminate()
            self.proc.wait(10)
        subprocess.run(["rm", "-rf", str(self.dir)])

    @property
    def user(self) -> str:
        import pwd

        return pwd.getpwuid(os.getuid()).pw_name
