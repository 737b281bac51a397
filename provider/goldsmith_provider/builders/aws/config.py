"""The AWS AMI builder's settings table: source AMI, connection, builder instance, SSH, snapshot
and distribution. Frozen, typed, validated up front (every problem at once, each with its path).

Identity: what the AMI *contains* is part of the fingerprint (provisioners, the resolved source AMI
id and region, the root volume, user data, encryption); where it is shared, copied, tagged and
when it is deprecated is not (those update in place). How the source AMI is *found* is not part of
the identity either: the AMI id it resolves to at check time is.
"""

from __future__ import annotations

import base64
import difflib
import fnmatch
import functools
import ipaddress
import re
from datetime import datetime
from dataclasses import dataclass
from typing import ClassVar, Literal, Union

from ...engine.schema import Context, setting
from ...provisioners import Provisioner
from ...vault.refs import VaultSettings
from ..common.spec import DIGEST_PATHS_DOC, Retention, SshSettings, absolute_paths_problem, name_problem

AMI_RE = re.compile(r"^ami-([0-9a-f]{8}|[0-9a-f]{17})$")
ACCOUNT_RE = re.compile(r"^\d{12}$")
ORG_RE = re.compile(r"^arn:aws[a-z-]*:organizations::\d{12}:organization/o-[a-z0-9]{10,32}$")
OU_RE = re.compile(r"^arn:aws[a-z-]*:organizations::\d{12}:ou/o-[a-z0-9]{10,32}/ou-[a-z0-9]{4,32}-[a-z0-9]{8,32}$")
SG_RE = re.compile(r"^sg-[0-9a-f]{8,17}$")
SUBNET_RE = re.compile(r"^subnet-[0-9a-f]{8,17}$")
VPC_RE = re.compile(r"^vpc-[0-9a-f]{8,17}$")
TAG_KEY_MAX, TAG_VALUE_MAX = 128, 256
USER_DATA_MAX = 16 * 1024  # EC2's limit on raw user data; ours (keys) takes about 1.2 KiB of it


REGION_FORMAT_RE = re.compile(r"^[a-z]{2,4}(-[a-z]+)+-\d{1,2}$")


@functools.lru_cache(maxsize=1)
def known_regions() -> dict[str, str]:
    """Every region botocore knows -> its partition ('aws', 'aws-cn', 'aws-us-gov'...), from the endpoints
    data bundled with botocore: offline, no AWS call. Empty without botocore (the format check remains)."""
    try:
        from botocore.loaders import create_loader
    except ImportError:  # pragma: no cover - the aws extra is not installed
        return {}
    data = create_loader().load_data("endpoints")
    return {region: p["partition"] for p in data.get("partitions", []) for region in p.get("regions", {})}


def region_problem(value: str) -> str | None:
    if not value:
        return None
    if not REGION_FORMAT_RE.match(value):
        return f"is not an AWS region name such as 'eu-west-1', got {value!r}"
    known = known_regions()
    if known and value not in known:
        close = difflib.get_close_matches(value, known, n=1, cutoff=0.75)
        import botocore

        return (f"is not an AWS region (botocore {botocore.__version__} knows {len(known)}"
                + (f"; did you mean {close[0]!r}?" if close else "; a region newer than that botocore: upgrade it")
                + f"), got {value!r}")
    return None


def partition_of(region: str) -> str | None:
    return known_regions().get(region)


def ami_problem(value: str) -> str | None:
    if not AMI_RE.match(value):
        return f"is not an AMI id such as 'ami-0123456789abcdef0', got {value!r}"
    return None


def host_key_problem(value: str) -> str | None:
    parts = value.split()
    if len(parts) < 2 or not parts[0].startswith(("ssh-", "ecdsa-")):
        return "must be an OpenSSH public host key such as 'ssh-ed25519 AAAA...' (from the host's /etc/ssh/*.pub)"
    try:
        base64.b64decode(parts[1], validate=True)
    except ValueError:
        return "its key data is not base64"
    return None


HOST_PORT_RE = re.compile(r"^(\[[0-9a-fA-F:]+\]|[A-Za-z0-9._-]+)(:(\d{1,5}))?$")


