"""The Docker builder's steps: one side effect each, each recording what it made the moment it makes it,
each cleanup releasing exactly that.

Cleanups run after a success too (the runner's contract), so a step whose product is the artifact (the
committed image, its tags, the pushed manifests) releases only what is still tracked: ``StepFinalize``
untracks them once the whole build has succeeded. The build container is always removed.
"""

from __future__ import annotations

import json
import os
import socket
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ... import __version__
from ...communicators.docker import DockerCommunicator
from ...engine.errors import GoldsmithError
from ...engine.fingerprint import sha256_file
from ...engine.runner import BaseStep
from ...engine.state import BuildState
from ..common.provenance import source_revision
from ..common.steps import MANIFEST_CMD, StepCollectManifest, collect_path_digests, parse_manifest
from . import engine as e
from .config import DebootstrapRootfsSource, DockerImageSpec, ImageSource, RootfsSource, registry_host
from .registry import Credentials, RegistryClient, resolve_credentials, split_repository

# PID 1 of the build container: idles until stopped, and stops at once on SIGTERM.
KEEP_ALIVE = "trap 'exit 0' TERM INT; while :; do sleep 3600 & wait $!; done"
DEFAULT_CMD = ["/bin/sh"]

# Generalize for containers: what a build leaves behind, not what makes a machine unique (the engine gives
# every container its own hostname, machine identity and resolver).
GENERALIZE_SCRIPT = r"""
set -u
command -v apt-get >/dev/null 2>&1 && { apt-get clean; rm -rf /var/lib/apt/lists/*; mkdir -p /var/lib/apt/lists/partial; }
command -v dnf >/dev/null 2>&1 && dnf clean all >/dev/null 2>&1
command -v yum >/dev/null 2>&1 && yum clean all >/dev/null 2>&1
command -v apk >/dev/null 2>&1 && rm -rf /var/cache/apk/*
rm -rf /tmp/* /tmp/.[!.]* /var/tmp/* /var/cache/man/* /var/cache/debconf/*-old /var/lib/dpkg/*-old /root/.cache 2>/dev/null
find /var/log -type f \( -name '*.gz' -o -name '*.[0-9]' -o -name '*.old' \) -delete 2>/dev/null
find /var/log -type f -exec truncate -s 0 {} + 2>/dev/null
rm -f /root/.bash_history /home/*/.bash_history /root/.lesshst /root/.wget-hsts /root/.python_history
exit 0
"""


@dataclass
class DockerBuildState(BuildState):
    spec: DockerImageSpec | None = None
    base_dir: Path = Path(".")
    cache_root: Path = Path(".")
    client: Any = None
    engine_info: dict[str, str] = field(default_factory=dict)
    credentials: Credentials | None = None
    rootfs: Path | None = None
    source_id: str = ""  # the local image the container starts from
    source_digest: str = ""  # repo digest of a pulled image, sha256 of a rootfs tarball, or the image id
    source_config: dict[str, Any] = field(default_factory=dict)
    container: Any = None
    comm: DockerCommunicator | None = None
    packages: list[dict[str, str]] = field(default_factory=list)
    path_digests: dict[str, str] = field(default_factory=dict)  # digest_paths -> sha256, before generalization
    image_id: str = ""
    adopted: bool = False
    retagged: dict[str, str] = field(default_factory=dict)  # ref -> image id it pointed to before ("" if none)
    repo_digests: dict[str, str] = field(default_factory=dict)  # ref -> repo@digest in the registry


# --- the engine and the source --------------------------------------------------------------------------


class StepConnectEngine(BaseStep[DockerBuildState]):
    name = "connect-engine"

    def run(self, state: DockerBuildState) -> None:
        state.client = e.connect(state.spec.docker_host)
        version = state.client.version()
        info = state.client.info()
        state.engine_info = {"version": version.get("Version", "?"), "api": version.get("ApiVersion", "?"),
                             "storage_driver": info.get("Driver", "?")}
        state.log.info(f"engine: Docker {state.engine_info['version']} (API {state.engine_info['api']}, "
                       f"{state.engine_info['storage_driver']}) at "
                       f"{state.spec.docker_host or os.environ.get('DOCKER_HOST') or 'the local socket'}")
        spec = state.spec
        if spec.registry is not None:
            host = registry_host(spec.repository_name)
            state.credentials = resolve_credentials(host, spec.registry.username, spec.registry.password)
            if state.credentials:
                state.log.masker.add(state.credentials.password)
            state.log.info(f"registry: {host} ({'credentials from the spec' if spec.registry.username else 'docker config' if state.credentials else 'anonymous'})")

    def cleanup(self, state: DockerBuildState) -> None:
        if state.client is not None:
            state.client.close()


