"""A test peer playing EC2's hypervisor and cloud-init for ONE local QEMU guest.

moto runs instances that exist only as records: their IP addresses lead nowhere. This peer makes the
builder's SSH real. It boots one guest per test session from goldsmith's cached Debian base and
watches moto; whenever an instance starts running it reads that instance's user data back from moto
(DescribeInstanceAttribute userData), applies it to the guest the way cloud-init would (the
``ssh_keys`` host key, the users with their ``ssh_authorized_keys`` and sudo rule, the EC2 key
pair's public key, user-data scripts), restarts sshd and only then "connects the instance to the
network": a TCP port on 127.0.0.1 (``guest.host``) that forwards to the guest's sshd while that
instance runs and refuses connections otherwise (before it runs, and once it is stopped or
terminated). Builders reach it with the ``communicator.host`` override, and their SSH verifies the
host key they generated themselves: nothing is blindly accepted on either side.

The peer keeps its own root connection to the guest (separate from the instance "network"). The
guest is not rebooted between builds: ``reset_commands`` run before each new instance is applied.
"""

from __future__ import annotations

import base64
import contextlib
import dataclasses
import email
import json
import os
import secrets
import shlex
import socket
import threading
import time
from pathlib import Path

import pytest
import yaml

from .moto_server import REGION
from .tcp import pump

PEER_COMMENT = "ec2-guest-peer"


def parse_user_data(text: str) -> tuple[dict, list[str]]:
    """(merged cloud-config, shell scripts) of a user-data document, multipart MIME or single part."""
    configs: list[dict] = []
    scripts: list[str] = []

    def take(body: str, ctype: str = "") -> None:
        first = body.lstrip().split("\n", 1)[0]
        if ctype == "text/cloud-config" or first.startswith("#cloud-config"):
            configs.append(yaml.safe_load(body) or {})
        elif ctype == "text/x-shellscript" or first.startswith("#!"):
            scripts.append(body)

    head = text.lstrip()[:200].lower()
    if head.startswith(("content-type: multipart", "mime-version")):
        message = email.message_from_string(text)
        for part in message.walk():
            if part.is_multipart():
                continue
            payload = part.get_payload(decode=True) or b""
            take(payload.decode("utf-8", "replace"), part.get_content_type())
    elif text.strip():
        take(text)
    merged: dict = {}
    for config in configs:
        merged.update(config)
    return merged, scripts


class _Network:
    """127.0.0.1:<port> -> the guest's sshd, only while an instance is 'running'."""

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.listener = socket.socket()
        self.listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.listener.bind(("127.0.0.1", 0))
        self.listener.listen(16)
        self.port = self.listener.getsockname()[1]
        self.up = False
        self._open: list[socket.socket] = []
        self._lock = threading.Lock()
        self.connections = 0
        threading.Thread(target=self._accept, daemon=True, name="ec2-guest-net").start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            if not self.up:
                client.close()  # no instance running: nothing answers at this address
                continue
            try:
                upstream = socket.create_connection(("127.0.0.1", self.target_port), timeout=10)
            except OSError:
                client.close()
                continue
            upstream.settimeout(None)
            with self._lock:
                self._open += [client, upstream]
                self.connections += 1
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pump, args=(a, b), daemon=True).start()

    _pump = staticmethod(pump)

    def down(self) -> None:
        """The instance stopped: drop its connections, answer nothing."""
        self.up = False
        with self._lock:
            for s in self._open:
                with contextlib.suppress(OSError):
                    s.close()
            self._open.clear()

    def close(self) -> None:
        self.down()
        self.listener.close()


