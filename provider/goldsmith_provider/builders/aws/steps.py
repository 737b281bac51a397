"""The AMI builder's steps (the amazon-ebs flow): one side effect each, each recording what it made
the moment AWS returns its id, each cleanup releasing exactly that.

Temporary resources (key pair, security group, instance and its volumes) are tagged at creation
with the build id and their owner, so `goldsmith gc --platform aws` can reap what a killed run
left. The AMI and its copies are the artifact: their steps remove them only when the build fails;
they are tagged ``goldsmith:state=building`` from the start and ``complete`` by the last step, so a
half-built AMI is never adopted.
"""

from __future__ import annotations

import base64
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ...communicators.ssh import SshCommunicator, SshTarget
from ...engine.errors import GoldsmithError
from ...engine import cancel
from ...engine.runner import BaseStep
from ...provisioners.base import reboot_and_reconnect
from ...engine.state import BuildState
from ..common.cloud_init import combine, user_data
from ..common.keys import KeyPair, generate_ed25519
from . import images as img
from .client import (Aws, AwsError, call, call_retrying, describe_instance, tag_spec, tags_of, wait_for_image,
                     wait_for_instance)
from .config import AmiImageSpec, split_host_port


@dataclass
class AwsBuildState(BuildState):
    spec: AmiImageSpec | None = None
    base_dir: Path = Path(".")
    cache_root: Path = Path(".")
    aws: Aws | None = None
    region: str = ""
    resolved: dict[str, Any] = field(default_factory=dict)  # what check found (region, source AMI): identity
    source: dict[str, Any] = field(default_factory=dict)  # the source AMI, with what check-source learnt
    owner_tags: dict[str, str] = field(default_factory=dict)  # goldsmith:* tags of every resource of this build
    ami_name: str = ""
    client_key: KeyPair | None = None
    host_key: KeyPair | None = None
    key_name: str = ""
    security_group_id: str = ""
    instance_id: str = ""
    instance: dict[str, Any] = field(default_factory=dict)
    comm: SshCommunicator | None = None
    packages: list[dict[str, str]] = field(default_factory=list)
    path_digests: dict[str, str] = field(default_factory=dict)  # digest_paths -> sha256, before generalization
    stopped: bool = False
    amis: dict[str, str] = field(default_factory=dict)  # region -> AMI id (the build region's first)
    made: set[str] = field(default_factory=set)  # regions whose AMI this run created (a failure removes them)
    snapshots: dict[str, list[str]] = field(default_factory=dict)
    created: dict[str, str] = field(default_factory=dict)  # region -> CreationDate
    adopted: bool = False

    @property
    def ec2(self) -> Any:
        return self.aws.ec2(self.region)

    def ami_tags(self, state_tag: str) -> dict[str, str]:
        spec = self.spec
        tags = dict(spec.tags)
        tags.update(self.owner_tags)
        tags.update({"Name": self.ami_name, "goldsmith:fingerprint": self.fingerprint, "goldsmith:state": state_tag,
                     "goldsmith:source-ami": self.source.get("id", ""), "goldsmith:source-region": self.region,
                     "goldsmith:regions": ",".join([self.region, *spec.distribution.regions])})
        if self.packages:
            tags["goldsmith:package-count"] = str(len(self.packages))
        return tags

    def run_tags(self, name: str) -> dict[str, str]:
        tags = dict(self.spec.run_tags)
        tags.update(self.owner_tags)
        tags["Name"] = name
        return tags


def remove_made_images(state: AwsBuildState, regions: list[str]) -> None:
    """Deregister (and delete the snapshots of) the AMIs this run made in ``regions``."""
    problems = []
    for region in regions:
        if region not in state.made:
            continue
        try:
            img.remove_image(state.aws.ec2(region), state.amis[region], state.log,
                             known_snapshots=state.snapshots.get(region, []))
        except GoldsmithError as exc:
            problems.append(str(exc))
            continue
        state.made.discard(region)
        state.amis.pop(region, None)
        state.release(f"ami:{region}")
    if problems:
        raise GoldsmithError("; ".join(problems))


