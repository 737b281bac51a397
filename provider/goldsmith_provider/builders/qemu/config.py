"""The QEMU builder's settings table: sources, machine, output. Frozen, typed, validated up front."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar, Literal, Union

from ...artifacts.fetch import checksum_problem, url_problem
from ...engine.schema import Context, setting
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
    variant: Literal["minbase", "buildd", "fakechroot"] = setting("minbase", doc="debootstrap variant.")
    include: list[str] = setting([], doc="Extra packages in the base.")
    disk_size_gb: int = setting(4, doc="Size of the base disk.", minimum=2, maximum=2048)

    def validate(self, ctx: Context, path: str) -> None:
        if problem := url_problem(self.mirror):
            ctx.error(f"{path}.mirror", problem)


@dataclass(frozen=True)
class DiskSource:
    """A local disk image (a vendor image, an internal image, or one goldsmith built earlier)."""

    TYPE: ClassVar[str] = "disk"
    path: str = setting(doc="Path of the disk image (relative to the project).", local_path=True)
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
        if problem := url_problem(self.url):
            ctx.error(f"{path}.url", problem)
        if problem := checksum_problem(self.checksum):
            ctx.error(f"{path}.checksum", problem)


QemuSource = Union[DebootstrapSource, DiskSource, UrlSource]


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
    retention: Retention = setting(Retention(), doc="What happens to previous images.")
    digest_paths: list[str] = setting([], doc=DIGEST_PATHS_DOC, identity=False, check=absolute_paths_problem)
    labels: dict[str, str] = setting({}, doc="Metadata recorded in the manifest (changes update in place).", identity=False)
    description: str = setting("", doc="Free text recorded in the manifest.", identity=False)
    vault: VaultSettings | None = setting(None, doc="Vault connection for the `VaultSecret` references of the provisioners "
                                                    "(read at build time; never part of the fingerprint).", identity=False)
    keep_on_error: bool = setting(False, doc="Leave the builder VM and work dir after a failure, for debugging.", identity=False)