def host_port_problem(value: str) -> str | None:
    m = HOST_PORT_RE.match(value) if value else None
    if value and (not m or (m.group(3) and not 0 < int(m.group(3)) < 65536)):
        return f"must be 'host' or 'host:port' (IPv6: '[addr]:port'), got {value!r}"
    return None


def split_host_port(value: str, default_port: int) -> tuple[str, int]:
    m = HOST_PORT_RE.match(value)
    host = m.group(1).strip("[]") if m else value
    return host, int(m.group(3)) if m and m.group(3) else default_port


def tags_problem(tags: dict[str, str]) -> str | None:
    for key, value in tags.items():
        if key.lower().startswith(("aws:", "goldsmith:")):
            return f"tag key {key!r}: the 'aws:' and 'goldsmith:' prefixes are reserved"
        if len(key) > TAG_KEY_MAX or len(value) > TAG_VALUE_MAX:
            return f"tag {key!r}: keys are at most {TAG_KEY_MAX} characters, values at most {TAG_VALUE_MAX}"
    if len(tags) > 35:
        return "at most 35 tags (AWS allows 50 per resource; goldsmith's own take 15)"
    return None


# --- the source AMI: one of three ways to find it, resolved at check time -------------------------


@dataclass(frozen=True)
class AmiIdSource:
    """A given AMI id in the build region."""

    TYPE: ClassVar[str] = "ami"
    id: str = setting(doc="The AMI id, e.g. 'ami-0123456789abcdef0'.", check=ami_problem)


@dataclass(frozen=True)
class AmiFilterSource:
    """The AMI a DescribeImages search finds (like Packer's source_ami_filter)."""

    TYPE: ClassVar[str] = "filter"
    owners: list[str] = setting(doc="Owner account ids or aliases ('amazon', 'aws-marketplace', 'self'). Required: "
                                "an unrestricted search would match anyone's public AMI.")
    name: str = setting("", doc="Name glob, e.g. 'debian-12-amd64-*'.")
    architecture: Literal["x86_64", "arm64", "i386", "x86_64_mac", "arm64_mac"] = setting("x86_64", doc="CPU architecture.")
    virtualization_type: Literal["hvm", "paravirtual"] = setting("hvm", doc="Virtualization type.")
    root_device_type: Literal["ebs", "instance-store"] = setting("ebs", doc="Root device type (the EBS builder needs ebs).")
    filters: dict[str, list[str]] = setting({}, doc="More DescribeImages filters, name -> values (e.g. {'tag:os': ['debian']}).")
    most_recent: bool = setting(True, doc="Several matches: take the newest. False: several matches are an error.")
    include_deprecated: bool = setting(False, doc="Also consider deprecated AMIs.")

    def validate(self, ctx: Context, path: str) -> None:
        if not self.owners:
            ctx.error(f"{path}.owners", "at least one owner is required (an account id, 'amazon' or 'self')")
        for i, owner in enumerate(self.owners):
            if not (ACCOUNT_RE.match(owner) or owner in ("amazon", "aws-marketplace", "self")):
                ctx.error(f"{path}.owners[{i}]", f"must be a 12-digit account id, 'amazon', 'aws-marketplace' or 'self', got {owner!r}")
        if self.root_device_type != "ebs":
            ctx.error(f"{path}.root_device_type", "the AMI builder snapshots EBS volumes: use 'ebs'")


@dataclass(frozen=True)
class SsmParameterSource:
    """The AMI id held in an SSM parameter, e.g. /aws/service/debian/release/bookworm/latest/amd64."""

    TYPE: ClassVar[str] = "ssm"
    parameter: str = setting(doc="Parameter name (starting with '/'), e.g. '/aws/service/canonical/ubuntu/server/24.04/stable/current/amd64/hvm/ebs-gp3/ami-id'.")

    def validate(self, ctx: Context, path: str) -> None:
        if not self.parameter.startswith("/") or " " in self.parameter:
            ctx.error(f"{path}.parameter", f"must be an SSM parameter path starting with '/', got {self.parameter!r}")


AmiSource = Union[AmiIdSource, AmiFilterSource, SsmParameterSource]