class StepCheckSource(BaseStep[AwsBuildState]):
    """The AMI resolved at check time must still be there: a build never silently takes another one."""

    name = "check-source"

    def run(self, state: AwsBuildState) -> None:
        image = img.describe_image(state.ec2, state.source["id"])
        if image is None or image.get("State") != "available":
            raise GoldsmithError(f"the source AMI {state.source['id']} resolved at check time is no longer available "
                                 f"in {state.region}", hint="run `pulumi up` again to resolve the source anew")
        state.source["root_device_name"] = image.get("RootDeviceName") or state.source.get("root_device_name") or "/dev/xvda"
        root = [m for m in image.get("BlockDeviceMappings", []) if m.get("DeviceName") == state.source["root_device_name"]]
        state.source["root_volume_size"] = (root[0].get("Ebs") or {}).get("VolumeSize", 0) if root else 0
        state.log.info(f"source: {image['ImageId']} {image.get('Name', '')!r} ({state.source.get('found_by', 'id')})")


class StepCheckAmiName(BaseStep[AwsBuildState]):
    """The AMI name must be free in every target region: AWS refuses duplicates (moto does not)."""

    name = "check-ami-name"

    def run(self, state: AwsBuildState) -> None:
        for region in [state.region, *state.spec.distribution.regions]:
            if region in state.amis:
                continue  # adopted
            found = call(state.aws.ec2(region), "describe_images", Owners=["self"],
                         Filters=[{"Name": "name", "Values": [state.ami_name]}])["Images"]
            if found:
                image = found[0]
                tags = tags_of(image)
                if tags.get("goldsmith:fingerprint") == state.fingerprint:
                    raise GoldsmithError(
                        f"AMI {image['ImageId']} ({region}) is named {state.ami_name} but was left incomplete by build "
                        f"{tags.get('goldsmith:build-id', '?')} (goldsmith:state={tags.get('goldsmith:state', '?')})",
                        hint="run `goldsmith gc --platform aws --aws-region " + region + "` or deregister it")
                raise GoldsmithError(f"the AMI name {state.ami_name} is taken in {region} by {image['ImageId']}, "
                                     "which goldsmith did not build", hint="rename the image (`name`) or deregister it")


class StepCreateKeyPair(BaseStep[AwsBuildState]):
    """An ephemeral ed25519 key made here and imported: the private key never leaves this machine."""

    name = "key-pair"

    def run(self, state: AwsBuildState) -> None:
        state.client_key = generate_ed25519(f"goldsmith-build-{state.build_id}")
        state.log.masker.add(state.client_key.private_openssh)
        name = f"goldsmith-{state.build_id}"
        call(state.ec2, "import_key_pair", KeyName=name, PublicKeyMaterial=state.client_key.public_openssh.encode(),
             TagSpecifications=[tag_spec("key-pair", state.run_tags(name))])
        state.key_name = name
        state.track("key-pair", f"key pair {name} ({state.region})")
        state.log.info(f"key pair: {name} (ed25519, imported)")

    def cleanup(self, state: AwsBuildState) -> None:
        if state.key_name:
            call(state.ec2, "delete_key_pair", KeyName=state.key_name)
            state.log.info(f"key pair: {state.key_name} deleted")
            state.key_name = ""
        state.release("key-pair")


def default_vpc(ec2: Any) -> str:
    vpcs = call(ec2, "describe_vpcs", Filters=[{"Name": "isDefault", "Values": ["true"]}])["Vpcs"]
    if not vpcs:
        raise GoldsmithError(f"{ec2.meta.region_name} has no default VPC", hint="set instance.subnet_id (and instance.vpc_id)")
    return vpcs[0]["VpcId"]


