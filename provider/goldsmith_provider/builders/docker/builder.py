"""The Docker builder: validate (no side effects), list the steps, run them; and the image's lifecycle after
the build (adopt, retag, verify, delete).

A build starts a container from the source image, runs the provisioners in it over ``docker exec`` (the same
provisioner list as a VM build), generalizes it, commits it with the image config and goldsmith's labels, tags
it and pushes every tag. The build container is removed whatever happens; a failed build leaves no image, no
tag and no pushed manifest behind.
"""

from __future__ import annotations

import json

import time
from pathlib import Path
from typing import Any

from ...engine import schema
from ...engine.errors import GoldsmithError
from ...engine.log import BuildLog
from ...engine.paths import cache_root
from ...engine.runner import run_steps
from ...engine.state import new_build_id
from ...provisioners import ProvisionContext
from ..common.identity import Identity, compute_identity
from ..common.steps import StepResolveSecrets, provision_steps
from . import engine as e
from . import steps as s
from .config import DockerImageSpec
from .registry import RegistryClient, resolve_credentials, split_repository

BUILDER = "docker"
BUILDER_VERSION = 1  # bump with rootfs.ROOTFS_FORMAT_VERSION or the commit procedure: rebuilds every image


def prepare(props: dict[str, Any], base_dir: Path) -> tuple[DockerImageSpec | None, list]:
    """Parse and validate: every problem at once, each with its property path; no side effects."""
    return schema.prepare(DockerImageSpec, props, base_dir)


def identify(spec: DockerImageSpec, base_dir: Path) -> Identity:
    return compute_identity(spec, builder=BUILDER, builder_version=BUILDER_VERSION, base_dir=base_dir)


def build_steps(spec: DockerImageSpec) -> list:
    def provision_context(state: s.DockerBuildState) -> ProvisionContext:
        return ProvisionContext(log=state.log, base_dir=state.base_dir, cache_root=state.cache_root,
                                reboot=lambda: state.log.info("reboot skipped in a container"))

    return [
        StepResolveSecrets(),
        s.StepConnectEngine(),
        s.StepPrepareRootfs(),
        s.StepSourceImage(),
        s.StepCreateContainer(),
        s.StepStartContainer(),
        *provision_steps(spec.provisioners, provision_context),
        s.StepCollectPackages(),
        s.StepGeneralize(),
        s.StepStopContainer(),
        s.StepCommit(),
        s.StepTag(),
        s.StepPush(),
        s.StepFinalize(),
    ]


def adopt_steps(image_id: str) -> list:
    """An image with the fingerprint exists: only tag and push it."""
    return [s.StepConnectEngine(), s.StepAdoptImage(image_id), s.StepTag(), s.StepPush(), s.StepFinalize()]


def step_names(spec: DockerImageSpec, *, adopt: bool = False) -> list[str]:
    """The names of the steps a build of ``spec`` runs, in order (``adopt``: when an image with its fingerprint
    exists): the fault-injection points of GOLDSMITH_FAIL_STEP and what the fault matrix (tests/fault_matrix.py)
    fails one by one."""
    return [step.name for step in (adopt_steps("") if adopt else build_steps(spec))]


def new_state(spec: DockerImageSpec, fingerprint: str, base_dir: Path, log: BuildLog) -> s.DockerBuildState:
    return s.DockerBuildState(name=spec.name, build_id=new_build_id(), fingerprint=fingerprint, log=log, spec=spec,
                              base_dir=base_dir, cache_root=cache_root())


def build(spec: DockerImageSpec, ident: Identity, *, base_dir: Path, log: BuildLog) -> dict[str, Any]:
    """Build (or adopt) the image, tag and push it; leaves nothing behind if it fails. Returns the outputs."""
    started = time.monotonic()
    state = new_state(spec, ident.fingerprint, base_dir, log)
    existing = find_existing(spec, ident, log)
    if existing:
        run_steps(adopt_steps(existing), state, keep_on_error=spec.keep_on_error)
    else:
        log.info(f"build {state.build_id}: fingerprint {ident.short}, {len(spec.provisioners)} provisioner(s)")
        run_steps(build_steps(spec), state, keep_on_error=spec.keep_on_error)
    timings = {
        "provision_s": round(sum(v for k, v in state.timings.items() if k.startswith("provision[")), 1),
        "commit_s": round(sum(state.timings.get(k, 0) for k in ("generalize", "stop-container", "commit")), 1),
        "push_s": round(state.timings.get("push", 0), 1),
        "total_s": round(time.monotonic() - started, 1),
    }
    log.info(f"build {state.build_id}: {'adopted' if existing else 'done'} in {timings['total_s']:.1f}s ({timings})")
    outputs = outputs_of(spec, state.outputs["image"], repo_digests=state.repo_digests, timings=timings,
                         adopted=state.adopted)
    outputs["engine"] = state.engine_info
    return outputs