# --- connection -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class AwsConnection:
    """Where and as whom. Every empty field falls back to the standard AWS chain (environment,
    shared config profile, AWS_ENDPOINT_URL); the secrets are never echoed into outputs."""

    region: str = setting("", doc="The build region. Empty: AWS_REGION, AWS_DEFAULT_REGION or the profile's region.", identity=False, check=region_problem)
    endpoint_url: str = setting("", doc="EC2/SSM endpoint URL (a VPC endpoint, a local test peer). Empty: AWS_ENDPOINT_URL or AWS's own.", identity=False)
    profile: str = setting("", doc="Shared config profile. Empty: AWS_PROFILE or the default chain.", identity=False)
    access_key_id: str = setting("", doc="Access key id (otherwise the standard chain).", secret=True)
    secret_access_key: str = setting("", doc="Secret access key, with access_key_id.", secret=True)
    session_token: str = setting("", doc="Session token of temporary credentials.", secret=True)
    max_attempts: int = setting(8, doc="Attempts per API call, the first included: throttling, 5xx answers and dropped "
                                "connections are retried with exponential backoff and full jitter (at most 20 s apart).",
                                minimum=1, maximum=50, identity=False)
    retry_mode: Literal["adaptive", "standard"] = setting(
        "adaptive", doc="botocore's retry mode: 'standard' (backoff with jitter), or 'adaptive' (the same, and the "
                        "client also slows its request rate down after throttling).", identity=False)

    def validate(self, ctx: Context, path: str) -> None:
        if bool(self.access_key_id) != bool(self.secret_access_key):
            ctx.error(path, "set both access_key_id and secret_access_key, or neither")
        if self.endpoint_url and not re.match(r"^https?://[^/\s]+", self.endpoint_url):
            ctx.error(f"{path}.endpoint_url", f"must be an http(s) URL, got {self.endpoint_url!r}")


# --- SSH ----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class BastionSettings:
    """A jump host: the build's SSH runs through a channel the bastion opens to the instance."""

    host: str = setting(doc="The bastion's address, 'host' or 'host:port'.", identity=False, check=host_port_problem)
    host_key: str = setting(doc="The bastion's public host key ('ssh-ed25519 AAAA...'): the only key accepted.", identity=False, check=host_key_problem)
    user: str = setting("ec2-user", doc="Login user on the bastion.", identity=False)
    private_key: str = setting("", doc="OpenSSH private key for the bastion (or private_key_file).", secret=True)
    private_key_file: str = setting("", doc="File holding the bastion's private key (relative to the project).", identity=False, local_path="file")

    def validate(self, ctx: Context, path: str) -> None:
        if bool(self.private_key) == bool(self.private_key_file):
            ctx.error(path, "set exactly one of `private_key` or `private_key_file`")


@dataclass(frozen=True)
class AwsSshSettings(SshSettings):
    """How goldsmith reaches the builder instance; its host key is generated locally and handed
    over in the user data, so it is verified from the first connection."""

    interface: Literal["public_ip", "private_ip", "public_dns", "private_dns"] = setting(
        "public_ip", doc="Which address of the instance to connect to.", identity=False)
    host: str = setting("", doc="Connect here instead ('host' or 'host:port'): a NAT, a port forward, a test peer.",
                        identity=False, check=host_port_problem)
    port: int = setting(22, doc="SSH port of the instance.", minimum=1, maximum=65535, identity=False)
    cidrs: list[str] = setting([], doc="CIDRs the temporary security group admits to port 22 (e.g. your egress IP /32). "
                               "Required unless instance.security_group_ids is set.", identity=False)
    bastion: BastionSettings | None = setting(None, doc="Reach the instance through this jump host.", identity=False)

    def validate(self, ctx: Context, path: str) -> None:
        for i, cidr in enumerate(self.cidrs):
            try:
                ipaddress.ip_network(cidr, strict=True)
            except ValueError as exc:
                ctx.error(f"{path}.cidrs[{i}]", f"is not a CIDR block: {exc}")


# --- the builder instance ------------------------------------------------------------------------------