class StepPrepareRootfs(BaseStep[DockerBuildState]):
    """The base tarball: the spec's own, or a cached debootstrap of the recipe (a cache, never removed)."""

    name = "prepare-rootfs"

    def run(self, state: DockerBuildState) -> None:
        source = state.spec.source
        if isinstance(source, RootfsSource):
            path = Path(source.path) if Path(source.path).is_absolute() else state.base_dir / source.path
            state.rootfs = path.resolve()
        elif isinstance(source, DebootstrapRootfsSource):
            from ...engine.proc import run
            from .rootfs import RootfsRecipe, ensure_rootfs

            def run_step(argv, *, cwd=None, env=None, timeout=None):
                run(argv, log=state.log, cwd=cwd, env=env, timeout=timeout)

            recipe = RootfsRecipe(suite=source.suite, mirror=source.mirror, variant=source.variant,
                                  include=tuple(source.include))
            state.rootfs = ensure_rootfs(recipe, state.cache_root, log=state.log.info, run=run_step)
        else:
            return
        state.source_digest = sha256_file(state.rootfs)
        state.log.info(f"rootfs: {state.rootfs} ({state.source_digest[:19]}…)")


class StepSourceImage(BaseStep[DockerBuildState]):
    """Make the source image present locally: import the rootfs once per digest, or pull the reference."""

    name = "source-image"

    def run(self, state: DockerBuildState) -> None:
        source = state.spec.source
        image = import_rootfs(state) if state.rootfs is not None else pull_source(state, source)
        state.source_id = image.id
        state.source_config = image.attrs.get("Config") or {}
        if not state.source_digest:  # an image: its registry digest when it came from one, else its id
            repo, _ = split_reference(source.ref)
            digests = [d for d in image.attrs.get("RepoDigests") or [] if d.split("@")[0] == repo]
            state.source_digest = digests[0].split("@")[1] if digests else image.id
        state.log.info(f"source: image {image.id[:19]} (digest {state.source_digest[:19]}…)")


def import_rootfs(state: DockerBuildState):
    """The rootfs as a base image, imported once per content digest and kept (a cache, like the tarball)."""
    from ...engine.locks import file_lock

    client, digest = state.client, state.source_digest
    tag = digest.split(":")[1][:16]
    ref = f"{e.ROOTFS_REPOSITORY}:{tag}"
    with file_lock(state.cache_root / "locks" / f"docker-import-{tag}.lock"):  # concurrent builds import once
        # By its own tag: images built on it inherit the digest label, so a label lookup could find them.
        found = e.image_or_none(client, ref)
        if found is not None and (found.labels or {}).get(e.ROOTFS_DIGEST) == digest:
            state.log.info(f"source: rootfs already imported as {ref} ({found.id[:19]})")
            return found
        started = time.monotonic()
        result = client.api.import_image_from_file(str(state.rootfs), repository=e.ROOTFS_REPOSITORY, tag=tag,
                                                   changes=[f"LABEL {e.ROOTFS_DIGEST}={digest}"])
        for line in str(result).splitlines():
            try:
                doc = json.loads(line)
            except ValueError:
                continue
            if isinstance(doc, dict) and doc.get("error"):
                raise GoldsmithError(f"docker import of {state.rootfs} failed: {doc['error']}")
        image = client.images.get(ref)
    state.log.info(f"source: imported {state.rootfs.name} as {ref} in {time.monotonic() - started:.1f}s")
    return image


def split_reference(ref: str) -> tuple[str, str | None]:
    """'repo:tag' -> ('repo', 'tag'); 'repo@sha256:..' -> ('repo', 'sha256:..'); 'repo' -> ('repo', None)."""
    if "@" in ref:
        repo, digest = ref.split("@", 1)
        return repo, digest
    head, _, last = ref.rpartition("/")
    if ":" in last:
        name, tag = last.split(":", 1)
        return (f"{head}/{name}" if head else name), tag
    return ref, None