def find_existing(spec: DockerImageSpec, ident: Identity, log: BuildLog) -> str | None:
    """Adoption: a local image labelled with this fingerprint is the result already; no build is needed."""
    client = e.connect(spec.docker_host)
    try:
        found = e.find_by_label(client, e.FINGERPRINT, ident.fingerprint)
    finally:
        client.close()
    if not found:
        return None
    image = found[0]
    log.info(f"adopting the existing image {image.id[:19]} with fingerprint {ident.short} "
             f"({', '.join(image.tags) or 'untagged'}): no build needed")
    return image.id


def outputs_of(spec: DockerImageSpec, attrs: dict[str, Any], *, repo_digests: dict[str, str],
               timings: dict[str, Any], adopted: bool) -> dict[str, Any]:
    labels = (attrs.get("Config") or {}).get("Labels") or {}
    packages = labels.get(e.PACKAGES, "").split()
    pinned = [repo_digests[ref] for ref in spec.refs if ref in repo_digests]
    return {
        "image_id": attrs["Id"],
        "image_ref": pinned[0] if pinned else attrs["Id"],
        "repository": spec.repository_name,
        "refs": spec.refs,
        "repo_digests": repo_digests,
        "pushed_tags": sorted(ref.rsplit(":", 1)[1] for ref in repo_digests),  # update_tags accumulates them
        "size": attrs.get("Size", 0),
        "fingerprint": labels.get(e.FINGERPRINT, ""),
        "packages": packages,
        "package_count": len(packages),
        "path_digests": json.loads(labels[e.PATH_DIGESTS]) if labels.get(e.PATH_DIGESTS) else {},
        "source_image": {"type": labels.get(e.SOURCE_TYPE, ""), "ref": labels.get(e.SOURCE_REF, ""),
                         "digest": labels.get(e.SOURCE_DIGEST, "")},
        "provenance": {
            "goldsmith_version": labels.get(e.VERSION, ""),
            "builder": BUILDER,
            "build_id": labels.get(e.BUILD_ID, ""),
            "built_at": labels.get(e.BUILT_AT, ""),
            "build_host": labels.get(e.BUILD_HOST, ""),
            "source_revision": labels.get(e.REVISION, ""),
        },
        "timings": timings,
        "adopted": adopted,
    }


# --- after the build ---------------------------------------------------------------------------------------


def _registry(outputs: dict[str, Any]) -> tuple[RegistryClient, str] | None:
    settings = outputs.get("registry")
    if not settings or not outputs.get("repo_digests"):
        return None
    host, name = split_repository(outputs["repository"])
    creds = resolve_credentials(host, settings.get("username") or "", settings.get("password") or "")
    return RegistryClient(host, creds, insecure=bool(settings.get("insecure"))), name


def read(outputs: dict[str, Any]) -> dict[str, Any] | None:
    """Refresh: the outputs if the image, its tags and its pushed manifests all still exist, else None."""
    client = e.connect(outputs.get("docker_host") or "")
    try:
        image = e.image_or_none(client, outputs.get("image_id", ""))
        if image is None:
            return None
        for ref in outputs.get("refs") or []:
            current = e.image_or_none(client, ref)
            if current is None or current.id != image.id:
                return None
        size = image.attrs.get("Size", 0)
    finally:
        client.close()
    remote = _registry(outputs)
    if remote is not None:
        registry, name = remote
        for pinned in set(outputs["repo_digests"].values()):
            digest = pinned.split("@", 1)[1]
            if registry.manifest_digest(name, digest) != digest:
                return None
    return {**outputs, "size": size}


