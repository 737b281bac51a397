"""AMI builds against a real EC2 API peer (moto server) with the SSH side in a real local guest
(tests/peers/ec2_guest.py applies each instance's user data to one QEMU guest): the full flow with
the real provisioners, source resolution, adoption, refresh, in-place updates, retention, a
bastion, and a leak matrix proving that a failure at any step leaves nothing of the build behind.
"""

from __future__ import annotations

import copy
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from goldsmith_provider.builders.aws import builder
from goldsmith_provider.dynamic.aws import AwsImageProvider
from goldsmith_provider.engine.errors import StepError
import fault_matrix
from peers.moto_server import BASE_AMI, COPY_REGION, REGION, TEST_BASES
from peers.ssh_bastion import SshBastion

from .conftest import make_project

pytestmark = pytest.mark.integration

REGIONS = [REGION, COPY_REGION]
WORLD = {"images", "snapshots", "instances", "key_pairs", "security_groups"}


def props_for(moto, guest, name: str, **overrides) -> dict:
    props = {
        "name": name,
        "source": {"type": "ami", "id": BASE_AMI},
        "provisioners": [
            {"type": "file", "source": "files/motd", "destination": "/etc/motd", "mode": "0644"},
            {"type": "shell", "inline": ["echo provisioned-$(id -un) > /etc/goldsmith-it"], "sudo": True},
        ],
        "communicator": {"user": "admin", "host": guest.host, "cidrs": ["10.0.0.0/8"], "timeout_s": 180},
        "aws": moto.connection(REGION),
        "instance": {"type": "t3.micro"},
        "distribution": {"regions": [COPY_REGION]},
        "wait": {"poll_interval_s": 0.2, "instance_timeout_s": 60, "image_timeout_s": 60},
        "generalize": False,
        "tags": {"suite": "integration"},
        "stack": "it", "project": "goldsmith-it", "resource": name,
    }
    props.update(overrides)
    return props


def build(props: dict, root: Path, log):
    spec, problems = builder.prepare(props, root)
    assert problems == [], problems
    resolved, problems = builder.resolve(spec, root)
    assert problems == [], problems
    ident = builder.identify(spec, root, resolved)
    return builder.build(spec, ident, base_dir=root, log=log), spec, ident


def ours(moto, name: str) -> dict[str, list]:
    """AMIs and snapshots tagged with this image name, per region."""
    out = {}
    for region in REGIONS + ["us-west-2"]:
        ec2 = moto.client("ec2", region)
        imgs = ec2.describe_images(Owners=["self"], Filters=[{"Name": "tag:goldsmith:name", "Values": [name]}])["Images"]
        snaps = ec2.describe_snapshots(OwnerIds=["self"], Filters=[{"Name": "tag:goldsmith:name", "Values": [name]}])["Snapshots"]
        out[region] = sorted(i["ImageId"] for i in imgs) + sorted(s["SnapshotId"] for s in snaps)
    return out


def leftovers_of(moto, build_id: str) -> list[str]:
    """Live instances, key pairs and security groups tagged with this build id, in every region."""
    found = []
    tag = [{"Name": "tag:goldsmith:build-id", "Values": [build_id]}]
    for region in REGIONS:
        ec2 = moto.client("ec2", region)
        found += [i["InstanceId"] for r in ec2.describe_instances(Filters=tag + [{"Name": "instance-state-name", "Values": [
            "pending", "running", "stopping", "stopped"]}])["Reservations"] for i in r["Instances"]]
        found += [k["KeyName"] for k in ec2.describe_key_pairs(Filters=tag)["KeyPairs"]]
        found += [g["GroupId"] for g in ec2.describe_security_groups(Filters=tag)["SecurityGroups"]]
    return found


@pytest.fixture
def aws_env(moto_server, monkeypatch):
    """The standard chain for the lifecycle calls (refresh, update, delete): they get the outputs,
    which never carry the spec's secret credentials. Builds use the spec's `aws` section."""
    for key, value in moto_server.env(REGION).items():
        if key != "AWS_ENDPOINT_URL":
            monkeypatch.setenv(key, value)