def pull_source(state: DockerBuildState, source: ImageSource):
    client, ref = state.client, source.ref
    local = e.image_or_none(client, ref)
    if ref.startswith("sha256:"):
        if local is None:
            raise GoldsmithError(f"source image {ref[:19]}… is not in this engine",
                                 hint="an image id only names a local image: build its DockerImage on the same engine")
        return local
    if source.pull == "never" or (source.pull == "missing" and local is not None):
        if local is None:
            raise GoldsmithError(f"source image {ref} is not present locally and source.pull = 'never'")
        return local
    repo, tag = split_reference(ref)
    auth = None
    spec = state.spec
    if spec.registry is not None and state.credentials and registry_host(repo) == registry_host(spec.repository_name):
        auth = state.credentials.auth_config()
    started = time.monotonic()
    try:
        for line in client.api.pull(repo, tag=tag or "latest", stream=True, decode=True, auth_config=auth):
            if "error" in line:
                raise GoldsmithError(line["error"])
    except Exception as exc:  # the stream's error, docker.errors.APIError, a refused connection
        why = getattr(exc, "explanation", None) or str(exc)
        if local is not None:  # pull = always and the registry is unreachable: the local copy will do
            state.log.info(f"source: pull of {ref} failed ({why}); using the local copy {local.id[:19]}")
            return local
        raise GoldsmithError(f"cannot pull the source image {ref}: {why}",
                             hint="is the registry reachable? a base can also be a rootfs tarball (type 'rootfs')") from None
    state.log.info(f"source: pulled {ref} in {time.monotonic() - started:.1f}s")
    return client.images.get(ref)


# --- the build container ----------------------------------------------------------------------------------


class StepCreateContainer(BaseStep[DockerBuildState]):
    """The build container, named and labelled with the build id and its owner, so `goldsmith gc` finds it."""

    name = "create-container"

    def run(self, state: DockerBuildState) -> None:
        labels = {e.BUILD_ID: state.build_id, e.BUILD_PID: str(os.getpid()), e.BUILD_HOST: socket.gethostname()}
        kwargs: dict[str, Any] = {}
        if state.spec.network_mode:
            kwargs["network_mode"] = state.spec.network_mode
        state.container = state.client.containers.create(
            state.source_id, name=e.build_container_name(state.build_id), entrypoint=["/bin/sh", "-c"],
            command=[KEEP_ALIVE], labels=labels, hostname="goldsmith-build", detach=True, **kwargs)
        state.track("container", f"container {state.container.name} ({state.container.id[:12]})")

    def cleanup(self, state: DockerBuildState) -> None:
        if state.container is None:
            return
        from .engine import docker_module

        try:
            state.container.remove(force=True, v=True)
        except docker_module().errors.NotFound:
            pass
        state.release("container")
        state.log.info(f"removed the build container {state.container.name}")


class StepStartContainer(BaseStep[DockerBuildState]):
    name = "start-container"

    def run(self, state: DockerBuildState) -> None:
        state.container.start()
        state.comm = DockerCommunicator(state.client, state.container.id)
        probe = state.comm.run("echo ready", log=state.log, check=False, quiet=True)
        if probe.status != 0:
            raise GoldsmithError(f"the build container cannot run /bin/sh (exit status {probe.status}): {probe.output[-500:]}",
                                 hint="provisioners need a POSIX shell in the image")


class StepCollectPackages(StepCollectManifest):
    """The package manifest (dpkg, rpm or apk); an image without a package database has none."""

    def run(self, state: DockerBuildState) -> None:
        result = state.comm.run(MANIFEST_CMD, log=state.log, quiet=True, check=False)
        if result.status == 3:
            state.packages = []
            state.log.info("manifest: no package database in the image")
            collect_path_digests(state)
            return
        if result.status != 0:
            raise GoldsmithError(f"collecting the package manifest failed (exit status {result.status}): {result.output[-500:]}")
        state.packages = parse_manifest(result.output)
        state.log.info(f"manifest: {len(state.packages)} packages")
        collect_path_digests(state)


class StepGeneralize(BaseStep[DockerBuildState]):
    name = "generalize"

    def run(self, state: DockerBuildState) -> None:
        if not state.spec.generalize:
            state.log.info("generalize: skipped (generalize = false)")
            return
        state.comm.run(GENERALIZE_SCRIPT, log=state.log, quiet=True, timeout=600)
        state.log.info("generalize: apt lists, package caches, logs and /tmp cleaned")


class StepStopContainer(BaseStep[DockerBuildState]):
    """Stop the container, so the commit sees a quiet filesystem (no provisioned daemon still writing)."""

    name = "stop-container"

    def run(self, state: DockerBuildState) -> None:
        started = time.monotonic()
        state.container.stop(timeout=10)
        state.log.info(f"stopped the build container in {time.monotonic() - started:.1f}s")