class StepCreateSecurityGroup(BaseStep[AwsBuildState]):
    """A temporary group admitting SSH from communicator.cidrs only (skipped with instance.security_group_ids)."""

    name = "security-group"

    def run(self, state: AwsBuildState) -> None:
        inst = state.spec.instance
        if inst.security_group_ids:
            state.log.info(f"security group: using {', '.join(inst.security_group_ids)}")
            return
        vpc = inst.vpc_id
        if not vpc and inst.subnet_id:
            vpc = call(state.ec2, "describe_subnets", SubnetIds=[inst.subnet_id])["Subnets"][0]["VpcId"]
        vpc = vpc or default_vpc(state.ec2)
        name = f"goldsmith-{state.build_id}"
        group = call(state.ec2, "create_security_group", GroupName=name, VpcId=vpc,
                     Description=f"goldsmith build {state.build_id} of {state.spec.name}: SSH from the builder only",
                     TagSpecifications=[tag_spec("security-group", state.run_tags(name))])["GroupId"]
        state.security_group_id = group
        state.track("security-group", f"security group {group} ({state.region})")
        cidrs = state.spec.communicator.cidrs
        v4 = [{"CidrIp": c, "Description": "goldsmith builder SSH"} for c in cidrs if ":" not in c]
        v6 = [{"CidrIpv6": c, "Description": "goldsmith builder SSH"} for c in cidrs if ":" in c]
        port = state.spec.communicator.port
        permission: dict[str, Any] = {"IpProtocol": "tcp", "FromPort": port, "ToPort": port}
        if v4:
            permission["IpRanges"] = v4
        if v6:
            permission["Ipv6Ranges"] = v6
        call(state.ec2, "authorize_security_group_ingress", GroupId=group, IpPermissions=[permission])
        state.log.info(f"security group: {group} in {vpc}, tcp/{port} from {', '.join(cidrs)}")

    def cleanup(self, state: AwsBuildState) -> None:
        if state.security_group_id:
            # The instance's network interface lets go of the group a while after termination.
            call_retrying(state.ec2, "delete_security_group", codes={"DependencyViolation"},
                          timeout=state.spec.wait.instance_timeout_s, interval=5, GroupId=state.security_group_id)
            state.log.info(f"security group: {state.security_group_id} deleted")
            state.security_group_id = ""
        state.release("security-group")


def block_device_mappings(state: AwsBuildState) -> list[dict[str, Any]]:
    vol = state.spec.instance.root_volume
    ebs: dict[str, Any] = {"VolumeType": vol.type, "DeleteOnTermination": True}
    # The source AMI's size when none is given: AWS would infer it, moto insists on one, and the AMI
    # records it either way.
    size = vol.size_gb or state.source.get("root_volume_size") or 0
    if size:
        ebs["VolumeSize"] = size
    if vol.iops:
        ebs["Iops"] = vol.iops
    if vol.throughput:
        ebs["Throughput"] = vol.throughput
    if vol.encrypted:
        ebs["Encrypted"] = True
        if vol.kms_key_id:
            ebs["KmsKeyId"] = vol.kms_key_id
    return [{"DeviceName": state.source.get("root_device_name") or "/dev/xvda", "Ebs": ebs}]


def run_instances_params(state: AwsBuildState, user_data_text: str) -> dict[str, Any]:
    spec, inst = state.spec, state.spec.instance
    name = f"goldsmith builder {spec.name} {state.build_id}"
    params: dict[str, Any] = {
        "ImageId": state.source["id"], "InstanceType": inst.type, "MinCount": 1, "MaxCount": 1,
        "KeyName": state.key_name, "UserData": user_data_text,
        "BlockDeviceMappings": block_device_mappings(state),
        "MetadataOptions": {"HttpTokens": inst.metadata_tokens, "HttpEndpoint": "enabled"},
        "TagSpecifications": [tag_spec("instance", state.run_tags(name)), tag_spec("volume", state.run_tags(name))],
        "ClientToken": f"goldsmith-{state.build_id}",  # a retried RunInstances never starts a second builder
    }
    groups = list(inst.security_group_ids) or [state.security_group_id]
    if inst.associate_public_ip is not None:
        nic: dict[str, Any] = {"DeviceIndex": 0, "Groups": groups, "AssociatePublicIpAddress": inst.associate_public_ip,
                               "DeleteOnTermination": True}
        if inst.subnet_id:
            nic["SubnetId"] = inst.subnet_id
        params["NetworkInterfaces"] = [nic]
    else:
        params["SecurityGroupIds"] = groups
        if inst.subnet_id:
            params["SubnetId"] = inst.subnet_id
    if inst.iam_instance_profile:
        key = "Arn" if inst.iam_instance_profile.startswith("arn:") else "Name"
        params["IamInstanceProfile"] = {key: inst.iam_instance_profile}
    if inst.spot:
        options: dict[str, Any] = {"SpotInstanceType": "one-time", "InstanceInterruptionBehavior": "terminate"}
        if inst.spot_max_price:
            options["MaxPrice"] = inst.spot_max_price
        params["InstanceMarketOptions"] = {"MarketType": "spot", "SpotOptions": options}
    else:
        params["InstanceInitiatedShutdownBehavior"] = "stop"
    return params