@pytest.fixture
def project(tmp_path):
    return make_project(tmp_path / "project", motd="goldsmith AMI integration image")


@pytest.fixture
def guest(ec2_guest):
    ec2_guest.reset_commands = ["rm -rf /opt/app /etc/app /etc/goldsmith-it /etc/ec2-user-data-ran"]
    before = len(ec2_guest.errors)
    yield ec2_guest
    assert ec2_guest.errors[before:] == [], "the EC2 guest peer could not apply an instance"


def test_full_flow_copy_share_refresh_adopt_update_delete(moto_server, guest, project, tee_log, aws_env):
    moto = moto_server
    props = props_for(moto, guest, "it-full", generalize=True, provisioners=[
        {"type": "file", "source": "files/motd", "destination": "/etc/motd", "mode": "0644"},
        {"type": "shell", "scripts": ["scripts/configure.sh"], "env": {"GREETING": "hello world"}, "sudo": True},
        {"type": "file", "source": "files/conf.d", "destination": "/etc/app", "mode": "0750"},
        {"type": "packages", "install": ["jq"]},
        {"type": "shell", "inline": ["jq -n '1+1'"]},
    ], instance={"type": "t3.micro", "user_data": "#!/bin/sh\necho from-user-data > /etc/ec2-user-data-ran\n",
                 "root_volume": {"size_gb": 12, "encrypted": True}},
       distribution={"regions": [COPY_REGION], "share": {"accounts": ["111122223333"]}},
       tags={"suite": "integration", "team": "platform"})
    served = len(guest.applied)
    outputs, spec, ident = build(props, project, tee_log)

    # The AMI and its copy, named with the fingerprint, complete, tagged with their snapshots.
    assert set(outputs["ami_ids"]) == {REGION, COPY_REGION}
    assert outputs["image_id"] == outputs["ami_ids"][REGION] and outputs["source_ami_id"] == BASE_AMI
    assert outputs["ami_name"] == f"it-full-{ident.fingerprint[:12]}" and outputs["fingerprint"] == ident.fingerprint
    for region, ami in outputs["ami_ids"].items():
        ec2 = moto.client("ec2", region)
        (image,) = ec2.describe_images(ImageIds=[ami])["Images"]
        tags = {t["Key"]: t["Value"] for t in image["Tags"]}
        assert image["Name"] == outputs["ami_name"] and tags["goldsmith:state"] == "complete"
        assert tags["goldsmith:fingerprint"] == ident.fingerprint and tags["team"] == "platform"
        assert tags["goldsmith:stack"] == "it" and tags["goldsmith:resource"] == "it-full"
        snaps = outputs["snapshot_ids"][region]
        assert snaps, region
        for snap in ec2.describe_snapshots(SnapshotIds=snaps)["Snapshots"]:
            assert {t["Key"]: t["Value"] for t in snap["Tags"]}["goldsmith:fingerprint"] == ident.fingerprint
        perms = ec2.describe_image_attribute(ImageId=ami, Attribute="launchPermission")["LaunchPermissions"]
        assert {"UserId": "111122223333"} in perms

    # The provisioners really ran in the guest, as the login user with sudo, over verified SSH.
    assert "host key verified" in tee_log.text
    (record,) = guest.applied[served:]
    assert record["users"] == ["admin"] and record["key_pair"].startswith("goldsmith-") and record["scripts"] == 1
    assert "ssh_keys" in record["user_data"] and "ed25519_private" in record["user_data"]
    assert guest.sh("cat /etc/motd") == "goldsmith AMI integration image"
    assert guest.sh("cat /opt/app/greeting") == "hello world"
    assert guest.sh("stat -c %a /etc/app && cat /etc/app/app.conf") == "750\nlisten = 8080"
    assert guest.sh("cat /etc/ec2-user-data-ran") == "from-user-data"
    assert guest.sh("jq -n 2+2") == "4"
    # Generalized before the snapshot: no host keys, no build key left for the login user.
    assert guest.sh("ls /etc/ssh/ | grep -c ssh_host_ || true") == "0"
    assert guest.sh("cat /home/admin/.ssh/authorized_keys 2>/dev/null | grep -c goldsmith-build- || true") == "0"
    names = {p.split("=")[0] for p in outputs["packages"]}
    assert {"jq", "openssh-server", "sudo"} <= names and outputs["package_count"] == len(outputs["packages"])

    # The builder's temporary resources are gone; the image outlives them.
    assert leftovers_of(moto, outputs["provenance"]["build_id"]) == []
    assert outputs["ami_ids"][REGION] in moto.inventory([REGION])[REGION]["images"]

    # Refresh: intact, then a copy deregistered out of band is noticed.
    assert builder.read(outputs)["ami_ids"] == outputs["ami_ids"]
    copy_ec2 = moto.client("ec2", COPY_REGION)
    copy_ec2.deregister_image(ImageId=outputs["ami_ids"][COPY_REGION])
    for snap in outputs["snapshot_ids"][COPY_REGION]:
        copy_ec2.delete_snapshot(SnapshotId=snap)
    assert builder.read(outputs) is None

    # The next create adopts the primary by its fingerprint tag (no instance) and copies it anew.
    instances_before = len(guest.applied)
    again, _, _ = build(props, project, tee_log)
    assert again["adopted"] is True and len(guest.applied) == instances_before
    assert again["ami_ids"][REGION] == outputs["ami_ids"][REGION]
    assert again["ami_ids"][COPY_REGION] not in (None, outputs["ami_ids"][COPY_REGION])
    assert "adopting the existing AMI" in tee_log.text
    assert builder.read(again) is not None

    # In place: tags, description, sharing and the copy regions change without a rebuild.
    props2 = copy.deepcopy(props)
    props2.update(tags={"suite": "integration", "owner": "sre"}, description="golden base",
                  distribution={"regions": ["us-west-2"], "share": {"organizations": [
                      "arn:aws:organizations::123456789012:organization/o-abcdefghij"]}})
    spec2, problems = builder.prepare(props2, project)
    assert problems == [] and builder.identify(spec2, project, ident.resolved).fingerprint == ident.fingerprint
    state = {**again, "tags": props["tags"], "description": "", "distribution": props["distribution"]}
    fresh = builder.update_metadata(state, spec2)
    assert set(fresh["ami_ids"]) == {REGION, "us-west-2"}
    assert builder.read({**again, **fresh}) is not None
    ec2 = moto.client("ec2", REGION)
    (image,) = ec2.describe_images(ImageIds=[again["ami_ids"][REGION]])["Images"]
    tags = {t["Key"]: t["Value"] for t in image["Tags"]}
    assert tags["owner"] == "sre" and "team" not in tags
    # (moto ignores ModifyImageAttribute's Description, so the new description cannot be seen here.)
    assert tags["goldsmith:build-id"] == outputs["provenance"]["build_id"], "adoption keeps the builder's provenance"
    perms = ec2.describe_image_attribute(ImageId=image["ImageId"], Attribute="launchPermission")["LaunchPermissions"]
    assert {"UserId": "111122223333"} not in perms
    assert {"OrganizationArn": "arn:aws:organizations::123456789012:organization/o-abcdefghij"} in perms
    assert ours(moto, "it-full")[COPY_REGION] == [], "the dropped region's copy and snapshots are removed"

    # Delete: every region's AMI and snapshots are gone.
    builder.delete({**again, **fresh}, keep_previous=0, log=tee_log)
    assert ours(moto, "it-full") == {REGION: [], COPY_REGION: [], "us-west-2": []}