# --- the image --------------------------------------------------------------------------------------------


def normalize_port(port: str) -> str:
    return port if "/" in port else f"{port}/tcp"


def commit_config(state: DockerBuildState, labels: dict[str, str]) -> dict[str, Any]:
    """The image config, computed in full: the engine merges the *container's* config into whatever a
    commit leaves empty, which would leak the build's keep-alive entrypoint into the image."""
    cfg, base = state.spec.config, state.source_config
    entrypoint = list(cfg.entrypoint) if cfg.entrypoint is not None else list(base.get("Entrypoint") or [])
    if cfg.cmd is not None:
        cmd = list(cfg.cmd)
    elif cfg.entrypoint is not None:
        cmd = []  # as in a Dockerfile: a new ENTRYPOINT resets the inherited CMD
    else:
        cmd = list(base.get("Cmd") or [])
    if not entrypoint and not cmd:
        cmd = list(DEFAULT_CMD)
        state.log.info(f"commit: the image has neither CMD nor ENTRYPOINT; CMD {DEFAULT_CMD}")
    env: dict[str, str] = {}
    for item in base.get("Env") or []:
        key, _, value = item.partition("=")
        env[key] = value
    env.update(cfg.env)
    ports = dict.fromkeys(base.get("ExposedPorts") or {}, {})
    ports.update(dict.fromkeys((normalize_port(p) for p in cfg.expose), {}))
    return {
        "Cmd": cmd,
        "Entrypoint": entrypoint,  # [] and not null: null would be filled from the build container
        "Env": [f"{k}={v}" for k, v in env.items()],
        "ExposedPorts": ports,
        "WorkingDir": cfg.workdir or base.get("WorkingDir") or "",
        "User": cfg.user or base.get("User") or "",
        "Labels": labels,
    }


def source_ref(source: Any) -> str:
    if isinstance(source, ImageSource):
        return source.ref
    if isinstance(source, RootfsSource):
        return Path(source.path).name
    return f"debootstrap:{source.variant}:{source.suite}"


def image_labels(state: DockerBuildState) -> dict[str, str]:
    spec = state.spec
    rev = source_revision(state.base_dir)
    revision = (rev["commit"] + ("-dirty" if rev["dirty"] else "")) if rev else ""
    source = spec.source
    labels = dict(spec.config.labels)
    labels.update({
        e.FINGERPRINT: state.fingerprint,
        e.NAME: spec.name,
        e.VERSION: __version__,
        e.SOURCE_TYPE: source.TYPE,
        e.SOURCE_REF: source_ref(source),
        e.SOURCE_DIGEST: state.source_digest,
        e.REVISION: revision,
        e.PACKAGES: " ".join(f"{p['name']}={p['version']}" for p in state.packages),
        e.PATH_DIGESTS: json.dumps(state.path_digests, sort_keys=True, separators=(",", ":")) if state.path_digests else "",
        e.BUILT_AT: time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        e.BUILD_ID: state.build_id,
        e.BUILD_PID: str(os.getpid()),
        e.BUILD_HOST: socket.gethostname(),
        "org.opencontainers.image.base.digest": state.source_digest,
    })
    if revision:
        labels["org.opencontainers.image.revision"] = revision
    return labels


class StepCommit(BaseStep[DockerBuildState]):
    """The container's filesystem and the image config become the image (one layer over the source)."""

    name = "commit"

    def run(self, state: DockerBuildState) -> None:
        started = time.monotonic()
        conf = commit_config(state, image_labels(state))
        image = state.container.commit(conf=conf, pause=False, author=f"goldsmith {__version__}",
                                       message=f"goldsmith build {state.build_id} of {state.spec.name} "
                                               f"(fingerprint {state.fingerprint[:12]})")
        state.image_id = image.id
        state.track("image", f"image {image.id[:19]}")
        state.log.info(f"commit: image {image.id[:19]} ({image.attrs.get('Size', 0) / 2**20:.0f} MiB) "
                       f"in {time.monotonic() - started:.1f}s")

    def cleanup(self, state: DockerBuildState) -> None:
        if "image" not in state.resources:
            return
        from .engine import docker_module

        try:
            state.client.images.remove(state.image_id, force=True, noprune=True)
        except docker_module().errors.ImageNotFound:
            pass
        state.release("image")
        state.log.info(f"removed the unfinished image {state.image_id[:19]}")


