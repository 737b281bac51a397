"""Vault KV v2 lookups with the real hvac client against the Vault peer (tests/peers/vault_kv.py), and the
secret-file and secret-env paths through a communicator that runs real shell commands on this machine."""

from __future__ import annotations

import dataclasses
import os
import secrets
import shlex
import socket
import subprocess
from pathlib import Path

import pytest

from goldsmith_provider.builders.common import steps as common
from goldsmith_provider.communicators.base import Communicator, RemoteResult
from goldsmith_provider.engine.errors import CommandError, GoldsmithError, StepError
from goldsmith_provider.engine.runner import run_steps
from goldsmith_provider.engine.state import BuildState
from goldsmith_provider.provisioners import FileProvisioner, ShellProvisioner
from goldsmith_provider.provisioners.base import ProvisionContext
from goldsmith_provider.vault.client import VaultError, VaultReader
from goldsmith_provider.vault.refs import VaultSecret, VaultSettings

pytestmark = pytest.mark.integration


def write(vault_kv, path: str, data: dict, mount: str = "secret") -> int:
    response = vault_kv.client().secrets.kv.v2.create_or_update_secret(path=path, secret=data, mount_point=mount)
    return response["data"]["version"]


def reader(vault_kv, log, sleep=None, env=None, **settings) -> VaultReader:
    settings.setdefault("address", vault_kv.address)
    return VaultReader(VaultSettings(**settings), log, env=env or {}, sleep=sleep or (lambda s: None))


@pytest.fixture
def unique():
    return "it/" + secrets.token_hex(6)


# --- reading ---------------------------------------------------------------------------------------------


def test_token_read_is_masked_from_the_moment_it_is_read_and_read_once(vault_kv, tee_log, unique):
    value = "s3cr3t-" + secrets.token_hex(8)
    write(vault_kv, unique, {"password": value, "user": "app"})
    r = reader(vault_kv, tee_log, token=vault_kv.root_token)
    assert r.read(VaultSecret(path=unique, key="password"), "provisioners[0].secret_env.DB") == value
    assert r.read(VaultSecret(path=unique, key="user"), "provisioners[0].secret_env.USER") == "app"
    assert vault_kv.reads(unique) == 1  # one read per secret per build
    tee_log.info(f"the value is {value}")
    assert value not in tee_log.text and "the value is ********" in tee_log.text
    assert vault_kv.root_token not in tee_log.text and "auth: token from the spec" in tee_log.text


def test_pinned_version_and_non_string_values(vault_kv, tee_log, unique):
    write(vault_kv, unique, {"k": "one"})
    assert write(vault_kv, unique, {"k": "two", "n": {"a": 1}}) == 2
    r = reader(vault_kv, tee_log, token=vault_kv.root_token)
    assert r.read(VaultSecret(path=unique, key="k", version=1), "p") == "one"
    assert r.read(VaultSecret(path=unique, key="k"), "p") == "two"
    assert r.read(VaultSecret(path=unique, key="n"), "p") == '{"a":1}'


def test_vault_token_from_the_environment_and_the_namespace_header(vault_kv, tee_log, unique):
    write(vault_kv, unique, {"k": "v-env"})
    env = {"VAULT_ADDR": vault_kv.address, "VAULT_TOKEN": vault_kv.root_token, "VAULT_NAMESPACE": "team-a"}
    r = VaultReader(VaultSettings(), tee_log, env=env)
    assert r.read(VaultSecret(path=unique, key="k"), "p") == "v-env"
    assert ("GET", f"/v1/secret/data/{unique}", "team-a") in vault_kv.requests
    assert "auth: VAULT_TOKEN" in tee_log.text and "namespace team-a" in tee_log.text


