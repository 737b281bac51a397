"""The QemuImage resource: a golden disk image (qcow2, plus raw/vmdk/vhdx) built in a QEMU VM."""

from __future__ import annotations

from typing import Any, Optional

import pulumi
import pulumi.dynamic
from goldsmith_provider.builders.qemu.config import QemuImageSpec
from goldsmith_provider.dynamic.qemu import QemuImageProvider

from ._props import resource_props

OUTPUTS = ("image_id", "fingerprint", "input_digests", "rebuild_reasons", "path", "sha256", "artifacts",
           "manifest_path", "packages", "package_count", "path_digests", "source_image", "accelerator", "provenance", "timings",
           "adopted", "build_log")


class QemuImage(pulumi.dynamic.Resource, module="goldsmith", name="QemuImage"):
    """Builds when its fingerprint changes; ``pulumi preview --diff`` shows ``rebuild_reasons``."""

    image_id: pulumi.Output[str]
    fingerprint: pulumi.Output[str]
    input_digests: pulumi.Output[dict]
    rebuild_reasons: pulumi.Output[list]
    path: pulumi.Output[str]
    sha256: pulumi.Output[str]
    artifacts: pulumi.Output[dict]
    manifest_path: pulumi.Output[str]
    packages: pulumi.Output[list]
    package_count: pulumi.Output[int]
    path_digests: pulumi.Output[dict]
    source_image: pulumi.Output[dict]
    accelerator: pulumi.Output[str]
    provenance: pulumi.Output[dict]
    timings: pulumi.Output[dict]
    adopted: pulumi.Output[bool]
    build_log: pulumi.Output[str]

    def __init__(self, resource_name: str, args: QemuImageSpec | dict[str, Any],
                 opts: Optional[pulumi.ResourceOptions] = None) -> None:
        super().__init__(QemuImageProvider(), resource_name, resource_props(args, OUTPUTS), opts)
