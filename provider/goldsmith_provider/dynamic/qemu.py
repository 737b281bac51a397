"""Dynamic provider for QEMU disk images."""

from .base import ImageProvider


class QemuImageProvider(ImageProvider):
    builder_module = "goldsmith_provider.builders.qemu.builder"