def test_approle_login_and_its_token_is_masked(vault_kv, tee_log, unique):
    write(vault_kv, unique, {"k": "v-approle"})
    role_id, secret_id = "role-" + secrets.token_hex(4), "sid-" + secrets.token_hex(8)
    vault_kv.add_approle(role_id, secret_id, mount="ci-approle", paths=[f"secret/{unique}"])
    r = reader(vault_kv, tee_log, role_id=role_id, secret_id=secret_id, approle_mount="ci-approle")
    assert r.read(VaultSecret(path=unique, key="k"), "p") == "v-approle"
    issued = r.client("p").token
    assert issued.startswith("hvs.") and issued in tee_log.masker.values
    bad = reader(vault_kv, tee_log, role_id=role_id, secret_id="wrong", approle_mount="ci-approle")
    with pytest.raises(VaultError, match=r"^p: AppRole login at .* \(auth/ci-approle\): Vault refused the request"):
        bad.read(VaultSecret(path=unique, key="k"), "p")


def test_a_kv_mount_other_than_the_default(vault_kv, tee_log, unique):
    vault_kv.enable_kv("team/kv")
    write(vault_kv, unique, {"k": "v-team"}, mount="team/kv")
    r = reader(vault_kv, tee_log, token=vault_kv.root_token, mount="team/kv")
    assert r.read(VaultSecret(path=unique, key="k"), "p") == "v-team"
    assert r.read(VaultSecret(path=unique, key="k", mount="team/kv"), "p") == "v-team"


# --- failures: the property path first, never the value --------------------------------------------------


def test_missing_key_names_the_property_and_the_keys_not_the_values(vault_kv, tee_log, unique):
    write(vault_kv, unique, {"password": "hidden-value-1", "user": "u"})
    r = reader(vault_kv, tee_log, token=vault_kv.root_token)
    with pytest.raises(VaultError) as err:
        r.read(VaultSecret(path=unique, key="pasword"), "provisioners[2].secret_env.DB")
    text = str(err.value)
    assert text.startswith(f"provisioners[2].secret_env.DB: the secret secret/{unique} has no key 'pasword'")
    assert "(its keys: password, user)" in text and "hidden-value-1" not in text


@pytest.mark.parametrize("ref,expected", [
    (VaultSecret(path="it/no-such-secret", key="k"), "not found at"),
    (VaultSecret(path="it/no-such-secret", key="k", mount="nomount"), "not found at"),
])
def test_missing_secret_or_mount(vault_kv, tee_log, ref, expected):
    r = reader(vault_kv, tee_log, token=vault_kv.root_token)
    with pytest.raises(VaultError, match=rf"^provisioners\[0\]\.secret: reading .*: {expected}"):
        r.read(ref, "provisioners[0].secret")


def test_a_deleted_version_is_not_found(vault_kv, tee_log, unique):
    write(vault_kv, unique, {"k": "v1"})
    vault_kv.client().secrets.kv.v2.delete_latest_version_of_secret(path=unique, mount_point="secret")
    r = reader(vault_kv, tee_log, token=vault_kv.root_token)
    with pytest.raises(VaultError, match="not found"):
        r.read(VaultSecret(path=unique, key="k"), "p")


def test_permission_denied(vault_kv, tee_log, unique):
    write(vault_kv, unique, {"k": "v"})
    narrow = vault_kv.add_token("hvs.narrow-" + secrets.token_hex(4), paths=["secret/elsewhere/"])
    for token in (narrow, "hvs.unknown-token"):
        r = reader(vault_kv, tee_log, token=token)
        with pytest.raises(VaultError, match=r"^p: reading .*: permission denied by http://127\.0\.0\.1") as err:
            r.read(VaultSecret(path=unique, key="k"), "p")
        assert "policy" in str(err.value)


def test_no_token_and_no_address(vault_kv, tee_log, tmp_path):
    r = VaultReader(VaultSettings(address=vault_kv.address), tee_log, env={"HOME": str(tmp_path)})
    with pytest.raises(VaultError, match=r"^p: no Vault token: set `vault.token`"):
        r.read(VaultSecret(path="a", key="k"), "p")
    (tmp_path / ".vault-token").write_text(vault_kv.root_token + "\n")  # the Vault CLI's token helper file
    write(vault_kv, "it/home-token", {"k": "from-home"})
    assert r.read(VaultSecret(path="it/home-token", key="k"), "p") == "from-home"
    with pytest.raises(VaultError, match=r"^q: no Vault address"):
        VaultReader(VaultSettings(), tee_log, env={}).read(VaultSecret(path="a", key="k"), "q")


