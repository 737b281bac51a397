"""Real Docker peers for the tests: an engine, a distribution registry on 127.0.0.1, and a Debian rootfs.

- Engine: the user's ``DOCKER_HOST`` as is when it is set and answers; otherwise a ``dockerd`` started here on
  a unix socket in a temporary directory (overlay2, or vfs when overlay2 does not work on this filesystem),
  stopped and removed afterwards. No iptables, no bridge: build containers use ``network_mode`` none or host.
- Registry: Debian's ``docker-registry`` (distribution 2.8) with deletion enabled and htpasswd (basic) auth,
  on 127.0.0.1 and a free port, so every push, read and delete goes through real credentials.
- Rootfs: ``debootstrap --variant=minbase bookworm`` from the apt mirror, once per machine, cached by recipe
  digest in ``$GOLDSMITH_CACHE/rootfs/`` (the provider's own ``builders/docker/rootfs.py`` makes it).

Session-scoped fixtures (registered by ``tests/conftest.py``): ``docker_engine``, ``docker_registry``,
``debian_rootfs``. ``docker_engine`` exports ``DOCKER_HOST`` for the session, so builders and the ``pulumi``
CLI's provider process reach the same engine.
"""

from __future__ import annotations

import base64
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

import pytest

START_TIMEOUT_S = 90


def say(text: str) -> None:
    sys.stderr.write(f"[docker peers] {text}\n")


def engine_answers(host: str, timeout: float = 5) -> bool:
    import docker

    try:
        client = docker.DockerClient(base_url=host, timeout=timeout)
        try:
            return bool(client.ping())
        finally:
            client.close()
    except Exception:  # noqa: BLE001 - any failure means "not usable"
        return False


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class DockerEngine:
    host: str
    started_here: bool
    storage_driver: str
    workdir: Path | None = None
    proc: subprocess.Popen | None = None

    def client(self):
        import docker

        return docker.DockerClient(base_url=self.host, timeout=600)

    def stop(self) -> None:
        if self.proc is None:
            return
        _terminate(self.proc, grace=30)
        self.proc = None
        if self.workdir is not None:
            _remove_tree(self.workdir)


def _terminate(proc: subprocess.Popen, grace: float) -> None:
    if proc.poll() is not None:
        return
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout=grace)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()


def _remove_tree(path: Path) -> None:
    """rm -rf that first unmounts what dockerd left mounted (overlay, shm, netns)."""
    from goldsmith_provider.builders.qemu.accel import run_local
    from goldsmith_provider.builders.qemu.debian_base import remove_tree

    try:
        remove_tree(path, run=run_local)
    except Exception as exc:  # noqa: BLE001 - leave the directory, say where it is
        say(f"could not remove {path}: {exc}")


def start_dockerd(base: Path, driver: str) -> DockerEngine:
    workdir = Path(tempfile.mkdtemp(prefix="gs-dockerd-", dir=base))
    sock = workdir / "docker.sock"
    argv = ["dockerd", "--host", f"unix://{sock}", "--data-root", str(workdir / "data"), "--exec-root",
            str(workdir / "exec"), "--pidfile", str(workdir / "pid"), f"--storage-driver={driver}",
            "--iptables=false", "--ip-masq=false", "--bridge=none"]
    log = open(workdir / "dockerd.log", "wb")
    proc = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True)
    log.close()
    engine = DockerEngine(f"unix://{sock}", True, driver, workdir, proc)
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            break
        if sock.exists() and engine_answers(engine.host, timeout=3):
            return engine
        time.sleep(0.5)
    tail = (workdir / "dockerd.log").read_text(errors="replace").splitlines()[-15:]
    engine.stop()
    raise RuntimeError(f"dockerd ({driver}) did not come up:\n" + "\n".join(tail))


def ensure_engine(base: Path) -> DockerEngine:
    user_host = os.environ.get("DOCKER_HOST")
    if user_host:
        if engine_answers(user_host):
            say(f"using DOCKER_HOST={user_host}")
            return DockerEngine(user_host, False, "?")
        say(f"DOCKER_HOST={user_host} does not answer: starting a dockerd of our own")
    if not shutil.which("dockerd"):
        raise RuntimeError("dockerd is not installed: run `scripts/setup.sh --docker` (scripts/test.sh does)")
    try:
        engine = start_dockerd(base, "overlay2")
    except RuntimeError as exc:
        say(f"overlay2 does not work here, falling back to vfs (slower, full copies): {exc}")
        engine = start_dockerd(base, "vfs")
    say(f"started dockerd ({engine.storage_driver}) at {engine.host}")
    return engine