@dataclass(frozen=True)
class RootVolume:
    size_gb: int = setting(0, doc="Root volume size (0: the source AMI's).", minimum=0, maximum=16384)
    type: Literal["gp3", "gp2", "io1", "io2", "st1", "sc1", "standard"] = setting("gp3", doc="EBS volume type.")
    iops: int = setting(0, doc="Provisioned IOPS (gp3, io1, io2; 0: the default).", minimum=0, maximum=256000)
    throughput: int = setting(0, doc="gp3 throughput in MiB/s (0: the default).", minimum=0, maximum=2000)
    encrypted: bool = setting(False, doc="Encrypt the root volume, and so the AMI's snapshot.")
    kms_key_id: str = setting("", doc="KMS key (id, alias or ARN) for the encryption; empty: the account's EBS default key.")

    def validate(self, ctx: Context, path: str) -> None:
        if self.kms_key_id and not self.encrypted:
            ctx.error(f"{path}.kms_key_id", "only applies with encrypted = true")
        if self.throughput and self.type != "gp3":
            ctx.error(f"{path}.throughput", "only applies to gp3 volumes")
        if self.iops and self.type not in ("gp3", "io1", "io2"):
            ctx.error(f"{path}.iops", "only applies to gp3, io1 and io2 volumes")


@dataclass(frozen=True)
class InstanceSettings:
    type: str = setting("t3.small", doc="Instance type of the builder.", identity=False)
    subnet_id: str = setting("", doc="Subnet of the builder (empty: the default VPC's default subnet).", identity=False)
    vpc_id: str = setting("", doc="VPC of the temporary security group (empty: the subnet's, else the default VPC).", identity=False)
    security_group_ids: list[str] = setting([], doc="Use these security groups instead of a temporary one.", identity=False)
    associate_public_ip: bool | None = setting(None, doc="Give the builder a public IP (None: the subnet's default).", identity=False)
    iam_instance_profile: str = setting("", doc="IAM instance profile (name or ARN) for provisioners that call AWS.", identity=False)
    spot: bool = setting(False, doc="Run the builder as a one-time spot instance (not stopped before the image: CreateImage reboots it).", identity=False)
    spot_max_price: str = setting("", doc="Spot price cap in USD per hour (empty: the on-demand price).", identity=False)
    metadata_tokens: Literal["required", "optional"] = setting("required", doc="IMDSv2 tokens on the builder.", identity=False)
    user_data: str = setting("", doc="Your own user data, run after goldsmith's cloud-config (a script or a #cloud-config).")
    user_data_file: str = setting("", doc="File holding your own user data (relative to the project).", local_path="file")
    root_volume: RootVolume = setting(RootVolume(), doc="Root volume of the builder, and so of the AMI.")

    def validate(self, ctx: Context, path: str) -> None:
        if self.user_data and self.user_data_file:
            ctx.error(path, "set at most one of `user_data` or `user_data_file`")
        if len(self.user_data.encode()) > USER_DATA_MAX - 2048:
            ctx.error(f"{path}.user_data", f"is too long: EC2 takes {USER_DATA_MAX} bytes and goldsmith's keys need 2 KiB")
        if self.subnet_id and not SUBNET_RE.match(self.subnet_id):
            ctx.error(f"{path}.subnet_id", f"is not a subnet id such as 'subnet-0abc12345678', got {self.subnet_id!r}")
        if self.vpc_id and not VPC_RE.match(self.vpc_id):
            ctx.error(f"{path}.vpc_id", f"is not a VPC id such as 'vpc-0abc12345678', got {self.vpc_id!r}")
        for i, sg in enumerate(self.security_group_ids):
            if not SG_RE.match(sg):
                ctx.error(f"{path}.security_group_ids[{i}]", f"is not a security group id such as 'sg-0abc12345678', got {sg!r}")
        if not re.match(r"^[a-z][a-z0-9-]*\d[a-z0-9-]*\.[a-z0-9]+$", self.type):
            ctx.error(f"{path}.type", f"is not an instance type such as 't3.small', got {self.type!r}")
        if self.spot_max_price and not self.spot:
            ctx.error(f"{path}.spot_max_price", "only applies with spot = true")
        if self.spot_max_price and not re.match(r"^\d+(\.\d+)?$", self.spot_max_price):
            ctx.error(f"{path}.spot_max_price", f"must be a price such as '0.05', got {self.spot_max_price!r}")


