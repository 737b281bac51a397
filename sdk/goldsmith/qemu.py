"""The QemuImage resource: a golden disk image (qcow2, plus raw/vmdk/vhdx) built in a QEMU VM."""

from __future__ import annotations

from typing import Any, Optional

import pulumi
from goldsmith_provider.builders.qemu.config import QemuImageSpec
from goldsmith_provider.dynamic.qemu import QemuImageProvider

from ._props import ImageResource, resource_props


class QemuImage(ImageResource, module="goldsmith", name="QemuImage"):
    """Builds when its fingerprint changes; ``pulumi preview --diff`` shows ``rebuild_reasons``."""

    path: pulumi.Output[str]
    sha256: pulumi.Output[str]
    artifacts: pulumi.Output[dict]
    manifest_path: pulumi.Output[str]
    source_image: pulumi.Output[dict]
    accelerator: pulumi.Output[str]

    def __init__(self, resource_name: str, args: QemuImageSpec | dict[str, Any],
                 opts: Optional[pulumi.ResourceOptions] = None) -> None:
        super().__init__(QemuImageProvider(), resource_name, resource_props(args, self.output_names()), opts)
