"""Real Docker builds against a real dockerd and a real registry (distribution 2.8 with basic auth): build from an
imported Debian rootfs with the QEMU test's shell and file provisioners, run the image and look inside, push,
pull back by digest, adopt, delete; failures that must leave nothing; the communicator; the orphan reaper."""

import hashlib
import json
import os
import re
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from goldsmith_provider import gc
from goldsmith_provider.builders.docker import builder
from goldsmith_provider.builders.docker import engine as labels
from goldsmith_provider.communicators.docker import DockerCommunicator
from goldsmith_provider.engine.errors import CommandError, StepError
from goldsmith_provider.engine.log import Masker
import fault_matrix
from peers.http_server import LocalHttpServer

from .conftest import TeeLog, make_project

pytestmark = pytest.mark.integration

SECRET = "s3cr3t-token-value"
SCRIPT_EXTRA = ("printf '%s' \"$TOKEN\" | sha256sum | cut -c1-16 > /opt/app/token.sha\n"
                "echo \"the token is $TOKEN\"\n"
                "useradd --system --no-create-home appsvc\n")


def props_for(rootfs: Path, registry, **extra) -> dict:
    props = {
        "name": "it-docker",
        "source": {"type": "rootfs", "path": str(rootfs)},
        "provisioners": [
            {"type": "file", "source": "files/motd", "destination": "/etc/motd", "mode": "0644"},
            {"type": "shell", "scripts": ["scripts/configure.sh"], "env": {"GREETING": "hello world"},
             "secret_env": {"TOKEN": SECRET}},
            {"type": "file", "source": "files/conf.d", "destination": "/etc/app", "mode": "0750", "owner": "appsvc", "group": "appsvc"},
            {"type": "shell", "inline": ["echo built > /opt/app/state", "chown appsvc /opt/app/state"]},
        ],
        "config": {"cmd": ["cat", "/etc/motd"], "env": {"APP_MODE": "prod"}, "workdir": "/opt/app",
                   "user": "appsvc", "expose": ["8080", "53/udp"], "labels": {"team": "core"}},
        "repository": f"{registry.address}/goldsmith/it-docker",
        "tags": ["v1", "latest"],
        "registry": {"username": registry.username, "password": registry.password},
        "network_mode": "none",
    }
    props.update(extra)
    return props


def prepare(props, root):
    spec, problems = builder.prepare(props, root)
    assert problems == [], problems
    return spec, builder.identify(spec, root)


def masked_log(tmp_path, registry, name="it"):
    return TeeLog(name, tmp_path / f"{name}.log", masker=Masker([registry.password, SECRET]))


def build_containers(client) -> list:
    return client.containers.list(all=True, filters={"label": labels.BUILD_ID})


def created_containers(client, since: float) -> list[str]:
    """Build containers the engine created since ``since`` (from its event log)."""
    events = client.events(since=int(since), until=int(time.time()) + 1, decode=True,
                           filters={"type": "container", "event": "create"})
    # the engine's `since` filter has one-second granularity: filter on the exact event time too
    names = [ev.get("Actor", {}).get("Attributes", {}).get("name", "?") for ev in events
             if ev.get("timeNano", 0) >= since * 1e9]
    return [n for n in names if n.startswith(labels.CONTAINER_PREFIX)]


def run_in(client, image: str, command: list[str] | None = None, **kwargs) -> str:
    out = client.containers.run(image, command, remove=True, network_mode="none", stdout=True, stderr=True, **kwargs)
    return out.decode().strip()