# --- the AMI and where it goes -----------------------------------------------------------------------


@dataclass(frozen=True)
class ShareSettings:
    accounts: list[str] = setting([], doc="Account ids given launch permission.", identity=False)
    organizations: list[str] = setting([], doc="Organization ARNs given launch permission.", identity=False)
    organizational_units: list[str] = setting([], doc="Organizational unit ARNs given launch permission.", identity=False)
    public: bool = setting(False, doc="Make the AMI public (launch permission for 'all').", identity=False)

    def validate(self, ctx: Context, path: str) -> None:
        for key, regex, example in (("accounts", ACCOUNT_RE, "123456789012"),
                                    ("organizations", ORG_RE, "arn:aws:organizations::123456789012:organization/o-abcdefghij"),
                                    ("organizational_units", OU_RE, "arn:aws:organizations::123456789012:ou/o-abcdefghij/ou-ab12-abcdefgh")):
            for i, value in enumerate(getattr(self, key)):
                if not regex.match(value):
                    ctx.error(f"{path}.{key}[{i}]", f"must look like {example!r}, got {value!r}")

    def permissions(self) -> list[dict[str, str]]:
        perms = [{"UserId": a} for a in self.accounts]
        perms += [{"OrganizationArn": o} for o in self.organizations]
        perms += [{"OrganizationalUnitArn": u} for u in self.organizational_units]
        if self.public:
            perms.append({"Group": "all"})
        return perms


@dataclass(frozen=True)
class DistributionSettings:
    regions: list[str] = setting([], doc="Copy the AMI to these regions too (in parallel); changes update in place.", identity=False)
    encrypt_copies: bool = setting(False, doc="Encrypt the copies (changing it rebuilds).")
    kms_key_ids: dict[str, str] = setting({}, doc="KMS key per copy region for encrypted copies (empty: the region's EBS default key).")
    share: ShareSettings = setting(ShareSettings(), doc="Launch permissions, in every region.")
    deprecate_at: str = setting("", doc="Deprecate the AMIs at this time (RFC 3339, e.g. '2027-01-31T00:00:00Z').", identity=False)
    deprecate_after_days: int = setting(0, doc="Deprecate the AMIs this many days after they were built (0: never).", minimum=0, maximum=3650, identity=False)

    def validate(self, ctx: Context, path: str) -> None:
        for i, region in enumerate(self.regions):
            if problem := region_problem(region) or (None if region else "must not be empty"):
                ctx.error(f"{path}.regions[{i}]", problem)
        if len(set(self.regions)) != len(self.regions):
            ctx.error(f"{path}.regions", "lists a region twice")
        for region in self.kms_key_ids:
            if region not in self.regions:
                ctx.error(f"{path}.kms_key_ids.{region}", "is not one of the copy regions")
        if self.kms_key_ids and not self.encrypt_copies:
            ctx.error(f"{path}.kms_key_ids", "only applies with encrypt_copies = true")
        if self.deprecate_at and self.deprecate_after_days:
            ctx.error(path, "set at most one of `deprecate_at` or `deprecate_after_days`")
        if self.deprecate_at and not _rfc3339(self.deprecate_at):
            ctx.error(f"{path}.deprecate_at", f"must be an RFC 3339 time such as '2027-01-31T00:00:00Z', got {self.deprecate_at!r}")


def _rfc3339(value: str) -> bool:
    """The format, and a real date and time (no 2027-13-45)."""
    if not re.match(r"^\d{4}-\d\d-\d\dT\d\d:\d\d(:\d\d(\.\d+)?)?(Z|[+-]\d\d:\d\d)$", value):
        return False
    try:
        datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return False
    return True