def test_source_resolution_at_check_time(moto_server, project):
    """Filters take the newest match (a newer base is a rebuild reason), SSM parameters and ids
    resolve, and nothing found is a check failure naming the property and the search."""
    moto = moto_server
    ec2 = moto.client("ec2", REGION)
    old, new = (b["ami_id"] for b in TEST_BASES)
    provider = AwsImageProvider()
    props = {"name": "it-resolve", "communicator": {"cidrs": ["10.0.0.0/8"]}, "aws": moto.connection(REGION),
             "source": {"type": "filter", "owners": ["self"], "name": "goldsmith-test-base-*",
                        "filters": {"tag:channel": ["stable"]}},
             "base_dir": str(project)}
    first = provider.check({}, props)
    assert first.failures == [], [(f.property, f.reason) for f in first.failures]
    assert first.inputs["resolved"]["source_ami_id"] == old
    # The vendor promotes a newer base to the channel: the same filter now finds it.
    ec2.create_tags(Resources=[new], Tags=[{"Key": "channel", "Value": "stable"}])
    try:
        second = provider.check(first.inputs, props)
        assert second.inputs["resolved"]["source_ami_id"] == new
        assert second.inputs["fingerprint"] != first.inputs["fingerprint"]
        assert second.inputs["rebuild_reasons"][0].startswith(
            f"source AMI changed: {old} -> {new} (goldsmith-test-base-2025-02, 2025-02-01")
        assert provider.diff(old, first.inputs, second.inputs).replaces == ["fingerprint"]
        several = provider.check({}, {**props, "source": {**props["source"], "most_recent": False}})
        assert [f.property for f in several.failures] == ["source.most_recent"]
    finally:
        ec2.create_tags(Resources=[new], Tags=[{"Key": "channel", "Value": "candidate"}])

    ssm = moto.client("ssm", REGION)
    ssm.put_parameter(Name="/goldsmith/it/base-ami", Value=old, Type="String", DataType="aws:ec2:image", Overwrite=True)
    by_ssm = provider.check({}, {**props, "source": {"type": "ssm", "parameter": "/goldsmith/it/base-ami"}})
    assert by_ssm.inputs["resolved"]["source_ami_id"] == old
    assert by_ssm.inputs["fingerprint"] == first.inputs["fingerprint"], "how the AMI was found is not identity"
    public = "/aws/service/ami-amazon-linux-latest/al2023-ami-kernel-6.1-x86_64"
    by_public = provider.check({}, {**props, "source": {"type": "ssm", "parameter": public}})
    assert by_public.failures == [], [(f.property, f.reason) for f in by_public.failures]
    assert by_public.inputs["resolved"]["source_ami_id"] == ssm.get_parameter(Name=public)["Parameter"]["Value"]

    nothing = provider.check({}, {**props, "source": {"type": "filter", "owners": ["self"], "name": "no-such-*"}})
    assert [(f.property, f.reason) for f in nothing.failures] == [
        ("source", "no AMI in us-east-1 matches owners=self name='no-such-*' architecture=x86_64 virtualization_type=hvm")]
    gone = provider.check({}, {**props, "source": {"type": "ami", "id": "ami-0123456789abcdef0"}})
    assert [f.property for f in gone.failures] == ["source.id"]
    missing = provider.check({}, {**props, "source": {"type": "ssm", "parameter": "/goldsmith/it/none"}})
    assert [f.property for f in missing.failures] == ["source.parameter"]
    same_region = provider.check({}, {**props, "distribution": {"regions": [REGION]}})
    assert [f.property for f in same_region.failures] == ["distribution.regions[0]"]