def test_build_run_push_pull_adopt_and_delete(tmp_path, docker_engine, docker_registry, debian_rootfs):
    client = docker_engine.client()
    root = make_project(tmp_path / "project", script_extra=SCRIPT_EXTRA, git=True)
    props = props_for(debian_rootfs, docker_registry)
    tool = (root / "www" / "tool.sh").read_bytes()
    with LocalHttpServer(root / "www") as http, masked_log(tmp_path, docker_registry) as log:
        props["provisioners"].append({"type": "file", "url": f"{http.url}/tool.sh", "destination": "/usr/local/bin/tool",
                                      "checksum": "sha256:" + hashlib.sha256(tool).hexdigest(), "mode": "0755"})
        spec, ident = prepare(props, root)
        started = time.monotonic()
        outputs = builder.build(spec, ident, base_dir=root, log=log)
        took = time.monotonic() - started
        text = log.text
    print(f"docker build: {took:.1f}s, image {outputs['size'] / 2**20:.0f} MiB, timings {outputs['timings']}")

    # Outputs: id, a digest per pushed tag, size, fingerprint, packages, source digest, provenance.
    image_id = outputs["image_id"]
    repo = spec.repository_name
    assert image_id.startswith("sha256:") and outputs["fingerprint"] == ident.fingerprint
    assert set(outputs["repo_digests"]) == {f"{repo}:v1", f"{repo}:latest"}
    digest = outputs["repo_digests"][f"{repo}:v1"].split("@")[1]
    assert outputs["image_ref"] == f"{repo}@{digest}"
    assert outputs["size"] > 50 * 2**20 and outputs["adopted"] is False
    assert outputs["package_count"] > 50 and any(p.startswith("dpkg=") for p in outputs["packages"])
    assert outputs["source_image"]["type"] == "rootfs" and outputs["source_image"]["digest"].startswith("sha256:")
    head = subprocess.run(["git", "-C", str(root), "rev-parse", "HEAD"], capture_output=True, text=True).stdout.strip()
    assert outputs["provenance"]["source_revision"] == head

    # The secret never shows: masked in the log, absent from the image's config, history and files.
    assert "the token is ********" in text and SECRET not in text and docker_registry.password not in text
    image = client.images.get(image_id)
    assert SECRET not in json.dumps(image.attrs) and SECRET not in json.dumps(image.history())

    # The image config and goldsmith's labels.
    cfg = image.attrs["Config"]
    assert cfg["Cmd"] == ["cat", "/etc/motd"] and not cfg["Entrypoint"]
    assert "APP_MODE=prod" in cfg["Env"] and cfg["WorkingDir"] == "/opt/app" and cfg["User"] == "appsvc"
    assert set(cfg["ExposedPorts"]) == {"8080/tcp", "53/udp"}
    lab = cfg["Labels"]
    assert lab["team"] == "core" and lab[labels.FINGERPRINT] == ident.fingerprint
    assert lab[labels.SOURCE_DIGEST] == outputs["source_image"]["digest"] and lab[labels.REVISION] == head
    assert lab[labels.VERSION] and lab["org.opencontainers.image.revision"] == head

    # Run the image: its CMD, and the provisioned files with their modes and owners.
    assert run_in(client, image_id) == "goldsmith integration image"
    checks = ("pwd; id -un; cat /opt/app/greeting; stat -c '%a' /etc/motd; stat -c '%a %U %G' /etc/app; "
              "cat /etc/app/app.conf /etc/app/db.conf; stat -c '%U' /opt/app/state; echo $APP_MODE; "
              "ls -A /tmp | wc -l; ls /var/lib/apt/lists | grep -v -e partial -e lock | wc -l; "
              f"grep -rl {SECRET} /etc /opt /root /tmp /var 2>/dev/null | wc -l; cat /opt/app/token.sha; tool")
    lines = run_in(client, image_id, ["sh", "-c", checks]).splitlines()
    assert lines == ["/opt/app", "appsvc", "hello world", "644", "750 appsvc appsvc", "listen = 8080", "pool = 5",
                     "appsvc", "prod", "0", "0", "0", hashlib.sha256(SECRET.encode()).hexdigest()[:16],
                     "tool-from-artifact"], lines

    # Pushed: every tag names the digest in the registry; pulled back by digest it is the same image.
    name = repo.split("/", 1)[1]
    assert sorted(docker_registry.tags(name)) == ["latest", "v1"]
    assert docker_registry.has_manifest(name, digest)
    client.images.remove(f"{repo}:latest")  # the pull must be a real one, not "up to date" from a local tag
    client.images.remove(f"{repo}:v1")
    assert client.images.list(filters={"label": f"{labels.FINGERPRINT}={ident.fingerprint}"}) == []
    pulled = client.images.pull(repo, tag=digest, auth_config={"username": docker_registry.username,
                                                               "password": docker_registry.password})
    assert pulled.id == image_id
    assert run_in(client, f"{repo}@{digest}", ["cat", "/opt/app/greeting"]) == "hello world"

    # Adoption: the same spec again builds nothing (no container is even created), tags and pushes.
    since = time.time() - 1
    with masked_log(tmp_path, docker_registry, "adopt") as log:
        again = builder.build(spec, builder.identify(spec, root), base_dir=root, log=log)
        assert "adopting the existing image" in log.text
    assert again["adopted"] is True and again["image_id"] == image_id and again["repo_digests"] == outputs["repo_digests"]
    assert created_containers(client, since) == []
    assert builder.read({**again, "registry": spec_registry(docker_registry)}) is not None
    assert build_containers(client) == []

    # Delete: the local image and the registry manifest go; refresh then reports it gone.
    state = {**again, "registry": spec_registry(docker_registry), "docker_host": ""}
    builder.delete(state, log=log)
    assert client.images.list(filters={"label": f"{labels.FINGERPRINT}={ident.fingerprint}"}) == []
    assert not docker_registry.has_manifest(name, digest) and docker_registry.tags(name) == []
    assert builder.read(state) is None