class Ec2Guest:
    def __init__(self, moto, *, regions: list[str], log_path: Path) -> None:
        from goldsmith_provider.engine.log import BuildLog

        self.moto = moto
        self.regions = regions
        self.log = BuildLog("ec2-guest", log_path, console=open(os.devnull, "w"))
        self.reset_commands: list[str] = []
        self.applied: list[dict] = []  # one record per instance served: id, region, users, host key
        self.errors: list[str] = []
        self.active: str | None = None
        self._seen: set[str] = set()
        self._lock = threading.RLock()
        self._stop = threading.Event()
        self._stack = contextlib.ExitStack()
        self.comm = None
        self.vm = None
        self.net: _Network | None = None

    @property
    def host(self) -> str:
        """What builders put in communicator.host: the running instance's SSH address."""
        return f"127.0.0.1:{self.net.port}"

    # -- life of the peer ------------------------------------------------------------------------------

    def start(self) -> "Ec2Guest":
        from goldsmith_provider.builders.qemu import accel, sources
        from goldsmith_provider.builders.qemu.boot import booted
        from goldsmith_provider.builders.qemu.config import DebootstrapSource
        from goldsmith_provider.engine.paths import cache_root

        root = cache_root()
        base = sources.resolve(DebootstrapSource(), base_dir=Path.cwd(), cache_root=root, log=self.log)
        accel_args = accel.qemu_accel_args(accel.detect_accelerator(root, log=self.log.info))
        # A work dir with a live-owner marker, so `goldsmith gc` run meanwhile leaves this guest alone.
        tag = f"ec2guest-{secrets.token_hex(4)}"
        work = root / "work" / tag
        work.mkdir(parents=True)
        (work / "goldsmith-build.json").write_text(json.dumps(
            {"build_id": tag, "name": "ec2-guest", "pid": os.getpid(), "started": time.time(), "builder": "test-peer"}))
        self._stack.callback(lambda: __import__("shutil").rmtree(work, ignore_errors=True))
        comm, vm = self._stack.enter_context(booted(base.path, disk_format=base.format, log=self.log,
                                                    accel_args=accel_args, workdir=root / "work", tag=tag))
        self.comm, self.vm = comm, vm
        self._peer_line = " ".join(_public_of(comm).split()[:2]) + f" {PEER_COMMENT}"
        self.net = _Network(vm.ssh_port)
        self._stack.callback(self.net.close)
        self.sh("systemctl is-active ssh")
        threading.Thread(target=self._watch, daemon=True, name="ec2-guest-watch").start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self.comm is not None:
            with contextlib.suppress(Exception):
                self.comm.close()
        self._stack.close()

    # -- the guest, as root, over the peer's own connection -------------------------------------------

    def sh(self, command: str, *, check: bool = True) -> str:
        with self._lock:
            return self.comm.run(command, log=self.log, check=check, timeout=600, quiet=True).output.strip()

    def put(self, data: bytes, path: str, mode: int = 0o600) -> None:
        with self._lock:
            self.comm.put_bytes(data, path, mode=mode)

    # -- the hypervisor ---------------------------------------------------------------------------------

    def _watch(self) -> None:
        while not self._stop.is_set():
            try:
                self._tick()
            except Exception as exc:  # noqa: BLE001 - moto reset, a transient error: keep watching
                self.log.info(f"watch: {exc!r}")
            self._stop.wait(0.25)

    def _tick(self) -> None:
        running: dict[str, tuple[str, dict]] = {}
        for region in self.regions:
            ec2 = self.moto.client("ec2", region)
            reservations = ec2.describe_instances(Filters=[{"Name": "instance-state-name",
                                                            "Values": ["pending", "running"]}])["Reservations"]
            for instance in [i for r in reservations for i in r["Instances"]]:
                running[instance["InstanceId"]] = (region, instance)
        if self.active and self.active not in running:
            self.log.info(f"instance {self.active} left 'running': its network is down")
            self.net.down()
            self.active = None
        new = sorted((iid for iid in running if iid not in self._seen), key=lambda i: running[i][1]["LaunchTime"])
        for iid in new:
            self._seen.add(iid)
            region, instance = running[iid]
            try:
                self._apply(region, instance)
            except Exception as exc:  # noqa: BLE001 - recorded: a test asserts there were none
                if self._still_running(region, iid):
                    self.errors.append(f"{iid}: {exc!r}")
                self.log.info(f"apply {iid} failed: {exc!r}")  # else the build ended it meanwhile: no error

    def _still_running(self, region: str, iid: str) -> bool:
        try:
            reservations = self.moto.client("ec2", region).describe_instances(InstanceIds=[iid])["Reservations"]
        except Exception:  # noqa: BLE001
            return False
        return any(i["State"]["Name"] in ("pending", "running") for r in reservations for i in r["Instances"])

    def _apply(self, region: str, instance: dict) -> None:
        iid = instance["InstanceId"]
        ec2 = self.moto.client("ec2", region)
        raw = ec2.describe_instance_attribute(InstanceId=iid, Attribute="userData")["UserData"].get("Value", "")
        text = base64.b64decode(raw).decode("utf-8", "replace") if raw else ""
        config, scripts = parse_user_data(text)
        pair_key = ""
        if instance.get("KeyName"):
            pairs = ec2.describe_key_pairs(KeyNames=[instance["KeyName"]], IncludePublicKey=True)["KeyPairs"]
            pair_key = (pairs[0].get("PublicKey") or "").strip() if pairs else ""
        keys = config.get("ssh_keys") or {}
        users = [u for u in config.get("users") or [] if isinstance(u, dict)]
        with self._lock:
            self.net.down()
            self.active = None
            self.sh(apply_script(config, scripts, pair_key, self._peer_line, self.reset_commands))
            if keys.get("ed25519_public"):
                self._reconnect(keys["ed25519_public"])  # proves sshd came back with the instance's host key
            state = ec2.describe_instances(InstanceIds=[iid])["Reservations"][0]["Instances"][0]["State"]["Name"]
            self.applied.append({"instance_id": iid, "region": region, "users": [u["name"] for u in users],
                                 "host_key": keys.get("ed25519_public", ""), "key_pair": instance.get("KeyName"),
                                 "user_data": text, "scripts": len(scripts)})
            if state in ("pending", "running"):
                self.active = iid
                self.net.up = True
                self.log.info(f"instance {iid} ({region}) applied: users {[u['name'] for u in users]}, network up")

    def _reconnect(self, host_public: str) -> None:
        from goldsmith_provider.communicators.ssh import SshCommunicator

        target = dataclasses.replace(self.comm.target, host_key=host_public)
        fresh = SshCommunicator(target)
        fresh.wait_ready(timeout=60, log=self.log)
        old, self.comm = self.comm, fresh
        with contextlib.suppress(Exception):
            old.close()