@dataclass(frozen=True)
class WaitSettings:
    """Our own polling loops: AWS keeps a new AMI pending for minutes, moto makes it available at once."""

    image_timeout_s: int = setting(3600, doc="How long an AMI (or a copy) may stay pending.", minimum=1, identity=False)
    instance_timeout_s: int = setting(900, doc="How long the instance may take to start, stop or terminate.", minimum=1, identity=False)
    poll_interval_s: float = setting(10.0, doc="Seconds between two polls.", minimum=0.05, maximum=300, identity=False)


@dataclass(frozen=True)
class AmiImageSpec:
    """A golden AMI built on an EC2 instance (the amazon-ebs flow)."""

    name: str = setting(doc="Image name: the AMI is named <name>-<fingerprint>.", identity=False, check=name_problem)
    source: AmiSource = setting(doc="The base AMI: by id, by filters, or by SSM parameter; resolved at check time.", identity=False)
    provisioners: list[Provisioner] = setting([], doc="Steps that shape the image, in order (the same list as any other builder).")
    communicator: AwsSshSettings = setting(AwsSshSettings(), doc="SSH settings.")
    aws: AwsConnection = setting(AwsConnection(), doc="Region, endpoint and credentials.")
    instance: InstanceSettings = setting(InstanceSettings(), doc="The builder instance.")
    distribution: DistributionSettings = setting(DistributionSettings(), doc="Copies, sharing, deprecation.")
    wait: WaitSettings = setting(WaitSettings(), doc="Timeouts and poll interval of the waits.")
    generalize: bool = setting(True, doc="Remove host keys, machine-id, logs and caches before the snapshot.")
    digest_paths: list[str] = setting([], doc=DIGEST_PATHS_DOC, identity=False, check=absolute_paths_problem)
    description: str = setting("", doc="AMI description (changes update in place).", identity=False)
    tags: dict[str, str] = setting({}, doc="Tags of the AMIs and their snapshots (changes update in place).", identity=False, check=tags_problem)
    run_tags: dict[str, str] = setting({}, doc="Extra tags of the builder's instance, volumes, key pair and security group.", identity=False, check=tags_problem)
    retention: Retention = setting(Retention(), doc="What happens to previous AMIs.")
    vault: VaultSettings | None = setting(None, doc="Vault connection for the `VaultSecret` references of the provisioners "
                                                    "(read at build time; never part of the fingerprint).", identity=False)
    keep_on_error: bool = setting(False, doc="Leave the builder instance, key pair and security group after a failure, for debugging.", identity=False)
    stack: str = setting("", doc="Stack name for the goldsmith:stack tag (the SDK fills it; env PULUMI_STACK wins).", identity=False)
    project: str = setting("", doc="Project name for the goldsmith:project tag (the SDK fills it; env PULUMI_PROJECT wins).", identity=False)
    resource: str = setting("", doc="Pulumi resource name for the goldsmith:resource tag (the SDK fills it).", identity=False)

    def validate(self, ctx: Context, path: str) -> None:
        if not self.communicator.cidrs and not self.instance.security_group_ids:
            ctx.error("communicator.cidrs", "is required unless instance.security_group_ids is set: the CIDRs allowed to "
                      "reach SSH on the builder (e.g. your egress IP /32, or the VPC's CIDR with interface = 'private_ip')")
        if self.communicator.cidrs and self.instance.security_group_ids:
            ctx.error("communicator.cidrs", "only applies to the temporary security group; with instance.security_group_ids "
                      "your groups decide who reaches SSH")
        home = partition_of(self.aws.region) if self.aws.region else None
        for i, region in enumerate(self.distribution.regions):
            if home and partition_of(region) and partition_of(region) != home:
                ctx.error(f"distribution.regions[{i}]", f"{region} is in partition {partition_of(region)}, the build region "
                          f"{self.aws.region} in {home}: AMIs cannot be copied across partitions")
        if isinstance(self.source, AmiFilterSource) and "self" in self.source.owners and self.source.name:
            own = f"{self.name}-{'0' * 12}"  # what this image's own AMIs are called: <name>-<fingerprint>
            if fnmatch.fnmatchcase(own, self.source.name):
                ctx.error("source.name", f"{self.source.name!r} with owner 'self' matches this image's own AMIs "
                          f"({self.name}-<fingerprint>): each build would start from the previous one and never "
                          "converge; narrow the name or filter by a tag")