def spec_registry(registry) -> dict:
    return {"username": registry.username, "password": registry.password, "insecure": False}


def test_failures_leave_no_container_image_tag_or_manifest(tmp_path, docker_engine, docker_registry, debian_rootfs,
                                                           monkeypatch):
    client = docker_engine.client()
    root = make_project(tmp_path / "project", script_extra=SCRIPT_EXTRA, git=True)
    base = imported_base(client, debian_rootfs)
    images_before = {i.id for i in client.images.list(all=True)}

    # A provisioner fails: its output and status are in the error, the next one never runs.
    props = props_for(debian_rootfs, docker_registry, name="it-broken", repository=f"{docker_registry.address}/goldsmith/it-broken")
    props["provisioners"] = [
        {"type": "shell", "inline": ["echo preparing", "echo 'E: the thing is broken' >&2", "exit 7"], "secret_env": {"TOKEN": SECRET}},
        {"type": "shell", "inline": ["echo never runs"]},
    ]
    spec, ident = prepare(props, root)
    with masked_log(tmp_path, docker_registry, "broken") as log:
        with pytest.raises(StepError) as info:
            builder.build(spec, ident, base_dir=root, log=log)
        assert "never runs" not in log.text and "removed the build container" in log.text
    message = str(info.value)
    assert info.value.step == "provision[0] shell"
    assert "exit status 7" in message and "E: the thing is broken" in message and "preparing" in message
    assert build_containers(client) == []
    assert {i.id for i in client.images.list(all=True)} - images_before == set(), base
    assert client.images.list(filters={"dangling": True, "label": labels.FINGERPRINT}) == []

    # The push fails after the commit, tag and push of the first tag: all of it is undone.
    monkeypatch.setenv("GOLDSMITH_FAIL_STEP", "push")
    props = props_for(debian_rootfs, docker_registry, name="it-unpushed",
                      repository=f"{docker_registry.address}/goldsmith/it-unpushed")
    props["provisioners"] = [{"type": "shell", "inline": ["echo unpushed > /etc/unpushed"]}]
    spec, ident = prepare(props, root)
    with masked_log(tmp_path, docker_registry, "unpushed") as log:
        with pytest.raises(StepError) as info:
            builder.build(spec, ident, base_dir=root, log=log)
        assert "deleted the pushed" in log.text and "removed the unfinished image" in log.text
    assert info.value.step == "push"
    assert build_containers(client) == []
    assert client.images.list(filters={"label": f"{labels.FINGERPRINT}={ident.fingerprint}"}) == []
    assert all(client.images.list(name=ref) == [] for ref in spec.refs)
    assert docker_registry.tags("goldsmith/it-unpushed") == []