def own_user_data(state: AwsBuildState) -> str:
    inst = state.spec.instance
    if inst.user_data_file:
        path = Path(inst.user_data_file)
        return (path if path.is_absolute() else state.base_dir / path).read_text()
    return inst.user_data


class StepRunInstance(BaseStep[AwsBuildState]):
    """The builder instance, with our host key and login key in its user data (cloud-config)."""

    name = "run-instance"

    def run(self, state: AwsBuildState) -> None:
        state.host_key = generate_ed25519(f"goldsmith-host-{state.build_id}")
        state.log.masker.add(state.host_key.private_openssh)
        text = combine(user_data(state.spec.communicator.user, state.client_key, state.host_key,
                                 hostname=f"goldsmith-{state.build_id[-8:]}"), own_user_data(state))
        if len(text.encode()) > 16 * 1024:
            raise GoldsmithError(f"the user data is {len(text.encode())} bytes; EC2 takes 16384",
                                 hint="shorten instance.user_data")
        params = run_instances_params(state, text)
        inst = state.spec.instance
        reservation = call(state.ec2, "run_instances", **params)
        state.instance_id = reservation["Instances"][0]["InstanceId"]
        state.track("instance", f"instance {state.instance_id} ({state.region})")
        state.log.info(f"instance: {state.instance_id} ({inst.type}{', spot' if inst.spot else ''}) from {state.source['id']}")
        wait = state.spec.wait
        state.instance = wait_for_instance(state.ec2, state.instance_id, {"running"}, timeout=wait.instance_timeout_s,
                                           interval=wait.poll_interval_s, log=state.log, sleep=cancel.sleep,
                                           fail={"shutting-down", "terminated", "stopping", "stopped"})
        state.log.info(f"instance: {state.instance_id} running; private {state.instance.get('PrivateIpAddress', '-')}, "
                       f"public {state.instance.get('PublicIpAddress', '-')}")

    def cleanup(self, state: AwsBuildState) -> None:
        if not state.instance_id:
            return
        try:
            call(state.ec2, "terminate_instances", InstanceIds=[state.instance_id])
        except AwsError as exc:
            if exc.code != "InvalidInstanceID.NotFound":
                raise
        wait = state.spec.wait
        wait_for_instance(state.ec2, state.instance_id, {"terminated"}, timeout=wait.instance_timeout_s,
                          interval=wait.poll_interval_s, log=state.log, gone_ok=True)
        state.log.info(f"instance: {state.instance_id} terminated")
        state.instance_id = ""
        state.release("instance")


ADDRESS_KEYS = {"public_ip": "PublicIpAddress", "private_ip": "PrivateIpAddress",
                "public_dns": "PublicDnsName", "private_dns": "PrivateDnsName"}


def ssh_address(state: AwsBuildState) -> tuple[str, int]:
    """Where to connect: communicator.host if set, else the instance's address on the chosen interface."""
    c = state.spec.communicator
    if c.host:
        return split_host_port(c.host, c.port)
    key = ADDRESS_KEYS[c.interface]
    deadline = time.monotonic() + 120
    instance = state.instance
    while not instance.get(key):
        if time.monotonic() > deadline:
            raise GoldsmithError(f"instance {state.instance_id} has no {c.interface.replace('_', ' ')}",
                                 hint="set communicator.interface = 'private_ip' (with a bastion or a VPN), "
                                      "or instance.associate_public_ip = true")
        cancel.sleep(state.spec.wait.poll_interval_s)
        instance = describe_instance(state.ec2, state.instance_id) or {}
    return instance[key], c.port


def bastion_target(state: AwsBuildState) -> SshTarget | None:
    b = state.spec.communicator.bastion
    if b is None:
        return None
    host, port = split_host_port(b.host, 22)
    key = b.private_key
    if b.private_key_file:
        path = Path(b.private_key_file)
        key = (path if path.is_absolute() else state.base_dir / path).read_text()
    state.log.masker.add(key)
    return SshTarget(host=host, port=port, user=b.user, private_key=key, host_key=b.host_key)


def console_tail(state: AwsBuildState, lines: int = 25) -> str:
    try:
        output = call(state.ec2, "get_console_output", InstanceId=state.instance_id, Latest=True).get("Output") or ""
    except GoldsmithError:
        return ""
    try:
        text = base64.b64decode(output).decode("utf-8", "replace")
    except ValueError:
        text = output
    return "\n".join(text.splitlines()[-lines:])


