"""The Docker builder's settings table: sources, image config, registry. Frozen, typed, validated up front.

No docker SDK here: parsing and fingerprinting a spec must not need an engine.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import ClassVar, Literal, Union

from ...artifacts.fetch import url_problem
from ...engine.schema import Context, setting
from ...provisioners import Provisioner
from ...vault.refs import VaultSettings
from ..common.spec import DIGEST_PATHS_DOC, absolute_paths_problem, name_problem

# docker/distribution's reference grammar, in parts.
_HOST = r"(?:[a-zA-Z0-9](?:[a-zA-Z0-9-]*[a-zA-Z0-9])?(?:\.[a-zA-Z0-9](?:[a-zA-Z0-9-]*[a-zA-Z0-9])?)*|\[[0-9a-fA-F:]+\])(?::[0-9]+)?"
_COMPONENT = r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*"
_PATH = rf"{_COMPONENT}(?:/{_COMPONENT})*"
TAG_RE = re.compile(r"^[\w][\w.-]{0,127}$")
DIGEST_RE = re.compile(r"^sha256:[0-9a-f]{64}$")
REPOSITORY_RE = re.compile(rf"^(?:{_HOST}/)?{_PATH}$")
REFERENCE_RE = re.compile(rf"^(?:{_HOST}/)?{_PATH}(?::[\w][\w.-]{{0,127}})?(?:@sha256:[0-9a-f]{{64}})?$")
EXPOSE_RE = re.compile(r"^[0-9]{1,5}(?:/(?:tcp|udp|sctp))?$")
ENV_NAME_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
PACKAGE_RE = re.compile(r"^[a-z0-9][a-z0-9+.-]+$")
RESERVED_LABEL_PREFIX = "goldsmith."


def registry_host(repository: str) -> str | None:
    """The registry a repository lives in (``127.0.0.1:5000/team/app`` -> ``127.0.0.1:5000``), None for
    Docker Hub style names; the first component names a host when it has a '.' or ':' or is localhost."""
    first, sep, _rest = repository.partition("/")
    if sep and ("." in first or ":" in first or first == "localhost"):
        return first
    return None


def reference_problem(ref: str) -> str | None:
    if DIGEST_RE.match(ref):
        return None  # a local image id (layering on an image built earlier)
    if not REFERENCE_RE.match(ref):
        return f"is not an image reference such as 'debian:bookworm', 'host:5000/team/app@sha256:<hex>' or an image id 'sha256:<hex>'; got {ref!r}"
    return None


@dataclass(frozen=True)
class ImageSource:
    """An image reference, or the id of an image built earlier by goldsmith (layering)."""

    TYPE: ClassVar[str] = "image"
    ref: str = setting(doc="'debian:bookworm', 'registry:5000/team/base@sha256:<hex>' or a local image id "
                           "'sha256:<hex>' (e.g. another DockerImage's `image_id`). The reference as written is its "
                           "identity: pin a digest for reproducible fingerprints.", check=reference_problem)
    pull: Literal["missing", "always", "never"] = setting(
        "missing", doc="Pull when the image is not present locally (missing), before every build (always: falls "
                       "back to the local copy when the registry is unreachable), or never.", identity=False)


@dataclass(frozen=True)
class RootfsSource:
    """A root filesystem tarball imported as the base layer (`docker import`)."""

    TYPE: ClassVar[str] = "rootfs"
    path: str = setting(doc="Tarball of a root filesystem (relative to the project); its content digest is its "
                            "identity. Imported once per digest and kept as goldsmith-base/rootfs:<digest>.",
                        local_path="file")


@dataclass(frozen=True)
class DebootstrapRootfsSource:
    """A Debian root filesystem made offline with debootstrap from the apt mirror, cached by recipe."""

    TYPE: ClassVar[str] = "debootstrap"
    suite: str = setting("bookworm", doc="Debian suite.")
    mirror: str = setting("http://deb.debian.org/debian", doc="Apt mirror used by debootstrap and the image.")
    variant: Literal["minbase", "buildd"] = setting("minbase", doc="debootstrap variant.")
    include: list[str] = setting([], doc="Extra packages in the base.")

    def validate(self, ctx: Context, path: str) -> None:
        if problem := url_problem(self.mirror):
            ctx.error(f"{path}.mirror", problem)
        elif not self.mirror.startswith(("http://", "https://")):
            ctx.error(f"{path}.mirror", "must be an http(s) apt mirror")
        if not re.match(r"^[a-z][a-z0-9.-]*$", self.suite):
            ctx.error(f"{path}.suite", f"is not a Debian suite name (e.g. bookworm): {self.suite!r}")
        for i, name in enumerate(self.include):
            if not PACKAGE_RE.match(name):
                ctx.error(f"{path}.include[{i}]", f"is not a Debian package name: {name!r}")


DockerSource = Union[ImageSource, RootfsSource, DebootstrapRootfsSource]


@dataclass(frozen=True)
class ImageConfig:
    """The committed image's configuration (part of the image, so part of its identity)."""

    cmd: list[str] | None = setting(None, doc="CMD (exec form). Unset: the source's CMD, or none when `entrypoint` "
                                             "is set (as a Dockerfile's ENTRYPOINT resets it); ['/bin/sh'] when the "
                                             "image would have neither.")
    entrypoint: list[str] | None = setting(None, doc="ENTRYPOINT (exec form). Unset: the source's; [] clears it.")
    env: dict[str, str] = setting({}, doc="ENV, over the source's.")
    workdir: str = setting("", doc="WORKDIR (absolute). Unset: the source's.")
    user: str = setting("", doc="USER the image runs as ('app', '1000:1000'). Unset: the source's. Builds always run as root.")
    expose: list[str] = setting([], doc="EXPOSE: '8080', '8080/tcp', '53/udp'. Added to the source's.")
    labels: dict[str, str] = setting({}, doc="Image labels, over the source's. The goldsmith.* keys are reserved.")

    def validate(self, ctx: Context, path: str) -> None:
        if self.cmd == [] and not self.entrypoint:
            ctx.error(f"{path}.cmd", "an empty CMD needs an `entrypoint`: the image would have nothing to run")
        for key in self.env:
            if not ENV_NAME_RE.match(key):
                ctx.error(f"{path}.env.{key}", "is not a valid environment variable name")
        if self.workdir and not self.workdir.startswith("/"):
            ctx.error(f"{path}.workdir", f"must be an absolute path, got {self.workdir!r}")
        if self.user and not re.match(r"^[A-Za-z0-9_][A-Za-z0-9_.-]*(?::[A-Za-z0-9_][A-Za-z0-9_.-]*)?$", self.user):
            ctx.error(f"{path}.user", f"must be 'user', 'uid' or 'user:group', got {self.user!r}")
        for i, port in enumerate(self.expose):
            if not EXPOSE_RE.match(port) or not 0 < int(port.split("/")[0]) < 65536:
                ctx.error(f"{path}.expose[{i}]", f"must be a port such as '8080' or '53/udp', got {port!r}")
        for key in self.labels:
            if key.startswith(RESERVED_LABEL_PREFIX):
                ctx.error(f"{path}.labels.{key}", f"the {RESERVED_LABEL_PREFIX}* labels are set by goldsmith")