def imported_base(client, rootfs: Path) -> str:
    """The rootfs imported as a base image, by the builder's own import step (once per digest)."""
    from goldsmith_provider.builders.docker.steps import DockerBuildState, import_rootfs
    from goldsmith_provider.engine.fingerprint import sha256_file
    from goldsmith_provider.engine.log import NullLog

    from goldsmith_provider.engine.paths import cache_root

    state = DockerBuildState(name="it", build_id="it", fingerprint="", log=NullLog(), client=client, rootfs=rootfs,
                             source_digest=sha256_file(rootfs), cache_root=cache_root())
    return import_rootfs(state).id


def test_layering_packages_and_updates_over_a_pulled_base(tmp_path, docker_engine, docker_registry, debian_rootfs):
    """An image built on another one pulled from the registry by digest, with the packages and updates
    provisioners (apt over the host network) and the updates provisioner's reboot skipped."""
    client = docker_engine.client()
    root = make_project(tmp_path / "project", script_extra=SCRIPT_EXTRA, git=True)
    base_props = props_for(debian_rootfs, docker_registry, name="it-base", repository=f"{docker_registry.address}/goldsmith/it-base",
                           tags=["1"], config={})
    base_props["provisioners"] = [{"type": "file", "source": "files/motd", "destination": "/etc/motd"}]
    spec, ident = prepare(base_props, root)
    with masked_log(tmp_path, docker_registry, "base") as log:
        base = builder.build(spec, ident, base_dir=root, log=log)
    client.images.remove(base["image_id"], force=True)  # only the registry has it now

    props = props_for(debian_rootfs, docker_registry, name="it-layered", repository=f"{docker_registry.address}/goldsmith/it-layered",
                      source={"type": "image", "ref": base["image_ref"]}, network_mode="host", config={"cmd": ["jq", "--version"]})
    props["provisioners"] = [
        {"type": "packages", "install": ["jq"]},
        {"type": "updates", "security_only": True, "reboot": "always"},
    ]
    spec, ident = prepare(props, root)
    with masked_log(tmp_path, docker_registry, "layered") as log:
        layered = builder.build(spec, ident, base_dir=root, log=log)
        assert f"pulled {base['image_ref']}" in log.text
        assert "reboot skipped in a container" in log.text
    assert client.images.get(base["image_ref"]).id == base["image_id"]  # pulled back by digest: the same image
    assert layered["source_image"] == {"type": "image", "ref": base["image_ref"], "digest": base["image_ref"].split("@")[1]}
    assert any(p.startswith("jq=") for p in layered["packages"])
    assert run_in(client, layered["image_id"]).startswith("jq-")
    assert run_in(client, layered["image_id"], ["cat", "/etc/motd"]) == "goldsmith integration image"

    # Layering by local image id (another DockerImage's `image_id`), never pulled, kept local.
    local = dict(props, name="it-local", repository="goldsmith/it-local", registry=None, network_mode="none",
                 source={"type": "image", "ref": layered["image_id"]}, config={},
                 provisioners=[{"type": "shell", "inline": ["jq -n 1+1 > /two"]}])
    spec, ident = prepare(local, root)
    with masked_log(tmp_path, docker_registry, "local") as log:
        on_top = builder.build(spec, ident, base_dir=root, log=log)
        assert "no registry configured" in log.text
    assert on_top["repo_digests"] == {} and on_top["image_ref"] == on_top["image_id"]
    assert run_in(client, on_top["image_id"], ["cat", "/two"]) == "2"
    assert run_in(client, on_top["image_id"]).startswith("jq-")  # CMD inherited from the source

    for out in (on_top, layered, base):
        builder.delete({**out, "registry": spec_registry(docker_registry) if out["repo_digests"] else None}, log=log)
    assert not docker_registry.has_manifest("goldsmith/it-base", base["image_ref"].split("@")[1])
    assert build_containers(client) == []