def test_transient_errors_are_retried_with_backoff(vault_kv, tee_log, unique):
    write(vault_kv, unique, {"k": "after-retries"})
    delays: list[float] = []
    r = reader(vault_kv, tee_log, sleep=delays.append, token=vault_kv.root_token, attempts=4)
    vault_kv.fail_next(2, 503)
    vault_kv.fail_next(1, 429)
    assert r.read(VaultSecret(path=unique, key="k"), "p") == "after-retries"
    assert delays == [0.5, 1.0, 2.0]
    assert "VaultDown (attempt 1/4); retrying" in tee_log.text and "RateLimitExceeded (attempt 3/4)" in tee_log.text


def test_persistent_errors_give_up_after_the_attempts(vault_kv, tee_log, unique):
    write(vault_kv, unique, {"k": "v"})
    r = reader(vault_kv, tee_log, token=vault_kv.root_token, attempts=2)
    vault_kv.fail_next(2, 500)
    with pytest.raises(VaultError, match=r"^p: reading .*: InternalServerError"):
        r.read(VaultSecret(path=unique, key="k"), "p")


def test_unreachable_vault(tee_log):
    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    delays: list[float] = []
    r = VaultReader(VaultSettings(address=f"http://127.0.0.1:{port}", token="t0ken-x", attempts=3, timeout_s=2),
                    tee_log, env={}, sleep=delays.append)
    with pytest.raises(VaultError, match=r"^provisioners\[1\]\.secret_env\.X: reading .*: cannot reach Vault at "
                                         r"http://127\.0\.0\.1:\d+ after 3 attempt\(s\)") as err:
        r.read(VaultSecret(path="a", key="k"), "provisioners[1].secret_env.X")
    assert delays == [0.5, 1.0] and "is `vault.address`" in str(err.value)


# --- secret env and secret files through a real shell ------------------------------------------------------