# --- the leak matrix ------------------------------------------------------------------------------------

# Every step of the build, from the builder's own step list (tests/fault_matrix.py).
LEAK_STEPS = fault_matrix.aws_cases()


@pytest.mark.fault_matrix("aws")
@pytest.mark.parametrize("step", LEAK_STEPS)
def test_a_failure_at_any_step_leaves_nothing(moto_server, guest, project, tee_log, monkeypatch, step):
    moto = moto_server
    name = "it-leak-" + step.replace("[", "").replace("]", "").replace(" ", "-")
    props = props_for(moto, guest, name, distribution={"regions": [COPY_REGION], "share": {"accounts": ["111122223333"]}})
    before = moto.inventory(REGIONS)
    monkeypatch.setenv("GOLDSMITH_FAIL_STEP", step)
    with pytest.raises(StepError) as info:
        build(props, project, tee_log)
    assert info.value.step == step and "injected failure" in str(info.value)
    after = moto.inventory(REGIONS)
    for region in REGIONS:
        for kind in WORLD:
            assert after[region][kind] == before[region][kind], (region, kind, after[region][kind] - before[region][kind])
    assert ours(moto, name) == {REGION: [], COPY_REGION: [], "us-west-2": []}
    if step.startswith("provision["):
        assert guest.sh("cat /etc/motd") == "goldsmith AMI integration image"  # it really ran in the guest


