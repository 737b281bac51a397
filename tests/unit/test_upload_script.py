"""The guest-side unpack script of an upload (shared by every communicator), run here with /bin/sh."""

import grp
import os
import pwd
import stat
import subprocess

from goldsmith_provider.communicators.base import install_script, write_tar


def unpack(tmp_path, local, remote, **kw):
    tarball = tmp_path / "upload.tar"
    with open(tarball, "wb") as f:
        write_tar(local, f)
    script = install_script(str(tarball), str(remote), is_dir=local.is_dir(), **kw)
    return subprocess.run(["sh", "-c", script], capture_output=True, text=True)


def test_a_file_lands_exactly_with_mode_and_owner_and_no_leftovers(tmp_path):
    src = tmp_path / "motd"
    src.write_text("hello\n")
    dest = tmp_path / "etc" / "motd"
    done = unpack(tmp_path, src, dest, mode="0640", owner="nobody", group="nogroup")
    assert done.returncode == 0, done.stderr
    st = os.stat(dest)
    assert dest.read_text() == "hello\n"
    assert (stat.S_IMODE(st.st_mode), st.st_uid, st.st_gid) == (0o640, pwd.getpwnam("nobody").pw_uid,
                                                                 grp.getgrnam("nogroup").gr_gid)
    assert sorted(p.name for p in dest.parent.iterdir()) == ["motd"], "the temporary dir is removed"


def test_a_file_replaces_an_existing_one_and_defaults_to_0644(tmp_path):
    src = tmp_path / "new.conf"
    src.write_text("new\n")
    dest = tmp_path / "app.conf"
    dest.write_text("old\n")
    assert unpack(tmp_path, src, dest, mode=None, owner=None, group=None).returncode == 0
    assert dest.read_text() == "new\n" and stat.S_IMODE(os.stat(dest).st_mode) == 0o644


def test_a_directory_contents_land_inside_with_modes_kept(tmp_path):
    src = tmp_path / "tree"
    (src / "bin").mkdir(parents=True)
    (src / "bin" / "run").write_text("#!/bin/sh\n")
    (src / "bin" / "run").chmod(0o755)
    dest = tmp_path / "opt" / "app"
    assert unpack(tmp_path, src, dest, mode="0750", owner="nobody", group=None).returncode == 0
    assert stat.S_IMODE(os.stat(dest / "bin" / "run").st_mode) == 0o755
    assert stat.S_IMODE(os.stat(dest).st_mode) == 0o750
    assert os.stat(dest / "bin" / "run").st_uid == pwd.getpwnam("nobody").pw_uid


def test_a_failure_exits_non_zero_and_leaves_nothing(tmp_path):
    src = tmp_path / "f"
    src.write_text("x")
    done = unpack(tmp_path, src, tmp_path / "out" / "f", mode="0644", owner="no-such-user", group=None)
    assert done.returncode != 0 and "no-such-user" in done.stderr
    assert list((tmp_path / "out").iterdir()) == []