class LocalShell(Communicator):
    """Runs the communicator's commands with /bin/sh on this machine (as root): a real peer for the shell
    and file provisioners' secret paths, without a VM."""

    def __init__(self) -> None:
        self.commands: list[str] = []
        self.puts: list[tuple[str, bytes]] = []

    def run(self, command, *, log, env=None, secret_env=None, sudo=False, timeout=None, check=True, quiet=False):
        script = self.command_script(command, log=log, env=env, secret_env=secret_env)
        self.commands.append(script)
        proc = subprocess.run(["/bin/sh", "-c", script], capture_output=True, text=True, timeout=timeout or 60)
        output = (proc.stdout + proc.stderr).rstrip("\n")
        if not quiet:
            for line in output.splitlines():
                log.output(line)
        if check and proc.returncode != 0:
            raise CommandError(f"command {log.masker.mask(command)!r}", proc.returncode, log.masker.mask(output))
        return RemoteResult(proc.returncode, output)

    def put_bytes(self, data, remote, *, mode=0o600):
        self.puts.append((remote, data))
        fd = os.open(remote, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
        with os.fdopen(fd, "wb") as f:
            f.write(data)

    def get_bytes(self, remote):
        return Path(remote).read_bytes()


@dataclasses.dataclass(frozen=True)
class _Spec:  # the two fields of an image spec these steps read
    provisioners: list
    vault: VaultSettings | None


def test_secret_file_and_env_from_vault_are_used_then_removed_before_the_snapshot(vault_kv, tee_log, tmp_path, unique):
    key = "-----BEGIN TEST KEY-----\n" + secrets.token_hex(16) + "\n-----END TEST KEY-----\n"
    password = "pw-" + secrets.token_hex(8)
    write(vault_kv, unique, {"tls_key": key, "password": password})
    dest = tmp_path / "etc" / "app" / "tls.key"
    receipt = tmp_path / "receipt"
    provisioners = [
        FileProvisioner(destination=str(dest), secret=VaultSecret(path=unique, key="tls_key"), mode="0400"),
        ShellProvisioner(inline=["echo using $DB_PASSWORD and $API_TOKEN", f"cat {shlex.quote(str(dest))}",
                                 f"printf '%s|%s|' \"$DB_PASSWORD\" \"$API_TOKEN\" > {receipt}",
                                 f"stat -c %a {shlex.quote(str(dest))} >> {receipt}"],
                         secret_env={"DB_PASSWORD": VaultSecret(path=unique, key="password"), "API_TOKEN": "pulumi-tok-9"}),
    ]
    comm = LocalShell()
    state = BuildState(name="it", build_id="b1", fingerprint="f" * 64, log=tee_log)
    state.spec = _Spec(provisioners, VaultSettings(address=vault_kv.address, token=vault_kv.root_token))
    state.comm = comm

    def make_context(st):
        return ProvisionContext(log=st.log, base_dir=tmp_path, cache_root=tmp_path)

    steps = [common.StepResolveSecrets(), *common.provision_steps(provisioners, make_context)]
    assert [s.name for s in steps] == ["resolve-secrets", "provision[0] file", "provision[1] shell", "remove-secret-files"]
    run_steps(steps, state)

    assert receipt.read_text() == f"{password}|pulumi-tok-9|400\n"  # the provisioner had both, and the file
    assert not dest.exists()  # removed before the snapshot
    assert vault_kv.reads(unique) == 1
    assert password not in tee_log.text and key.splitlines()[1] not in tee_log.text and "pulumi-tok-9" not in tee_log.text
    assert "using ******** and ********" in tee_log.text
    assert "removed 1 secret file(s) before the snapshot" in tee_log.text
    for script in comm.commands:  # no value on any command line
        assert password not in script and "pulumi-tok-9" not in script and key.splitlines()[1] not in script
    staged = [remote for remote, _ in comm.puts]
    assert all(not Path(r).exists() for r in staged)  # the staging copies and the env files are gone too


def test_a_bad_reference_fails_the_build_first_naming_the_property(vault_kv, tee_log, tmp_path, unique):
    write(vault_kv, unique, {"password": "x-" + secrets.token_hex(4)})
    provisioners = [ShellProvisioner(inline=["true"], secret_env={"DB": VaultSecret(path=unique, key="nope")})]
    state = BuildState(name="it", build_id="b2", fingerprint="f" * 64, log=tee_log)
    state.spec = _Spec(provisioners, VaultSettings(address=vault_kv.address, token=vault_kv.root_token))
    state.comm = LocalShell()
    ran: list[str] = []

    class Boot(common.BaseStep):
        name = "boot"

        def run(self, st):
            ran.append("boot")

    with pytest.raises(StepError) as err:
        run_steps([common.StepResolveSecrets(), Boot(),
                   *common.provision_steps(provisioners, lambda st: ProvisionContext(st.log, tmp_path, tmp_path))], state)
    assert err.value.step == "resolve-secrets" and ran == []
    assert "provisioners[0].secret_env.DB: the secret secret/" in str(err.value)


def test_a_secret_file_that_cannot_be_removed_fails_the_build(tee_log, tmp_path):
    state = BuildState(name="it", build_id="b3", fingerprint="f" * 64, log=tee_log)
    state.comm = LocalShell()
    state.spec = _Spec([], None)
    common.secret_store(state).track_file(str(tmp_path / "ro" / "f"))
    (tmp_path / "ro").mkdir()
    (tmp_path / "ro" / "f").write_text("k")
    os.chmod(tmp_path / "ro", 0o500)
    try:
        if os.geteuid() == 0:  # root ignores directory modes: make the file undeletable another way
            (tmp_path / "ro" / "f").unlink()
            (tmp_path / "ro" / "f").mkdir()  # a directory is not removed by shred or rm -f
        with pytest.raises(GoldsmithError, match="secret file still present"):
            common.StepRemoveSecretFiles().run(state)
    finally:
        os.chmod(tmp_path / "ro", 0o700)
