"""The Docker engine as goldsmith uses it: one place that imports the docker SDK (lazily), connects, and knows
the labels and names that tie images and build containers to their build."""

from __future__ import annotations

import os
import socket
from typing import Any

from ...engine.errors import GoldsmithError

API_TIMEOUT_S = 600  # commit, import and push of big images take minutes

# Labels goldsmith puts on every image it commits (the goldsmith.* keys are reserved in the spec).
FINGERPRINT = "goldsmith.fingerprint"
NAME = "goldsmith.name"
VERSION = "goldsmith.version"
SOURCE_TYPE = "goldsmith.source.type"
SOURCE_REF = "goldsmith.source.ref"
SOURCE_DIGEST = "goldsmith.source.digest"
REVISION = "goldsmith.revision"
PACKAGES = "goldsmith.packages"
PATH_DIGESTS = "goldsmith.path-digests"  # JSON {path: digest} of digest_paths
BUILT_AT = "goldsmith.built-at"
# On the build container (and, since a commit merges the container's labels, on the image as provenance).
BUILD_ID = "goldsmith.build-id"
BUILD_PID = "goldsmith.build-pid"
BUILD_HOST = "goldsmith.build-host"
# On an imported rootfs base: the tarball's digest, so it is imported once.
ROOTFS_DIGEST = "goldsmith.rootfs.digest"
ROOTFS_REPOSITORY = "goldsmith-base/rootfs"

CONTAINER_PREFIX = "goldsmith-build-"


class EngineUnreachable(GoldsmithError):
    """No Docker engine answers at the configured address."""


def docker_module():
    try:
        import docker
    except ImportError as exc:  # pragma: no cover - the docker extra is missing
        raise GoldsmithError("the docker SDK is not installed", hint="pip install 'goldsmith[docker]'") from exc
    return docker


def connect(docker_host: str = "", *, timeout: float = API_TIMEOUT_S):
    """A client for ``docker_host`` (default: $DOCKER_HOST, else the local socket), checked with a ping."""
    docker = docker_module()
    where = docker_host or os.environ.get("DOCKER_HOST") or "unix:///var/run/docker.sock"
    try:
        client = docker.DockerClient(base_url=where, timeout=timeout) if docker_host else docker.from_env(timeout=timeout)
        client.ping()
    except (docker.errors.DockerException, OSError, socket.error) as exc:
        raise EngineUnreachable(f"no Docker engine answers at {where}: {exc}",
                                hint="start dockerd or set DOCKER_HOST / docker_host to a running engine") from exc
    return client


def build_container_name(build_id: str) -> str:
    return CONTAINER_PREFIX + build_id


def image_or_none(client, ref: str):
    docker = docker_module()
    try:
        return client.images.get(ref)
    except docker.errors.ImageNotFound:
        return None


def find_by_label(client, key: str, value: str) -> list[Any]:
    """Local images carrying ``key=value``, newest first."""
    images = client.images.list(filters={"label": f"{key}={value}"})
    return sorted(images, key=lambda i: i.attrs.get("Created", ""), reverse=True)


def build_orphans(older_than: float | None, *, docker_host: str = "") -> list[tuple[str, str, str, Any]]:
    """What dead builds left on the engine, as (kind, id, detail, remove) tuples.

    A build container is an orphan when its owner process (on this host) is gone, or, with ``older_than``, when
    it is older than that. Only a container named ``goldsmith-build-<its goldsmith.build-id>`` counts:
    containers run *from* a goldsmith image inherit its labels, but never that name. With an orphaned
    container go the untagged images its build committed (killed between the commit and the tag).
    """
    import time
    from datetime import datetime

    from ...gc import _pid_alive  # the owner test the QEMU reaper uses

    client = connect(docker_host, timeout=10)
    here = socket.gethostname()
    found: list[tuple[str, str, str, Any]] = []
    for container in client.containers.list(all=True, filters={"label": BUILD_ID}):
        labels = container.labels or {}
        build_id = labels.get(BUILD_ID, "")
        if container.name != build_container_name(build_id):
            continue
        pid = int(labels.get(BUILD_PID, "0") or 0)
        created = container.attrs.get("Created", "")
        try:
            age = time.time() - datetime.fromisoformat(created[:26].rstrip("Z") + "+00:00").timestamp()
        except ValueError:
            age = 0.0
        if labels.get(BUILD_HOST) == here and not _pid_alive(pid):
            why = f"owner pid {pid} is gone"
        elif older_than is not None and age > older_than:
            why = f"older than {older_than:.0f}s"
        else:
            continue
        found.append(("docker-container", container.id[:12], f"{container.name} ({why})",
                      lambda c=container: c.remove(force=True, v=True)))
        for image in client.images.list(filters={"label": f"{BUILD_ID}={build_id}", "dangling": True}):
            found.append(("docker-image", image.id[:19], f"untagged image of build {build_id}",
                          lambda i=image: client.images.remove(i.id, force=True, noprune=True)))
    return found