class StepAdoptImage(BaseStep[DockerBuildState]):
    """An image with this fingerprint exists already: it is the result, nothing is built."""

    name = "adopt-image"

    def __init__(self, image_id: str) -> None:
        self.image_id = image_id

    def run(self, state: DockerBuildState) -> None:
        state.image_id = self.image_id
        state.adopted = True


class StepTag(BaseStep[DockerBuildState]):
    """Tag the image with every ref; a ref that pointed elsewhere is moved back if the build fails."""

    name = "tag"

    def run(self, state: DockerBuildState) -> None:
        image = state.client.images.get(state.image_id)
        for ref in state.spec.refs:
            previous = e.image_or_none(state.client, ref)
            if previous is not None and previous.id == image.id:
                continue
            repo, tag = ref.rsplit(":", 1)
            image.tag(repo, tag)
            state.retagged[ref] = previous.id if previous is not None else ""
            state.track(f"tag:{ref}", f"tag {ref}")
        state.log.info(f"tag: {', '.join(state.spec.refs)}")

    def cleanup(self, state: DockerBuildState) -> None:
        for ref, previous in state.retagged.items():
            if f"tag:{ref}" not in state.resources:
                continue
            current = e.image_or_none(state.client, ref)
            if current is not None and current.id == state.image_id:
                if previous:
                    repo, tag = ref.rsplit(":", 1)
                    state.client.images.get(previous).tag(repo, tag)
                else:
                    state.client.images.remove(ref, noprune=True)
            state.release(f"tag:{ref}")


def registry_client(state: DockerBuildState) -> RegistryClient:
    host, _ = split_repository(state.spec.repository_name)
    return RegistryClient(host, state.credentials, insecure=state.spec.registry.insecure)


class StepPush(BaseStep[DockerBuildState]):
    """Push every tag; a manifest this push created is deleted again if the build fails."""

    name = "push"

    def run(self, state: DockerBuildState) -> None:
        spec = state.spec
        if spec.registry is None:
            state.log.info("push: no registry configured; the image stays local")
            return
        started = time.monotonic()
        registry = registry_client(state)
        _, name = split_repository(spec.repository_name)
        auth = state.credentials.auth_config() if state.credentials else None
        for tag in spec.tags:
            before = registry.manifest_digest(name, tag)
            digest = push_tag(state.client, spec.repository_name, tag, auth)
            state.repo_digests[f"{spec.repository_name}:{tag}"] = f"{spec.repository_name}@{digest}"
            if before != digest and f"manifest:{digest}" not in state.resources:
                state.track(f"manifest:{digest}", f"manifest {spec.repository_name}@{digest}")
            if registry.manifest_digest(name, digest) != digest:
                raise GoldsmithError(f"the registry does not list {spec.repository_name}@{digest} after the push")
        state.log.info(f"push: {', '.join(spec.tags)} -> {spec.repository_name} in {time.monotonic() - started:.1f}s")

    def cleanup(self, state: DockerBuildState) -> None:
        pending = [k for k in state.resources if k.startswith("manifest:")]
        if not pending:
            return
        registry = registry_client(state)
        _, name = split_repository(state.spec.repository_name)
        for key in pending:
            registry.delete_manifest(name, key.split(":", 1)[1])
            state.release(key)
            state.log.info(f"deleted the pushed {state.spec.repository_name}@{key.split(':', 1)[1][:19]}")


def push_tag(client, repository: str, tag: str, auth: dict[str, str] | None) -> str:
    digest = ""
    for line in client.api.push(repository, tag=tag, stream=True, decode=True, auth_config=auth):
        if "error" in line:
            raise GoldsmithError(f"push {repository}:{tag}: {line['error']}",
                                 hint="check the registry address and credentials")
        aux = line.get("aux") or {}
        if aux.get("Digest"):
            digest = aux["Digest"]
    if not digest:
        raise GoldsmithError(f"push {repository}:{tag}: the engine reported no digest")
    return digest


class StepFinalize(BaseStep[DockerBuildState]):
    """Record the outputs. The last step of a build: its cleanup, the first to run, stops tracking the image,
    its tags and its pushed manifests once the build has succeeded, so no earlier cleanup removes them; after
    a failure (even one right after this step) they stay tracked and are undone."""

    name = "finalize"

    def run(self, state: DockerBuildState) -> None:
        image = state.client.images.get(state.image_id)
        state.outputs["image"] = image.attrs

    def cleanup(self, state: DockerBuildState) -> None:
        if state.failed:
            return
        for key in [k for k in state.resources if k == "image" or k.startswith(("tag:", "manifest:"))]:
            state.release(key)