def update_tags(outputs: dict[str, Any], spec: DockerImageSpec, *, log: BuildLog) -> dict[str, Any]:
    """In-place change of tags or registry settings: tag and push what is new, untag what was dropped.

    A registry cannot delete one tag of a manifest that other tags still name (distribution 2.x deletes by
    digest only), so a dropped tag stays in the registry until the image is deleted.
    """
    if outputs.get("registry") and spec.registry is None:
        delete_pushed(outputs, log=log)  # no longer pushed: what this image put in the registry goes
    state = new_state(spec, outputs["fingerprint"], Path(outputs.get("base_dir") or "."), log)
    run_steps(adopt_steps(outputs["image_id"]), state)
    dropped = [ref for ref in outputs.get("refs") or [] if ref not in spec.refs]
    if dropped:
        client = e.connect(spec.docker_host)
        try:
            for ref in dropped:
                current = e.image_or_none(client, ref)
                if current is not None and current.id == outputs["image_id"]:
                    client.images.remove(ref, noprune=True)
                    log.info(f"untagged {ref}")
        finally:
            client.close()
        if outputs.get("repo_digests") and spec.registry is not None:
            log.info(f"the registry keeps {', '.join(dropped)} until the image is deleted")
    fresh = outputs_of(spec, state.outputs["image"], repo_digests=state.repo_digests, timings=outputs.get("timings", {}),
                       adopted=outputs.get("adopted", False))
    if spec.registry is not None:  # a tag once pushed stays in the registry: delete must know it is ours
        fresh["pushed_tags"] = sorted(set(outputs.get("pushed_tags") or []) | set(fresh["pushed_tags"]))
    return {k: fresh[k] for k in ("refs", "repo_digests", "pushed_tags", "image_ref", "repository")}


def needs_retag(outputs: dict[str, Any], spec: DockerImageSpec) -> bool:
    """Whether an in-place update must touch the engine or the registry (tags or pushing changed)."""
    return (outputs.get("refs") or []) != spec.refs or bool(outputs.get("registry")) != (spec.registry is not None)


def update_metadata(outputs: dict[str, Any], spec: DockerImageSpec) -> None:
    """Labels and description live in the outputs only: nothing to rewrite."""
    return None


def delete_pushed(outputs: dict[str, Any], *, log: BuildLog) -> None:
    """Delete this image's manifests from the registry, unless a tag it does not own still names one."""
    remote = _registry(outputs)
    if remote is None:
        return
    registry, name = remote
    ours = {ref.rsplit(":", 1)[1] for ref in outputs.get("refs") or []} | set(outputs.get("pushed_tags") or [])
    for pinned in sorted(set(outputs["repo_digests"].values())):
        digest = pinned.split("@", 1)[1]
        shared = [t for t in registry.tags(name) if t not in ours and registry.manifest_digest(name, t) == digest]
        if shared:
            log.info(f"delete: keeping {pinned}: also tagged {', '.join(shared)}")
        elif registry.delete_manifest(name, digest):
            log.info(f"delete: deleted {pinned} from the registry")
        else:
            log.info(f"delete: {pinned} was already gone from the registry")


def delete(outputs: dict[str, Any], *, keep_previous: int = 0, log: BuildLog) -> None:
    """Delete the pushed manifests and the local image, unless something else still names them.

    Registry: a manifest is deleted by digest unless a tag this image does not own points at it. Local:
    each of this image's tags is removed if it still points at this image (a newer image may have taken the
    tag over), then the image itself if no tag is left on it. (``keep_previous`` is the QEMU builder's
    retention; container images are kept by tags, not by count.)
    """
    delete_pushed(outputs, log=log)
    image_id = outputs.get("image_id", "")
    client = e.connect(outputs.get("docker_host") or "")
    try:
        untagged = []
        for ref in outputs.get("refs") or []:
            current = e.image_or_none(client, ref)
            if current is not None and current.id == image_id:
                _remove_image(client, ref)
                untagged.append(ref)
        image = e.image_or_none(client, image_id)
        if image is not None and image.tags:
            log.info(f"delete: keeping {image_id[:19]}: still tagged {', '.join(image.tags)}")
            return
        if image is not None:
            _remove_image(client, image_id)
        log.info(f"delete: removed {image_id[:19]}" + (f" and its tags {', '.join(untagged)}" if untagged else
                                                       " (no tag named it any more)"))
    finally:
        client.close()


def _remove_image(client, ref: str) -> None:
    docker = e.docker_module()
    try:
        client.images.remove(ref, noprune=True)  # only what is ours: never an untagged parent
    except docker.errors.ImageNotFound:
        pass
    except docker.errors.APIError as exc:
        raise GoldsmithError(f"cannot remove {ref}: {exc.explanation or exc}",
                             hint="a container still uses the image: remove it first") from None


__all__ = ["prepare", "identify", "build", "read", "delete", "delete_pushed", "update_metadata", "update_tags",
           "needs_retag"]
