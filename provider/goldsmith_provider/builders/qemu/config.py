"""The QEMU builder's settings table: sources, machine, output. Frozen, typed, validated up front."""

from __future__ import annotations

import re
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar, Literal, Union

from ...artifacts.fetch import checksum_problem, local_url_problem, url_problem
from ...engine.schema import Context, setting
from ...postprocessors.vagrant import VagrantBox
from ...provisioners import Provisioner
from ...vault.refs import VaultSettings
from ..common.spec import DIGEST_PATHS_DOC, BootTest, Retention, SshSettings, absolute_paths_problem, name_problem

DiskFormat = Literal["qcow2", "raw", "vmdk", "vhdx"]
OUTPUT_FORMATS = ("qcow2", "raw", "vmdk", "vhdx")


@dataclass(frozen=True)
class DebootstrapSource:
    """A Debian base made offline with debootstrap from the apt mirror, cached by recipe."""

    TYPE: ClassVar[str] = "debootstrap"
    suite: str = setting("bookworm", doc="Debian suite.")
    mirror: str = setting("http://deb.debian.org/debian", doc="Apt mirror used by debootstrap and the image.")
    variant: Literal["minbase", "buildd", "default"] = setting("minbase", doc="debootstrap variant ('default': debootstrap's own, required + important).")
    include: list[str] = setting([], doc="Extra packages in the base.")
    disk_size_gb: int = setting(4, doc="Size of the base disk.", minimum=2, maximum=2047)

    def validate(self, ctx: Context, path: str) -> None:
        from ...engine.errors import ValidationError
        from .debian_base import DebootstrapRecipe, validate_recipe

        if problem := url_problem(self.mirror):
            ctx.error(f"{path}.mirror", problem)
        try:  # the recipe's own rules (suite, variant, package names), now rather than at build time
            validate_recipe(DebootstrapRecipe(suite=self.suite, mirror=self.mirror, variant=self.variant,
                                              include=tuple(self.include), disk_size_gb=self.disk_size_gb), path)
        except ValidationError as exc:
            seen = {p.path for p in ctx.problems}
            ctx.problems.extend(p for p in exc.problems if p.path not in seen)


@dataclass(frozen=True)
class DiskSource:
    """A local disk image (a vendor image, an internal image, or one goldsmith built earlier)."""

    TYPE: ClassVar[str] = "disk"
    path: str = setting(doc="Path of the disk image (relative to the project).", local_path="file")
    format: DiskFormat = setting("qcow2", doc="Disk format.")
    cloud_init: bool = setting(False, doc="The image configures itself with cloud-init (NoCloud seed) rather than goldsmith's seed unit. Both read the same seed disk.")
    checksum: str = setting("", doc="'sha256:<hex>' of the disk (e.g. a parent image's `sha256` output). When set it is the "
                            "source's identity, so a preview does not read the disk, and the build verifies the file against it.")

    def validate(self, ctx: Context, path: str) -> None:
        if self.checksum and (problem := checksum_problem(self.checksum)):
            ctx.error(f"{path}.checksum", problem)

    def identity_override(self) -> dict[str, str]:
        """Identity fields replaced by a declared value: the checksum stands for the file's content."""
        return {"path": self.checksum} if self.checksum else {}


@dataclass(frozen=True)
class UrlSource:
    """A disk image downloaded once and cached by its checksum."""

    TYPE: ClassVar[str] = "url"
    url: str = setting(doc="http(s), s3 or file URL of the image.", identity=False)
    checksum: str = setting(doc="'sha256:<hex>' of the image: its identity.")
    format: DiskFormat = setting("qcow2", doc="Disk format.")
    cloud_init: bool = setting(True, doc="The image is a cloud image configured by cloud-init's NoCloud seed.")

    def validate(self, ctx: Context, path: str) -> None:
        if problem := url_problem(self.url) or local_url_problem(self.url):
            ctx.error(f"{path}.url", problem)
        if problem := checksum_problem(self.checksum):
            ctx.error(f"{path}.checksum", problem)


QemuSource = Union[DebootstrapSource, DiskSource, UrlSource]
QemuPostProcessor = VagrantBox  # a tagged union of one, for now: each entry carries its `type`

# The first bytes of each container format (qcow2: "QFI\xfb"; VMDK: a sparse extent or a descriptor).
MAGIC = {"qcow2": (b"QFI\xfb",), "vmdk": (b"KDMV", b"# Disk DescriptorFile"), "vhdx": (b"vhdxfile",)}


def detect_format(head: bytes) -> str:
    for fmt, magics in MAGIC.items():
        if any(head.startswith(m) for m in magics):
            return fmt
    return "raw"


def disk_format_problem(path: Path, declared: str) -> str | None:
    """Does the file's content match the declared format? Reads the first 32 bytes, nothing else."""
    try:
        with open(path, "rb") as f:
            head = f.read(32)
    except OSError as exc:
        return f"cannot read {path.name}: {exc.strerror}"
    if not head:
        return f"{path.name} is empty: not a disk image"
    found = detect_format(head)
    if found != declared:
        return f"says {declared!r}, but {path.name} is a {found} image: set format = {found!r}"
    return None


def virtual_size(path: Path, fmt: str) -> int:
    """The disk's virtual size in bytes (qcow2 header, raw file size); 0 when not known cheaply."""
    if fmt == "raw":
        return path.stat().st_size
    if fmt == "qcow2":
        try:
            with open(path, "rb") as f:
                head = f.read(32)
        except OSError:
            return 0
        return struct.unpack(">Q", head[24:32])[0] if len(head) >= 32 else 0
    return 0


