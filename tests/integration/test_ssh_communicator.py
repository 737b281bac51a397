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


def test_streamed_upload_keeps_bytes_mode_and_ownership(sshd, tmp_path):
    """upload_tree streams the tar into `tar -x` on an exec channel: big random bytes arrive intact
    (sha256 taken on the far side), modes and owners as asked, no staging file left in /tmp."""
    import glob
    import hashlib

    big = tmp_path / "big.bin"
    big.write_bytes(os.urandom(24 * 2**20 + 12345))  # not a multiple of any buffer size
    tree = tmp_path / "tree"
    (tree / "sub").mkdir(parents=True)
    (tree / "sub" / "run.sh").write_text("#!/bin/sh\n")
    (tree / "sub" / "run.sh").chmod(0o750)
    (tree / "conf").write_text("x = 1\n")
    log = BuildLog("t", None, console=io.StringIO())
    comm = comm_for(sshd)
    try:
        assert comm.client.get_transport().local_cipher.startswith("aes128-gcm"), "GCM preferred when offered"
        comm.upload_file(big, str(tmp_path / "far" / "big.bin"), log=log, mode="0640", owner="nobody", group="nogroup")
        comm.upload_tree(tree, str(tmp_path / "far" / "tree"), log=log, mode="0751", owner="nobody", group="nogroup")
        far = comm.run(f"sha256sum {tmp_path}/far/big.bin", log=log).output.split()[0]
    finally:
        comm.close()
    assert far == hashlib.sha256(big.read_bytes()).hexdigest()
    st = os.stat(tmp_path / "far" / "big.bin")
    import pwd, grp

    nobody, nogroup = pwd.getpwnam("nobody").pw_uid, grp.getgrnam("nogroup").gr_gid
    assert (stat.S_IMODE(st.st_mode), st.st_uid, st.st_gid) == (0o640, nobody, nogroup)
    for p, mode in ((tmp_path / "far" / "tree", 0o751), (tmp_path / "far" / "tree" / "sub" / "run.sh", 0o750)):
        st = os.stat(p)
        assert (stat.S_IMODE(st.st_mode), st.st_uid, st.st_gid) == (mode, nobody, nogroup), p
    assert (tmp_path / "far" / "tree" / "conf").read_text() == "x = 1\n"
    assert glob.glob("/tmp/goldsmith-upload-*") == [], "nothing staged in the guest's /tmp"


def test_streamed_upload_failures_are_reported(sshd, tmp_path):
    (tmp_path / "blocker").write_text("a file, not a directory")
    payload = tmp_path / "payload.bin"
    payload.write_bytes(os.urandom(3 * 2**20))
    log = BuildLog("t", None, console=io.StringIO())
    comm = comm_for(sshd)
    try:
        with pytest.raises(CommandError) as info:  # the far side cannot unpack: its own words come back
            comm.upload_tree(tmp_path / "payload.bin", str(tmp_path / "blocker" / "x" / "payload.bin"), log=log)
        assert info.value.status != 0 and "blocker" in str(info.value)
        with pytest.raises(CommandError):
            comm.upload_file(tmp_path / "payload.bin", str(tmp_path / "far.bin"), log=log, owner="no-such-user")
        with pytest.raises(OSError):  # a local file that cannot be read fails locally, before anything is sent
            comm.upload_tree(tmp_path / "missing.bin", str(tmp_path / "far2.bin"), log=log)
        assert comm.run("echo still usable", log=log).output == "still usable"
    finally:
        comm.close()
    assert not (tmp_path / "far.bin").exists() and not (tmp_path / "far2.bin").exists()