def test_communicator_keeps_secrets_off_command_lines_and_inspect(tmp_path, docker_engine, docker_registry, debian_rootfs):
    client = docker_engine.client()
    base = imported_base(client, debian_rootfs)
    container = client.containers.create(base, entrypoint=["/bin/sh", "-c"], command=["sleep 600"], network_mode="none")
    try:
        container.start()
        exec_ids = []
        exec_create = client.api.exec_create

        def recording_exec_create(*args, **kwargs):  # a spy: which execs did the communicator make?
            result = exec_create(*args, **kwargs)
            exec_ids.append(result["Id"])
            return result

        client.api.exec_create = recording_exec_create
        comm = DockerCommunicator(client, container.id)
        with TeeLog("comm", tmp_path / "comm.log", masker=Masker([])) as log:
            result = comm.run('echo "token=$TOKEN mode=$MODE"; ls -A /tmp', log=log, env={"MODE": "plain"},
                              secret_env={"TOKEN": SECRET})
            assert result.output.splitlines() == [f"token={SECRET} mode=plain"]  # the env file is gone already
            assert "token=******** mode=plain" in log.text and SECRET not in log.text
            container.reload()
            inspected = json.dumps(container.attrs) + "".join(json.dumps(client.api.exec_inspect(x)) for x in exec_ids)
            assert "MODE=plain" in inspected  # the exec's arguments were looked at ...
            assert SECRET not in inspected  # ... and the secret is in none of them, nor in the container's config

            comm.put_bytes(b"\x00binary\xffdata", "/root/blob", mode=0o640)
            assert comm.get_bytes("/root/blob") == b"\x00binary\xffdata"
            assert comm.run("stat -c '%a %U' /root/blob", log=log).output == "640 root"
            failed = comm.run("echo out; exit 4", log=log, check=False)
            assert (failed.status, failed.output) == (4, "out")
            with pytest.raises(CommandError, match="timed out"):
                comm.run("sleep 30", log=log, timeout=1)
    finally:
        container.remove(force=True)


KILLED_BUILD = """
import sys
from pathlib import Path
from goldsmith_provider.builders.docker import builder
from goldsmith_provider.engine.log import BuildLog
props = {"name": "it-killed", "source": {"type": "rootfs", "path": sys.argv[1]}, "network_mode": "none",
         "provisioners": [{"type": "shell", "inline": ["echo provisioning", "sleep 120"]}]}
spec, problems = builder.prepare(props, Path("."))
builder.build(spec, builder.identify(spec, Path(".")), base_dir=Path("."), log=BuildLog("killed"))
"""