@dataclass(frozen=True)
class RegistrySettings:
    """Push to the registry named by `repository`. Credentials: these fields, else the docker config
    (``$DOCKER_CONFIG/config.json`` or ``~/.docker/config.json``), else anonymous."""

    username: str = setting("", doc="Registry user.", identity=False)
    password: str = setting("", doc="Registry password or token.", secret=True)
    insecure: bool = setting(False, doc="Plain http (loopback registries such as 127.0.0.1:5000 always are).", identity=False)

    def validate(self, ctx: Context, path: str) -> None:
        if bool(self.username) != bool(self.password):
            ctx.error(path, "set both `username` and `password`, or neither (to use the docker config)")


@dataclass(frozen=True)
class DockerImageSpec:
    """A golden container image: a container provisioned over `docker exec` and committed."""

    name: str = setting(doc="Image name, shown in logs and labels.", identity=False, check=name_problem)
    source: DockerSource = setting(doc="Where the build starts: image, rootfs or debootstrap.")
    provisioners: list[Provisioner] = setting([], doc="Steps that shape the image, in order (the same list as for VMs).")
    config: ImageConfig = setting(ImageConfig(), doc="CMD, ENTRYPOINT, ENV, WORKDIR, USER, EXPOSE and labels of the image.")
    repository: str = setting("", doc="Repository the image is tagged in: 'goldsmith/<name>' by default, "
                                      "'host:port/team/app' to push to a registry.", identity=False)
    tags: list[str] = setting(["latest"], doc="Tags in `repository` (changed in place: new tags are pushed).", identity=False)
    registry: RegistrySettings | None = setting(None, doc="Push every tag to the registry named by `repository`.", identity=False)
    generalize: bool = setting(True, doc="Remove apt lists, package caches, logs and /tmp before the commit.")
    network_mode: str = setting("", doc="Network of the build container: '' (the engine's default bridge), "
                                        "'host' or 'none'.", identity=False)
    docker_host: str = setting("", doc="Engine address ('unix:///run/docker.sock', 'tcp://host:2376'); "
                                       "default: $DOCKER_HOST or the local socket.", identity=False)
    digest_paths: list[str] = setting([], doc=DIGEST_PATHS_DOC, identity=False, check=absolute_paths_problem)
    labels: dict[str, str] = setting({}, doc="Resource metadata recorded in the outputs (changes update in place); "
                                             "image labels are `config.labels`.", identity=False)
    description: str = setting("", doc="Free text recorded in the outputs.", identity=False)
    vault: VaultSettings | None = setting(None, doc="Vault connection for the `VaultSecret` references of the provisioners "
                                                    "(read at build time; never part of the fingerprint).", identity=False)
    keep_on_error: bool = setting(False, doc="Leave the build container after a failure, for debugging.", identity=False)

    def validate(self, ctx: Context, path: str) -> None:
        def at(key: str) -> str:
            return f"{path}.{key}" if path else key

        repository = self.repository_name
        if not REPOSITORY_RE.match(repository):
            ctx.error(at("repository"), f"is not a repository name such as 'team/app' or '127.0.0.1:5000/team/app': {repository!r}")
        elif self.registry is not None and registry_host(repository) is None:
            ctx.error(at("repository"), f"must start with the registry host to push (e.g. '127.0.0.1:5000/{repository}')")
        if not self.tags:
            ctx.error(at("tags"), "needs at least one tag")
        for i, tag in enumerate(self.tags):
            if not TAG_RE.match(tag):
                ctx.error(at(f"tags[{i}]"), f"is not a tag (letters, digits, '_', '.', '-'; at most 128): {tag!r}")
        if len(set(self.tags)) != len(self.tags):
            ctx.error(at("tags"), "lists a tag twice")
        if self.network_mode not in ("", "bridge", "host", "none") and not re.match(r"^[\w][\w.-]*$", self.network_mode):
            ctx.error(at("network_mode"), f"must be '', 'bridge', 'host', 'none' or a network name, got {self.network_mode!r}")
        if self.docker_host and not re.match(r"^(unix|tcp|ssh|npipe)://", self.docker_host):
            ctx.error(at("docker_host"), f"must be a unix://, tcp:// or ssh:// address, got {self.docker_host!r}")
        if isinstance(self.source, ImageSource) and (own := self.own_reference(self.source.ref)):
            ctx.error(at("source.ref"), f"is this image's own tag {own}: an image cannot start from itself (each build "
                      "would start from the previous one and never converge); layer on another image's `image_id` "
                      "or a pinned digest")

    def own_reference(self, ref: str) -> str | None:
        """The tag of this image that ``ref`` names ('repo' alone means 'repo:latest'), or None."""
        if "@" in ref:
            return None  # a digest pins content, not the moving tag
        head, sep, tag = ref.rpartition(":")
        repo, tag = (head, tag) if sep and "/" not in tag else (ref, "latest")
        if repo.removeprefix("docker.io/") == self.repository_name.removeprefix("docker.io/") and tag in self.tags:
            return f"{self.repository_name}:{tag}"
        return None

    @property
    def repository_name(self) -> str:
        return self.repository or f"goldsmith/{self.name}"

    @property
    def refs(self) -> list[str]:
        return [f"{self.repository_name}:{tag}" for tag in self.tags]