class StepWaitForSsh(BaseStep[AwsBuildState]):
    name = "wait-for-ssh"

    def run(self, state: AwsBuildState) -> None:
        host, port = ssh_address(state)
        via = bastion_target(state)
        target = SshTarget(host=host, port=port, user=state.spec.communicator.user,
                           private_key=state.client_key.private_openssh, host_key=state.host_key.public_openssh, via=via)
        comm = SshCommunicator(target)
        state.log.info(f"ssh: waiting for {target.user}@{host}:{port}" + (f" via bastion {via.host}:{via.port}" if via else ""))
        try:
            waited = comm.wait_ready(timeout=state.spec.communicator.timeout_s, log=state.log, alive=instance_alive(state))
        except GoldsmithError as exc:
            tail = console_tail(state)
            raise GoldsmithError(f"{exc}" + (f"\n--- console output (last lines) ---\n{tail}" if tail else "")) from exc
        state.comm = comm
        state.outputs.setdefault("timings", {})["boot_to_ssh_s"] = round(waited, 1)

    def cleanup(self, state: AwsBuildState) -> None:
        if state.comm is not None:
            state.comm.close()


def instance_alive(state: AwsBuildState, every: float = 15.0):
    """A cheap liveness probe for the SSH wait: asks EC2 at most every ``every`` seconds."""
    last = {"at": 0.0, "alive": True}

    def alive() -> bool:
        if time.monotonic() - last["at"] >= every:
            instance = describe_instance(state.ec2, state.instance_id) or {}
            last["alive"] = instance.get("State", {}).get("Name") in ("pending", "running")
            last["at"] = time.monotonic()
        return last["alive"]

    return alive


def reboot(state: AwsBuildState) -> None:
    """Reboot the builder and reconnect (used by provisioners that must reboot)."""
    reboot_and_reconnect(state.comm, state.log, timeout=state.spec.communicator.reboot_timeout_s,
                         alive=instance_alive(state))


class StepStopInstance(BaseStep[AwsBuildState]):
    """Stop the instance so the snapshot is consistent. A one-time spot instance cannot be stopped:
    CreateImage then reboots it instead (as Packer does)."""

    name = "stop-instance"

    def run(self, state: AwsBuildState) -> None:
        if state.comm is not None:
            state.comm.close()
        if state.spec.instance.spot:
            state.log.info("instance: spot instances cannot be stopped; CreateImage will reboot it")
            return
        call(state.ec2, "stop_instances", InstanceIds=[state.instance_id])
        wait = state.spec.wait
        wait_for_instance(state.ec2, state.instance_id, {"stopped"}, timeout=wait.instance_timeout_s,
                          interval=wait.poll_interval_s, log=state.log, sleep=cancel.sleep,
                          fail={"terminated", "shutting-down"})
        state.stopped = True
        state.log.info(f"instance: {state.instance_id} stopped")


class StepCreateImage(BaseStep[AwsBuildState]):
    """CreateImage, named with the fingerprint and tagged `building`; waits until available."""

    name = "create-image"

    def run(self, state: AwsBuildState) -> None:
        spec = state.spec
        description = spec.description or f"goldsmith {spec.name} {state.fingerprint[:12]}"
        try:
            ami = call(state.ec2, "create_image", InstanceId=state.instance_id, Name=state.ami_name,
                       Description=description[:255], NoReboot=state.stopped,
                       # Snapshots are tagged once they exist (tag-image): moto fails TagSpecifications for them.
                       TagSpecifications=[tag_spec("image", state.ami_tags(img.BUILDING))])["ImageId"]
        except AwsError as exc:
            if exc.code != "InvalidAMIName.Duplicate":
                raise
            # A retried CreateImage whose first attempt went through: the AMI is ours if it has our build id.
            mine = img.find_images(state.ec2, {"goldsmith:build-id": state.build_id}, states=())
            if not mine:
                raise
            ami = mine[0]["ImageId"]
        state.amis[state.region] = ami
        state.made.add(state.region)
        state.track(f"ami:{state.region}", f"AMI {ami} ({state.region})")
        state.log.info(f"ami: creating {ami} {state.ami_name!r} from {state.instance_id}")
        image = wait_for_image(state.ec2, ami, timeout=spec.wait.image_timeout_s, interval=spec.wait.poll_interval_s,
                               log=state.log, sleep=cancel.sleep)
        state.snapshots[state.region] = img.snapshot_ids(image)
        state.created[state.region] = image.get("CreationDate", "")

    def cleanup(self, state: AwsBuildState) -> None:
        if state.failed:
            remove_made_images(state, [state.region])