def test_gc_reaps_the_build_container_of_a_killed_build_only(tmp_path, docker_engine, debian_rootfs, monkeypatch):
    client = docker_engine.client()
    base = imported_base(client, debian_rootfs)
    # A build killed with SIGKILL mid-provisioning: no cleanup ran, its container is left running.
    proc = subprocess.Popen([sys.executable, "-c", KILLED_BUILD, str(debian_rootfs)], cwd=tmp_path,
                            stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    while not any(c.status == "running" for c in build_containers(client)):
        assert proc.poll() is None and time.monotonic() < deadline, proc.stderr.read() if proc.poll() is not None else "timeout"
        time.sleep(0.3)
    time.sleep(1)
    proc.kill()
    proc.wait()
    [killed] = build_containers(client)
    request_cleanup = [killed]
    assert killed.labels[labels.BUILD_PID] == str(proc.pid)
    # An untagged image that build committed would go with it.
    left = killed.commit(conf={"Labels": {labels.BUILD_ID: killed.labels[labels.BUILD_ID]}, "Cmd": ["true"]})
    host = socket.gethostname()
    alive = client.containers.create(base, ["sleep", "600"], name="goldsmith-build-alive-1", network_mode="none",
                                     labels={labels.BUILD_ID: "alive-1", labels.BUILD_PID: str(os.getpid()), labels.BUILD_HOST: host})
    # A container run *from* a goldsmith image inherits its labels (a dead pid too) but is no build container.
    user = client.containers.create(left.id, ["sleep", "600"], name="user-app", network_mode="none")
    try:
        assert user.labels[labels.BUILD_PID] == str(proc.pid)
        found = gc.collect(platforms=["docker"])
        assert sorted((o.kind, o.detail.split()[0]) for o in found) == [
            ("docker-container", killed.name), ("docker-image", "untagged")]
        user.remove(force=True)
        assert gc.reap(found, dry_run=False, say=lambda _: None) == 2
        names = {c.name for c in client.containers.list(all=True)}
        assert killed.name not in names and "goldsmith-build-alive-1" in names
        assert client.images.list(filters={"label": f"{labels.BUILD_ID}={killed.labels[labels.BUILD_ID]}"}) == []
        assert [o.detail.split()[0] for o in gc.collect(platforms=["docker"], older_than=0)] == ["goldsmith-build-alive-1"]
        monkeypatch.setenv("DOCKER_HOST", "unix:///nonexistent/docker.sock")
        assert gc.collect(platforms=["docker"]) == []  # no engine: skipped silently
    finally:
        for c in (alive, user, *request_cleanup):
            try:
                c.remove(force=True)
            except Exception:  # noqa: BLE001 - already removed
                pass


def test_provider_updates_tags_and_pushing_in_place(tmp_path, docker_engine, docker_registry, debian_rootfs):
    """The dynamic provider's methods in process (check, create, diff, update, read, delete): tags and the
    registry change in place; nothing is rebuilt."""
    from goldsmith_provider.dynamic.docker import DockerImageProvider

    client = docker_engine.client()
    provider = DockerImageProvider()
    root = make_project(tmp_path / "project", script_extra=SCRIPT_EXTRA, git=True)
    repo = f"{docker_registry.address}/goldsmith/it-inplace"
    inputs = {"name": "it-inplace", "source": {"type": "rootfs", "path": str(debian_rootfs)}, "repository": repo,
              "provisioners": [{"type": "shell", "inline": ["echo in-place > /etc/inplace"]}], "tags": ["a"],
              "network_mode": "none", "base_dir": str(root)}
    news = provider.check({}, inputs).inputs
    created = provider.create(news)
    state = created.outs
    assert state["repo_digests"] == {} and client.images.get(f"{repo}:a").id == created.id

    registry = {"username": docker_registry.username, "password": docker_registry.password, "insecure": False}
    # A dropped tag stays in the registry (distribution deletes manifests, not tags) until the image goes.
    steps = [({"registry": registry}, ["a"]), ({"registry": registry, "tags": ["b", "c"]}, ["a", "b", "c"]),
             ({"registry": None, "tags": ["b", "c"]}, [])]
    name = "goldsmith/it-inplace"
    for change, pushed in steps:
        news = provider.check(state, {**inputs, **change}).inputs
        diff = provider.diff(created.id, state, news)
        assert diff.changes is True and diff.replaces == [], change
        since = time.time()
        state = provider.update(created.id, state, news).outs
        assert created_containers(client, since) == []
        assert sorted(docker_registry.tags(name)) == pushed
        assert sorted(ref.rsplit(":", 1)[1] for ref in state["refs"]) == news.get("tags", ["a"])
        assert all(client.images.get(ref).id == created.id for ref in state["refs"])
        assert provider.read(created.id, state).id == created.id
    assert client.images.list(name=f"{repo}:a") == []  # dropped tags are untagged locally
    provider.delete(created.id, state)
    assert e_images(client, created.id) == []


def e_images(client, image_id: str) -> list:
    return [i for i in client.images.list(all=True) if i.id == image_id]


# --- the fault matrix: a failure at any step of a build or an adoption leaves nothing -------------------------

DOCKER_CASES = fault_matrix.docker_cases()


def docker_leftovers(client, registry, spec, build_id: str, images_before: set[str]) -> list[str]:
    """What build ``build_id`` left: its container, images it made (tagged or dangling), its tags, its pushes."""
    left = []
    if build_id:  # an adoption logs no build id: it creates no container (build_containers covers it)
        left += [f"container {c.name}" for c in client.containers.list(
            all=True, filters={"label": f"{labels.BUILD_ID}={build_id}"})]
    left += [f"image {i.id[:19]} {i.tags}" for i in client.images.list(all=True) if i.id not in images_before]
    left += [f"tag {ref}" for ref in spec.refs if client.images.list(name=ref)]
    _, repo = spec.repository_name.split("/", 1)
    left += [f"pushed {repo}:{tag}" for tag in registry.tags(repo)]
    return left


@pytest.fixture(scope="module")
def adoptable(docker_engine, debian_rootfs, tmp_path_factory):
    """A local image for the adoption cases to adopt (same fingerprint, no registry): theirs to tag and push."""
    client = docker_engine.client()
    root = tmp_path_factory.mktemp("adoptable")
    props = fault_matrix.docker_props("fm-adoptable", debian_rootfs, "127.0.0.1:1", marker="fault-matrix-adopt")
    props.update(registry=None, repository="goldsmith-fm/adoptable", tags=["base"])
    spec, ident = prepare(props, root)
    log = TeeLog("adoptable")
    outputs = builder.build(spec, ident, base_dir=root, log=log)
    yield outputs["image_id"]
    builder.delete(outputs, log=log)
    assert client.images.list(filters={"label": f"{labels.FINGERPRINT}={ident.fingerprint}"}) == []


@pytest.mark.fault_matrix("docker")
@pytest.mark.parametrize("path,step", DOCKER_CASES, ids=[f"{p}-{fault_matrix.case_id(s)}" for p, s in DOCKER_CASES])
def test_a_failure_at_any_docker_step_leaves_nothing(tmp_path, docker_engine, docker_registry, debian_rootfs,
                                                     monkeypatch, request, path, step):
    client = docker_engine.client()
    root = tmp_path / "project"
    root.mkdir()
    imported_base(client, debian_rootfs)  # the base is a cache, kept: import it before taking the inventory
    adopted = request.getfixturevalue("adoptable") if path == "adopt" else None
    name = f"fm-{path}-{fault_matrix.case_id(step)}"
    props = fault_matrix.docker_props(name, debian_rootfs, docker_registry.address, docker_registry.username,
                                      docker_registry.password, marker="fault-matrix-adopt" if adopted else name)
    spec, ident = prepare(props, root)
    images_before = {i.id for i in client.images.list(all=True)}
    containers_before = {c.id for c in build_containers(client)}
    monkeypatch.setenv("GOLDSMITH_FAIL_STEP", step)
    with masked_log(tmp_path, docker_registry, name) as log:
        with pytest.raises(StepError) as info:
            builder.build(spec, ident, base_dir=root, log=log)
        text = log.text
    assert info.value.step == step
    assert f"step {step!r} failed: injected failure after step {step!r}" in str(info.value)
    assert ("adopting the existing image" in text) == (path == "adopt")
    build_id = re.findall(r"build (\d{14}-[0-9a-f]{8})", text) or [""]
    assert docker_leftovers(client, docker_registry, spec, build_id[0], images_before) == []
    assert [c.name for c in build_containers(client) if c.id not in containers_before] == []
    if adopted:
        assert client.images.get(adopted).id == adopted, "the adopted image is not the build's to remove"
