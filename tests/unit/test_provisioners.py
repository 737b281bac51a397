"""Provisioner logic against a recording communicator (the real guest runs are in tests/integration)."""

import io

import pytest

from goldsmith_provider.communicators.base import Communicator, Disconnected, RemoteResult
from goldsmith_provider.engine.errors import CommandError, GoldsmithError
from goldsmith_provider.engine.log import BuildLog
from goldsmith_provider.provisioners import PackagesProvisioner, ProvisionContext, ShellProvisioner, UpdatesProvisioner


class Recorder(Communicator):
    def __init__(self, answers=None, user="root"):
        self.user = user
        self.commands = []
        self.files = {}
        self.answers = answers or {}

    def run(self, command, *, log, env=None, secret_env=None, sudo=False, timeout=None, check=True, quiet=False):
        self.commands.append((command, dict(env or {}), dict(secret_env or {}), sudo))
        for needle, answer in self.answers.items():
            if needle in command:
                if isinstance(answer, BaseException):
                    raise answer
                return RemoteResult(0, answer)
        return RemoteResult(0, "")

    def put_bytes(self, data, remote, *, mode=0o600):
        self.files[remote] = (data, mode)

    def get_bytes(self, remote):
        return self.files[remote][0]


def pctx(tmp_path, reboots):
    return ProvisionContext(log=BuildLog("t", None, console=io.StringIO()), base_dir=tmp_path, cache_root=tmp_path,
                            reboot=lambda: reboots.append("reboot"), reconnect=lambda: reboots.append("reconnect"))


@pytest.mark.parametrize("answer,policy,expect", [
    ("no", "auto", []), ("yes", "auto", ["reboot"]), ("no", "always", ["reboot"]), ("yes", "never", []),
])
def test_updates_reboot_only_when_the_guest_says_so(tmp_path, answer, policy, expect):
    comm = Recorder({"for pm in": "apt-get", "reboot-required": answer})
    reboots = []
    UpdatesProvisioner(reboot=policy).provision(comm, pctx(tmp_path, reboots))
    assert reboots == expect
    assert any("dist-upgrade" in c[0] for c in comm.commands)


def test_security_updates_use_only_security_sources(tmp_path):
    comm = Recorder({"for pm in": "dnf", "reboot-required": "no"})
    UpdatesProvisioner(security_only=True).provision(comm, pctx(tmp_path, []))
    assert any("dnf -y upgrade --security" in c[0] for c in comm.commands)


def test_packages_use_the_guest_package_manager_and_sudo_for_non_root(tmp_path):
    comm = Recorder({"for pm in": "apt-get"}, user="debian")
    PackagesProvisioner(install=["jq", "curl"], remove=["nano"]).provision(comm, pctx(tmp_path, []))
    cmds = [c[0] for c in comm.commands]
    assert any(c.startswith("sudo -n -E sh -c") and "install --no-install-recommends jq curl" in c for c in cmds)
    assert any("purge nano" in c for c in cmds)


def test_shell_uploads_scripts_and_passes_env_and_secret_env(tmp_path):
    (tmp_path / "s.sh").write_text("echo from script\n")
    comm = Recorder()
    ShellProvisioner(inline=["echo a", "echo b"], scripts=["s.sh"], env={"A": "1"}, secret_env={"T": "tok"}).provision(
        comm, pctx(tmp_path, []))
    bodies = [data for data, _ in comm.files.values()]
    assert b"echo a\necho b\n" in bodies and b"echo from script\n" in bodies
    assert all(c[1] == {"A": "1"} and c[2] == {"T": "tok"} for c in comm.commands)
    assert all("tok" not in c[0] for c in comm.commands), "secret values never on a command line"


def test_expect_disconnect_reconnects_when_the_connection_drops(tmp_path):
    comm = Recorder({"/tmp/goldsmith-script": Disconnected("gone")})
    reboots = []
    ShellProvisioner(inline=["systemctl reboot"], expect_disconnect=True).provision(comm, pctx(tmp_path, reboots))
    assert reboots == ["reconnect"]