def test_a_failing_provisioner_shows_its_output_and_leaves_nothing(moto_server, guest, project, tee_log):
    moto = moto_server
    props = props_for(moto, guest, "it-broken", provisioners=[
        {"type": "shell", "inline": ["echo preparing", "echo 'E: the thing is broken' >&2", "exit 7"]},
        {"type": "shell", "inline": ["echo never runs"]}])
    before = moto.inventory(REGIONS)
    with pytest.raises(StepError) as info:
        build(props, project, tee_log)
    assert info.value.step == "provision[0] shell"
    assert "exit status 7" in str(info.value) and "E: the thing is broken" in str(info.value)
    assert "never runs" not in tee_log.text
    assert moto.inventory(REGIONS) == before


# --- a bastion, a spot instance; retention; the reaper ------------------------------------------------


def test_build_through_a_bastion_on_a_spot_instance(moto_server, guest, project, tee_log, tmp_path, aws_env):
    moto = moto_server
    bastion = SshBastion(user="jump")
    try:
        key_file = tmp_path / "bastion.pem"
        key_file.write_text(bastion.client_key.private_openssh)
        props = props_for(moto, guest, "it-bastion", distribution={}, instance={"type": "t3.micro", "spot": True})
        props["communicator"]["bastion"] = {"host": bastion.host, "user": "jump", "host_key": bastion.host_key,
                                            "private_key_file": str(key_file)}
        outputs, _, _ = build(props, project, tee_log)
        host, port = guest.host.split(":")
        assert (host, int(port)) in bastion.channels, "the build's SSH went through the bastion"
        assert "via bastion" in tee_log.text and "spot instances cannot be stopped" in tee_log.text
        assert guest.sh("cat /etc/goldsmith-it") == "provisioned-root"  # admin's login, through sudo
        assert guest.applied[-1]["users"] == ["admin"]
        builder.delete(outputs, keep_previous=0, log=tee_log)
        assert ours(moto, "it-bastion")[REGION] == []

        # A bastion offering another host key is refused, not trusted.
        wrong = copy.deepcopy(props)
        wrong["communicator"]["bastion"]["host_key"] = SshBastion().host_key
        wrong["communicator"]["timeout_s"] = 20
        with pytest.raises(StepError) as info:
            build(wrong, project, tee_log)
        assert info.value.step == "wait-for-ssh" and "unexpected host key" in str(info.value)
    finally:
        bastion.close()


def test_keep_previous_retains_replaced_amis(moto_server, guest, project, tee_log, aws_env):
    moto = moto_server
    built = []
    for version in (1, 2, 3):
        props = props_for(moto, guest, "it-keep", retention={"keep_previous": 1},
                          provisioners=[{"type": "shell", "inline": [f"echo v{version}"]}])
        outputs, _, _ = build(props, project, tee_log)
        built.append(outputs)
        if version > 1:  # Pulumi replaces: the new image exists, then the old one is deleted
            builder.delete(built[-2], keep_previous=1, log=tee_log)
    amis = {o["ami_ids"][REGION] for o in built}
    left = set(ours(moto, "it-keep")[REGION]) & amis
    assert left == {built[1]["ami_ids"][REGION], built[2]["ami_ids"][REGION]}, "v1 pruned, v2 kept as the previous one"
    assert built[0]["ami_ids"][COPY_REGION] not in ours(moto, "it-keep")[COPY_REGION], "pruned in every region"
    assert "retention: keeping" in tee_log.text
    builder.delete(built[2], keep_previous=1, log=tee_log)  # destroy: nothing newer, so it goes
    builder.delete(built[1], keep_previous=0, log=tee_log)
    assert ours(moto, "it-keep") == {REGION: [], COPY_REGION: [], "us-west-2": []}


