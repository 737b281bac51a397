"""The DockerImage resource: a golden container image, provisioned over `docker exec`, committed, tagged and pushed."""

from __future__ import annotations

from typing import Any, Optional

import pulumi
from goldsmith_provider.builders.docker.config import DockerImageSpec
from goldsmith_provider.dynamic.docker import DockerImageProvider

from ._props import ImageResource, resource_props


class DockerImage(ImageResource, module="goldsmith", name="DockerImage"):
    """Builds when its fingerprint changes; ``pulumi preview --diff`` shows ``rebuild_reasons``.

    ``image_ref`` is what consumers should run: ``repository@sha256:…`` once pushed (immutable), else the
    local image id. ``repo_digests`` maps every pushed ``repository:tag`` to its ``repository@digest``.
    """

    image_ref: pulumi.Output[str]
    repository: pulumi.Output[str]
    refs: pulumi.Output[list]
    repo_digests: pulumi.Output[dict]
    pushed_tags: pulumi.Output[list]
    size: pulumi.Output[int]
    source_image: pulumi.Output[dict]
    engine: pulumi.Output[dict]

    def __init__(self, resource_name: str, args: DockerImageSpec | dict[str, Any],
                 opts: Optional[pulumi.ResourceOptions] = None) -> None:
        # The registry settings are echoed into the outputs (delete needs the credentials): keep them secret.
        opts = pulumi.ResourceOptions.merge(opts, pulumi.ResourceOptions(additional_secret_outputs=["registry"]))
        super().__init__(DockerImageProvider(), resource_name, resource_props(args, self.output_names()), opts)