class StepCopyImage(BaseStep[AwsBuildState]):
    """Copies to distribution.regions, in parallel, each thread with its own client."""

    name = "copy-image"

    def run(self, state: AwsBuildState) -> None:
        dist = state.spec.distribution
        todo = [r for r in dist.regions if r not in state.amis]
        if not todo:
            state.log.info("copy: nothing to copy" if not dist.regions else "copy: every region has its AMI")
            return

        def created(region: str, ami: str) -> None:
            state.amis[region] = ami
            state.made.add(region)
            state.track(f"ami:{region}", f"AMI {ami} ({region})")

        results = img.copy_to_regions(
            state.aws, source_ami=state.amis[state.region], source_region=state.region, regions=todo,
            name=state.ami_name, description=state.spec.description or f"goldsmith {state.spec.name} {state.fingerprint[:12]}",
            tags=state.ami_tags(img.BUILDING), encrypted=dist.encrypt_copies, kms_key_ids=dist.kms_key_ids,
            client_token=f"goldsmith-{state.build_id}", timeout=state.spec.wait.image_timeout_s,
            interval=state.spec.wait.poll_interval_s, log=state.log, on_created=created)
        for region, image in results.items():
            state.snapshots[region] = img.snapshot_ids(image)
            state.created[region] = image.get("CreationDate", "")

    def cleanup(self, state: AwsBuildState) -> None:
        if state.failed:
            remove_made_images(state, [r for r in state.spec.distribution.regions])


class StepShareImage(BaseStep[AwsBuildState]):
    """Launch permissions for accounts, organizations, OUs (or everyone), in every region."""

    name = "share-image"

    def run(self, state: AwsBuildState) -> None:
        perms = state.spec.distribution.share.permissions()
        if not perms:
            state.log.info("share: not shared")
            return
        for region, ami in sorted(state.amis.items()):
            img.set_launch_permissions(state.aws.ec2(region), ami, perms, [])
        state.log.info(f"share: {len(perms)} launch permission(s) on {len(state.amis)} AMI(s)")


class StepDeprecateImage(BaseStep[AwsBuildState]):
    name = "deprecate-image"

    def run(self, state: AwsBuildState) -> None:
        dist = state.spec.distribution
        if not dist.deprecate_at and not dist.deprecate_after_days:
            return
        for region, ami in sorted(state.amis.items()):
            when = img.deprecation_time(dist.deprecate_at, dist.deprecate_after_days, state.created.get(region))
            img.set_deprecation(state.aws.ec2(region), ami, when)
        state.log.info(f"deprecate: at {when.isoformat()} in {len(state.amis)} region(s)")


class StepTagImage(BaseStep[AwsBuildState]):
    """The last step: tag every AMI and its snapshots (now that they exist) and mark them complete."""

    name = "tag-image"

    def run(self, state: AwsBuildState) -> None:
        tags = state.ami_tags(img.COMPLETE)
        # An adopted AMI keeps the provenance of the build that made it: only the user's tags and the
        # region list are brought up to date.
        adopted = {**state.spec.tags, "goldsmith:regions": tags["goldsmith:regions"]}
        for region, ami in sorted(state.amis.items()):
            ec2 = state.aws.ec2(region)
            image = img.describe_image(ec2, ami)
            if image is None:
                raise GoldsmithError(f"AMI {ami} ({region}) vanished before it was tagged")
            state.snapshots[region] = img.snapshot_ids(image)
            state.created.setdefault(region, image.get("CreationDate", ""))
            if region in state.made:
                img.tag(ec2, [ami, *state.snapshots[region]], tags)
            else:
                img.tag(ec2, [ami, *state.snapshots[region]], adopted)
        state.log.info(f"tags: {len(tags)} tags on {len(state.amis)} AMI(s) and "
                       f"{sum(len(s) for s in state.snapshots.values())} snapshot(s)")