@dataclass(frozen=True)
class MachineSettings:
    cpus: int = setting(2, doc="Virtual CPUs of the builder.", minimum=1, maximum=64, identity=False)
    memory_mb: int = setting(2048, doc="Memory of the builder.", minimum=256, maximum=262144, identity=False)
    disk_size_gb: int = setting(0, doc="Grow the disk to this size (0: keep the source's size).", minimum=0, maximum=4096)
    accelerator: Literal["auto", "kvm", "tcg"] = setting("auto", doc="auto: KVM when it works here, else TCG.", identity=False)


@dataclass(frozen=True)
class OutputSettings:
    directory: str = setting("images", doc="Where the artifacts go (relative to the project).", identity=False)
    formats: list[str] = setting(["qcow2"], doc="Artifact formats: qcow2 (always made), raw, vmdk (VMware), vhdx (Hyper-V).")
    compress: bool = setting(False, doc="Compress the qcow2 (about 3x smaller, about 60x slower to write).")

    def validate(self, ctx: Context, path: str) -> None:
        for i, fmt in enumerate(self.formats):
            if fmt not in OUTPUT_FORMATS:
                ctx.error(f"{path}.formats[{i}]", f"must be one of {', '.join(OUTPUT_FORMATS)}, got {fmt!r}")
        if len(set(self.formats)) != len(self.formats):
            ctx.error(f"{path}.formats", "lists a format twice")


@dataclass(frozen=True)
class QemuImageSpec:
    """A golden disk image built in a QEMU VM."""

    name: str = setting(doc="Image name: artifact files are <name>-<fingerprint>.<format>.", identity=False, check=name_problem)
    source: QemuSource = setting(doc="Where the build starts: debootstrap, disk or url.")
    provisioners: list[Provisioner] = setting([], doc="Steps that shape the image, in order.")
    communicator: SshSettings = setting(SshSettings(), doc="SSH settings.")
    machine: MachineSettings = setting(MachineSettings(), doc="Builder VM settings.")
    output: OutputSettings = setting(OutputSettings(), doc="Artifacts.")
    generalize: bool = setting(True, doc="Remove host keys, machine-id, logs and caches before the snapshot.")
    boot_test: BootTest = setting(BootTest(), doc="Boot the result once more before accepting it.")
    post_processors: list[QemuPostProcessor] = setting([], doc="What is made from the finished qcow2 (after the boot test): vagrant (a libvirt box).")
    retention: Retention = setting(Retention(), doc="What happens to previous images.")
    digest_paths: list[str] = setting([], doc=DIGEST_PATHS_DOC, identity=False, check=absolute_paths_problem)
    labels: dict[str, str] = setting({}, doc="Metadata recorded in the manifest (changes update in place).", identity=False)
    description: str = setting("", doc="Free text recorded in the manifest.", identity=False)
    vault: VaultSettings | None = setting(None, doc="Vault connection for the `VaultSecret` references of the provisioners "
                                                    "(read at build time; never part of the fingerprint).", identity=False)
    keep_on_error: bool = setting(False, doc="Leave the builder VM and work dir after a failure, for debugging.", identity=False)

    def validate(self, ctx: Context, path: str) -> None:
        seen: dict[str, int] = {}
        for i, pp in enumerate(self.post_processors):
            if pp is not None and pp.TYPE in seen:
                ctx.error(f"post_processors[{i}]", f"a second {pp.TYPE!r} post-processor (post_processors[{seen[pp.TYPE]}] is one already)")
            elif pp is not None:
                seen[pp.TYPE] = i
        def at(key: str) -> str:
            return f"{path}.{key}" if path else key

        out = ctx.resolve(self.output.directory)
        if out.exists() and not out.is_dir():
            ctx.error(at("output.directory"), f"is a file, not a directory: {self.output.directory}")
        grow = self.machine.disk_size_gb
        if isinstance(self.source, DebootstrapSource) and grow and grow < self.source.disk_size_gb:
            ctx.error(at("machine.disk_size_gb"), f"{grow} GiB is smaller than the source disk ({self.source.disk_size_gb} "
                      "GiB): disks only grow (0 keeps the source's size)")
        if isinstance(self.source, DiskSource):
            src = ctx.resolve(self.source.path)
            if not src.is_file():
                return  # reported by the path check
            if problem := disk_format_problem(src, self.source.format):
                ctx.error(at("source.format"), problem)
            elif grow and grow << 30 < (size := virtual_size(src, self.source.format)):
                ctx.error(at("machine.disk_size_gb"), f"{grow} GiB is smaller than the source disk ({size / 2**30:.1f} GiB): "
                          "disks only grow (0 keeps the source's size)")
            own = re.compile(rf"^{re.escape(self.name)}-[0-9a-f]{{12}}\.({'|'.join(OUTPUT_FORMATS)})$")
            if src.resolve().parent == out.resolve() and own.match(src.name):
                ctx.error(at("source.path"), f"is this image's own output ({self.output.directory}/{self.name}-<fingerprint>"
                          f".<format>): an image cannot start from itself (each build would start from the previous "
                          "one and never converge, and replacing it deletes its own source); give the base its own "
                          "name or output directory")
