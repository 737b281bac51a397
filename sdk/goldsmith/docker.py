"""The DockerImage resource: a golden container image, provisioned over `docker exec`, committed, tagged and pushed."""

from __future__ import annotations

from typing import Any, Optional

import pulumi
import pulumi.dynamic
from goldsmith_provider.builders.docker.config import DockerImageSpec
from goldsmith_provider.dynamic.docker import DockerImageProvider

from ._props import resource_props

OUTPUTS = ("image_id", "image_ref", "refs", "repo_digests", "pushed_tags", "size", "fingerprint", "input_digests", "rebuild_reasons",
           "packages", "package_count", "path_digests", "source_image", "provenance", "timings", "adopted", "build_log", "engine")


class DockerImage(pulumi.dynamic.Resource, module="goldsmith", name="DockerImage"):
    """Builds when its fingerprint changes; ``pulumi preview --diff`` shows ``rebuild_reasons``.

    ``image_ref`` is what consumers should run: ``repository@sha256:…`` once pushed (immutable), else the
    local image id. ``repo_digests`` maps every pushed ``repository:tag`` to its ``repository@digest``.
    """

    image_id: pulumi.Output[str]
    image_ref: pulumi.Output[str]
    repository: pulumi.Output[str]
    refs: pulumi.Output[list]
    repo_digests: pulumi.Output[dict]
    pushed_tags: pulumi.Output[list]
    size: pulumi.Output[int]
    fingerprint: pulumi.Output[str]
    input_digests: pulumi.Output[dict]
    rebuild_reasons: pulumi.Output[list]
    packages: pulumi.Output[list]
    package_count: pulumi.Output[int]
    path_digests: pulumi.Output[dict]
    source_image: pulumi.Output[dict]
    provenance: pulumi.Output[dict]
    timings: pulumi.Output[dict]
    adopted: pulumi.Output[bool]
    build_log: pulumi.Output[str]
    engine: pulumi.Output[dict]

    def __init__(self, resource_name: str, args: DockerImageSpec | dict[str, Any],
                 opts: Optional[pulumi.ResourceOptions] = None) -> None:
        # The registry settings are echoed into the outputs (delete needs the credentials): keep them secret.
        opts = pulumi.ResourceOptions.merge(opts, pulumi.ResourceOptions(additional_secret_outputs=["registry"]))
        super().__init__(DockerImageProvider(), resource_name, resource_props(args, OUTPUTS), opts)