def test_expect_disconnect_still_fails_on_a_real_error(tmp_path):
    comm = Recorder({"/tmp/goldsmith-script": CommandError("x", 3, "boom")})
    with pytest.raises(CommandError):
        ShellProvisioner(inline=["false"], expect_disconnect=True).provision(comm, pctx(tmp_path, []))


class FakeClock:
    """time.monotonic/time.sleep for provisioners.base: sleeping advances the clock."""

    def __init__(self, monkeypatch):
        import goldsmith_provider.provisioners.base as base

        self.now = 0.0
        monkeypatch.setattr(base.time, "monotonic", lambda: self.now)
        monkeypatch.setattr(base.time, "sleep", self.sleep)

    def sleep(self, s):
        self.now += s


class ShuttingDown(Recorder):
    """A guest whose reboot returns at once and then stays in systemd's 'stopping' state for
    `stopping_s` seconds of the clock before the connection drops (None: it never drops)."""

    def __init__(self, clock, stopping_s):
        super().__init__()
        self.clock, self.stopping_s, self.rebooted_at = clock, stopping_s, None

    def run(self, command, **kwargs):
        if "/tmp/goldsmith-script" in command:
            self.rebooted_at = self.clock.now
        elif "is-system-running" in command and self.rebooted_at is not None:
            if self.stopping_s is not None and self.clock.now - self.rebooted_at >= self.stopping_s:
                raise Disconnected("SSH session ended without an exit status")
            return RemoteResult(0, "stopping")
        return super().run(command, **kwargs)


def test_expect_disconnect_waits_out_a_slow_shutdown(tmp_path, monkeypatch):
    """A reboot whose units take longer to stop than the settle window (a loaded TCG guest): the
    next provisioner must not start while the guest is going down, so the watch goes on."""
    clock = FakeClock(monkeypatch)
    comm = ShuttingDown(clock, stopping_s=95)
    reboots, console = [], io.StringIO()
    ctx = pctx(tmp_path, reboots)
    ctx.log = BuildLog("t", None, console=console)
    ShellProvisioner(inline=["systemctl reboot"], expect_disconnect=True).provision(comm, ctx)
    assert reboots == ["reconnect"]
    assert clock.now >= 95
    text = console.getvalue()
    assert "the guest is shutting down" in text and "connection dropped as expected" in text


def test_expect_disconnect_returns_after_the_settle_window_when_nothing_goes_down(tmp_path, monkeypatch):
    """An sshd restart that keeps the session: no drop, no shutdown, so after settle_s it goes on."""
    clock = FakeClock(monkeypatch)
    comm = Recorder({"is-system-running": "running"})
    reboots = []
    ShellProvisioner(inline=["systemctl restart ssh"], expect_disconnect=True).provision(comm, pctx(tmp_path, reboots))
    assert reboots == []
    assert 20 <= clock.now < 30


def test_expect_disconnect_fails_when_the_guest_never_finishes_shutting_down(tmp_path, monkeypatch):
    clock = FakeClock(monkeypatch)
    comm = ShuttingDown(clock, stopping_s=None)
    with pytest.raises(GoldsmithError, match="still shutting down 600s after the command"):
        ShellProvisioner(inline=["systemctl reboot"], expect_disconnect=True).provision(comm, pctx(tmp_path, []))
    assert 600 <= clock.now < 610


def test_reboot_waits_for_a_new_boot_id(monkeypatch):
    """An sshd still answering on the way down is the old boot: reconnect until the boot id changes."""
    import goldsmith_provider.provisioners.base as base

    monkeypatch.setattr(base.time, "sleep", lambda s: None)
    boots = iter(["boot-1", "boot-1", "boot-1", "boot-2"])

    class Rebooting(Recorder):
        reconnects = 0

        def run(self, command, **kwargs):
            if "boot_id" in command:
                return RemoteResult(0, next(boots))
            return super().run(command, **kwargs)

        def reconnect(self, *, timeout, log=None, alive=None):
            self.reconnects += 1

    comm = Rebooting()
    base.reboot_and_reconnect(comm, BuildLog("t", None, console=io.StringIO()), timeout=60, alive=lambda: True)
    assert comm.reconnects == 3
    assert any("systemctl reboot" in c[0] for c in comm.commands)