def apply_script(config: dict, scripts: list[str], pair_key: str, peer_line: str, reset: list[str]) -> str:
    """One root shell script doing what cloud-init would with this user data (files travel inline)."""
    q = shlex.quote

    def write(path: str, data: str, mode: str) -> str:
        return f"printf %s {q(base64.b64encode(data.encode()).decode())} | base64 -d > {q(path)} && chmod {mode} {q(path)}"

    keys = config.get("ssh_keys") or {}
    users = [u for u in config.get("users") or [] if isinstance(u, dict)]
    lines = ["set -e", *reset, "rm -rf /root/.ec2-guest", "mkdir -m 700 /root/.ec2-guest"]
    if keys.get("ed25519_private"):
        if config.get("ssh_deletekeys", True):
            lines.append("rm -f /etc/ssh/ssh_host_*")
        lines += [write("/etc/ssh/ssh_host_ed25519_key", keys["ed25519_private"], "600"),
                  write("/etc/ssh/ssh_host_ed25519_key.pub", keys.get("ed25519_public", "") + "\n", "644")]
    if not any(u["name"] == "root" for u in users):
        users = [*users, {"name": "root", "ssh_authorized_keys": []}]
    for index, user in enumerate(users):
        name = user["name"]
        wanted = list(user.get("ssh_authorized_keys") or [])
        if index == 0 and pair_key:
            wanted.append(pair_key)  # EC2's key pair goes to the default user
        if name == "root":
            wanted.insert(0, peer_line)
            home = "/root"
        else:
            home = f"/home/{name}"
            lines.append(f"id -u {q(name)} >/dev/null 2>&1 || useradd -m -s {q(user.get('shell', '/bin/bash'))} {q(name)}")
            if user.get("sudo"):
                rule = f"/etc/sudoers.d/90-cloud-init-{name}"
                lines.append(write(rule, f"{name} {user['sudo']}\n", "440"))
        staged = f"/root/.ec2-guest/authorized_keys-{name}"
        lines += [write(staged, "\n".join(wanted) + "\n", "600"),
                  f"install -d -m 700 -o {q(name)} -g $(id -gn {q(name)}) {q(home)}/.ssh",
                  f"install -m 600 -o {q(name)} -g $(id -gn {q(name)}) {q(staged)} {q(home)}/.ssh/authorized_keys"]
    lines.append("systemctl restart ssh")
    for i, script in enumerate(scripts):
        lines += [write(f"/root/.ec2-guest/user-script-{i}", script, "700"), f"/root/.ec2-guest/user-script-{i}"]
    return "\n".join(lines) + "\n"


def _public_of(comm) -> str:
    from cryptography.hazmat.primitives import serialization

    key = serialization.load_ssh_private_key(comm.target.private_key.encode(), password=None)
    return key.public_key().public_bytes(serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH).decode()


@pytest.fixture(scope="session")
def ec2_guest(moto_server, tmp_path_factory):
    guest = Ec2Guest(moto_server, regions=[REGION], log_path=tmp_path_factory.mktemp("ec2-guest") / "guest.log").start()
    try:
        yield guest
    finally:
        guest.stop()