@dataclass
class LocalRegistry:
    address: str  # 127.0.0.1:PORT
    username: str
    password: str
    workdir: Path
    proc: subprocess.Popen | None = None
    requests: list = field(default_factory=list)

    @property
    def url(self) -> str:
        return f"http://{self.address}"

    def request(self, method: str, path: str, accept: str | None = None) -> tuple[int, dict, bytes]:
        """An authenticated call to the registry API, for assertions."""
        headers = {"Authorization": "Basic " + base64.b64encode(f"{self.username}:{self.password}".encode()).decode()}
        if accept:
            headers["Accept"] = accept
        req = urllib.request.Request(self.url + path, method=method, headers=headers)
        opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
        try:
            with opener.open(req, timeout=30) as resp:
                return resp.status, dict(resp.headers), resp.read()
        except urllib.error.HTTPError as exc:
            return exc.code, dict(exc.headers), exc.read()

    def has_manifest(self, name: str, reference: str) -> bool:
        from goldsmith_provider.builders.docker.registry import MANIFEST_TYPES

        return self.request("HEAD", f"/v2/{name}/manifests/{reference}", accept=MANIFEST_TYPES)[0] == 200

    def tags(self, name: str) -> list[str]:
        status, _, body = self.request("GET", f"/v2/{name}/tags/list")
        return (json.loads(body).get("tags") or []) if status == 200 else []

    def stop(self) -> None:
        if self.proc is not None:
            _terminate(self.proc, grace=10)
            self.proc = None
        shutil.rmtree(self.workdir, ignore_errors=True)


REGISTRY_CONFIG = """version: 0.1
log:
  level: warn
  accesslog:
    disabled: true
storage:
  filesystem:
    rootdirectory: {root}
  delete:
    enabled: true
http:
  addr: {address}
  secret: {secret}
auth:
  htpasswd:
    realm: goldsmith-tests
    path: {htpasswd}
"""


def start_registry(base: Path) -> LocalRegistry:
    import bcrypt  # paramiko's dependency: distribution's htpasswd wants bcrypt hashes

    binary = shutil.which("docker-registry") or "/usr/bin/docker-registry"
    if not os.path.exists(binary):
        raise RuntimeError("docker-registry is not installed: run `scripts/setup.sh --docker` (scripts/test.sh does)")
    workdir = Path(tempfile.mkdtemp(prefix="gs-registry-", dir=base))
    user, password = "goldsmith", base64.b32encode(os.urandom(10)).decode().lower()
    (workdir / "htpasswd").write_text(f"{user}:{bcrypt.hashpw(password.encode(), bcrypt.gensalt(rounds=5)).decode()}\n")
    address = f"127.0.0.1:{free_port()}"
    (workdir / "config.yml").write_text(REGISTRY_CONFIG.format(root=workdir / "data", address=address,
                                                               secret=os.urandom(8).hex(), htpasswd=workdir / "htpasswd"))
    log = open(workdir / "registry.log", "wb")
    proc = subprocess.Popen([binary, "serve", str(workdir / "config.yml")], stdout=log, stderr=subprocess.STDOUT,
                            stdin=subprocess.DEVNULL, start_new_session=True)
    log.close()
    registry = LocalRegistry(address, user, password, workdir, proc)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and proc.poll() is None:
        try:
            if registry.request("GET", "/v2/")[0] == 200:
                say(f"started docker-registry at {address} (basic auth, deletes enabled)")
                return registry
        except OSError:
            pass
        time.sleep(0.2)
    tail = (workdir / "registry.log").read_text(errors="replace")[-2000:]
    registry.stop()
    raise RuntimeError(f"docker-registry did not come up:\n{tail}")


def debian_rootfs_tarball() -> Path:
    """The cached minbase bookworm rootfs (built on first use: about two minutes)."""
    from goldsmith_provider.builders.docker.rootfs import RootfsRecipe, ensure_rootfs
    from goldsmith_provider.engine.paths import cache_root

    return ensure_rootfs(RootfsRecipe(), cache_root(), log=say)


# --- fixtures ------------------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def docker_engine():
    engine = ensure_engine(Path(tempfile.gettempdir()))
    previous = os.environ.get("DOCKER_HOST")
    os.environ["DOCKER_HOST"] = engine.host
    try:
        yield engine
    finally:
        if previous is None:
            os.environ.pop("DOCKER_HOST", None)
        else:
            os.environ["DOCKER_HOST"] = previous
        engine.stop()


@pytest.fixture(scope="session")
def docker_registry():
    registry = start_registry(Path(tempfile.gettempdir()))
    try:
        yield registry
    finally:
        registry.stop()


@pytest.fixture(scope="session")
def debian_rootfs() -> Path:
    return debian_rootfs_tarball()
