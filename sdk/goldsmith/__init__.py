"""goldsmith: golden machine images as Pulumi resources.

    import goldsmith as gs

    core = gs.QemuImage("core", gs.QemuImageArgs(
        name="core",
        source=gs.DebootstrapSource(suite="bookworm"),
        provisioners=[
            gs.Packages(install=["jq"]),
            gs.File(source="files/motd", destination="/etc/motd", mode="0644"),
            gs.Shell(scripts=["scripts/harden.sh"]),
            gs.Updates(),
        ],
    ))
    # secrets: gs.Shell(..., secret_env={"DB_PASSWORD": gs.VaultSecret(path="app/db", key="password")}),
    # gs.File(secret=config.require_secret("tls_key"), destination="/run/secrets/tls.key") and
    # QemuImageArgs(vault=gs.VaultSettings(address=...)): read at build time, never stored.
    pulumi.export("path", core.path)

The argument types are the provider's own settings tables (one declaration: the SDK's types, the
provider's validation, the fingerprint and the docs all come from it).
"""

from __future__ import annotations

from goldsmith_provider.builders.aws.config import (
    AmiFilterSource,
    AmiIdSource,
    AmiImageSpec,
    AwsConnection,
    AwsSshSettings,
    BastionSettings,
    DistributionSettings,
    InstanceSettings,
    RootVolume,
    ShareSettings,
    SsmParameterSource,
    WaitSettings,
)
from goldsmith_provider.builders.common.spec import BootTest, Retention, SshSettings
from goldsmith_provider.builders.docker.config import (
    DebootstrapRootfsSource,
    DockerImageSpec,
    ImageConfig,
    ImageSource,
    RegistrySettings,
    RootfsSource,
)
from goldsmith_provider.builders.qemu.config import (
    DebootstrapSource,
    DiskSource,
    MachineSettings,
    OutputSettings,
    QemuImageSpec,
    UrlSource,
)
from goldsmith_provider.postprocessors.vagrant import VagrantBox, VagrantCatalog
from goldsmith_provider.provisioners import (
    FileProvisioner,
    PackagesProvisioner,
    ShellProvisioner,
    UpdatesProvisioner,
)

from goldsmith_provider.golden.template import AmiTarget, Consistency, DockerTarget, QemuTarget
from goldsmith_provider.vault.refs import VaultSecret, VaultSettings

from .aws import AmiImage
from .docker import DockerImage
from .golden import BuildProcess, ConsistencyReport, GoldenImage, GoldenImageArgs
from .qemu import QemuImage

QemuImageArgs = QemuImageSpec
DockerImageArgs = DockerImageSpec
AmiImageArgs = AmiImageSpec
AmiById = AmiIdSource
AmiFilter = AmiFilterSource
AmiFromSsm = SsmParameterSource
Shell = ShellProvisioner
File = FileProvisioner
Updates = UpdatesProvisioner
Packages = PackagesProvisioner

__all__ = [
    "GoldenImage", "GoldenImageArgs", "QemuTarget", "DockerTarget", "AmiTarget", "Consistency", "BuildProcess",
    "ConsistencyReport",
    "QemuImage", "QemuImageArgs", "QemuImageSpec",
    "DebootstrapSource", "DiskSource", "UrlSource",
    "MachineSettings", "OutputSettings", "SshSettings", "BootTest", "Retention", "VagrantBox", "VagrantCatalog",
    "DockerImage", "DockerImageArgs", "DockerImageSpec",
    "ImageSource", "RootfsSource", "DebootstrapRootfsSource", "ImageConfig", "RegistrySettings",
    "AmiImage", "AmiImageArgs", "AmiImageSpec", "AmiById", "AmiFilter", "AmiFromSsm",
    "AmiIdSource", "AmiFilterSource", "SsmParameterSource", "AwsConnection", "AwsSshSettings", "BastionSettings",
    "InstanceSettings", "RootVolume", "DistributionSettings", "ShareSettings", "WaitSettings",
    "Shell", "File", "Updates", "Packages", "VaultSecret", "VaultSettings",
    "ShellProvisioner", "FileProvisioner", "UpdatesProvisioner", "PackagesProvisioner",
]