def test_gc_reaps_the_resources_of_dead_builds_only(moto_server, tmp_path):
    moto = moto_server
    ec2 = moto.client("ec2", REGION)
    dead = subprocess.Popen(["true"])
    dead.wait()
    host = os.uname().nodename

    def tags(build_id, pid):
        return [{"Key": "goldsmith:build-id", "Value": build_id}, {"Key": "goldsmith:owner-pid", "Value": str(pid)},
                {"Key": "goldsmith:owner-host", "Value": host}, {"Key": "goldsmith:name", "Value": "it-gc"},
                {"Key": "goldsmith:created-at", "Value": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}]

    made = {}
    for label, pid in (("dead", dead.pid), ("live", os.getpid())):
        build_id = f"it-gc-{label}"
        kp = f"goldsmith-{build_id}"
        ec2.create_key_pair(KeyName=kp, KeyType="ed25519", TagSpecifications=[{"ResourceType": "key-pair", "Tags": tags(build_id, pid)}])
        sg = ec2.create_security_group(GroupName=kp, Description="x", TagSpecifications=[
            {"ResourceType": "security-group", "Tags": tags(build_id, pid)}])["GroupId"]
        iid = ec2.run_instances(ImageId=BASE_AMI, InstanceType="t3.micro", MinCount=1, MaxCount=1, KeyName=kp,
                                SecurityGroupIds=[sg], TagSpecifications=[
                                    {"ResourceType": "instance", "Tags": tags(build_id, pid)}])["Instances"][0]["InstanceId"]
        ami = ec2.create_image(InstanceId=iid, Name=f"{build_id}-ami", TagSpecifications=[
            {"ResourceType": "image", "Tags": tags(build_id, pid) + [{"Key": "goldsmith:state", "Value": "building"}]}])["ImageId"]
        made[label] = {"kp": kp, "sg": sg, "iid": iid, "ami": ami}

    env = {**os.environ, **moto.env(REGION)}
    gc = [sys.executable, "-m", "goldsmith_provider.cli", "gc", "--platform", "aws", "--aws-region", REGION]
    dry = subprocess.run(gc + ["--dry-run"], capture_output=True, text=True, env=env, timeout=120)
    assert dry.returncode == 0, dry.stderr
    listed = dry.stdout
    for key in ("kp", "sg", "iid", "ami"):
        assert made["dead"][key] in listed and made["live"][key] not in listed, listed
    assert "4 orphaned resource(s) found" in listed and ec2.describe_key_pairs(KeyNames=[made["dead"]["kp"]])["KeyPairs"]

    real = subprocess.run(gc, capture_output=True, text=True, env=env, timeout=300)
    assert real.returncode == 0, real.stderr
    world = moto.inventory([REGION])[REGION]
    assert made["dead"]["iid"] not in world["instances"] and made["dead"]["kp"] not in world["key_pairs"]
    assert made["dead"]["sg"] not in world["security_groups"] and made["dead"]["ami"] not in world["images"]
    assert {made["live"]["iid"], made["live"]["kp"], made["live"]["sg"], made["live"]["ami"]} <= \
        world["instances"] | world["key_pairs"] | world["security_groups"] | world["images"]
    # --older-than reaps even a live owner's leftovers; no region configured means no AWS call at all.
    old = subprocess.run(gc + ["--older-than", "0"], capture_output=True, text=True, env=env, timeout=300)
    assert "4 orphaned resource(s) removed" in old.stdout, old.stdout + old.stderr
    none = subprocess.run([sys.executable, "-m", "goldsmith_provider.cli", "gc", "--platform", "aws", "--dry-run"],
                          capture_output=True, text=True, env={**env, "AWS_ENDPOINT_URL": "http://127.0.0.1:9"}, timeout=60)
    assert none.returncode == 0 and "0 orphaned resource(s) found" in none.stdout
