"""The SSH communicator against a real OpenSSH server: host-key verification, commands, uploads."""

import io
import os
import stat

import pytest

from goldsmith_provider.builders.common.keys import generate_ed25519
from goldsmith_provider.communicators.ssh import HostKeyMismatch, SshCommunicator, SshTarget
from goldsmith_provider.engine.errors import CommandError
from goldsmith_provider.engine.log import BuildLog, Masker
from peers.sshd import LocalSshd

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def sshd():
    with LocalSshd() as server:
        yield server


def comm_for(server, host_key=None):
    return SshCommunicator(SshTarget("127.0.0.1", server.port, server.user, server.client.private_openssh,
                                     host_key or server.host.public_openssh))


def test_an_unexpected_host_key_is_refused(sshd):
    impostor = generate_ed25519("impostor").public_openssh
    with pytest.raises(HostKeyMismatch):
        comm_for(sshd, impostor).connect()


def test_commands_env_secret_env_and_failures(sshd, tmp_path):
    console = io.StringIO()
    log = BuildLog("t", tmp_path / "log", masker=Masker(), console=console)
    comm = comm_for(sshd)
    comm.wait_ready(timeout=10, log=log)
    try:
        out = comm.run('echo "$A/$TOKEN"', log=log, env={"A": "plain"}, secret_env={"TOKEN": "tok-s3cret"})
        assert out.output == "plain/tok-s3cret"
        assert "tok-s3cret" not in console.getvalue() and "tok-s3cret" not in (tmp_path / "log").read_text()
        assert comm.run("ls /tmp/.goldsmith-env-* 2>/dev/null | wc -l", log=log).output == "0", "secret env file removed"
        with pytest.raises(CommandError) as info:
            comm.run("echo about to fail; exit 4", log=log)
        assert info.value.status == 4 and "about to fail" in str(info.value)
    finally:
        comm.close()


def test_upload_tree_with_modes(sshd, tmp_path):
    src = tmp_path / "tree"
    (src / "sub").mkdir(parents=True)
    (src / "a.txt").write_text("A")
    (src / "sub" / "b.sh").write_text("#!/bin/sh\n")
    (src / "sub" / "b.sh").chmod(0o755)
    dest = tmp_path / "dest"
    log = BuildLog("t", None, console=io.StringIO())
    comm = comm_for(sshd)
    try:
        comm.upload_tree(src, str(dest), log=log, mode="0750")
        comm.upload_file(src / "a.txt", str(tmp_path / "single" / "a.conf"), log=log, mode="0600")
    finally:
        comm.close()
    assert (dest / "a.txt").read_text() == "A"
    assert stat.S_IMODE(os.stat(dest / "sub" / "b.sh").st_mode) == 0o755
    assert stat.S_IMODE(os.stat(dest).st_mode) == 0o750
    assert stat.S_IMODE(os.stat(tmp_path / "single" / "a.conf").st_mode) == 0o600
    import glob

    assert glob.glob("/tmp/goldsmith-upload-*") == [], "the staging tarball is removed"
