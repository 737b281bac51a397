"""The AMI builder without AWS: its settings table (accept/reject with property paths), the identity,
the source resolution, the waiter and the API requests it makes (botocore's Stubber: no traffic)."""

import copy
import email
from datetime import datetime, timezone

import pytest

from goldsmith_provider.builders.aws import builder, images, source, steps
from goldsmith_provider.builders.aws.client import AwsError, wait_for_image
from goldsmith_provider.builders.aws.config import AmiFilterSource, AmiImageSpec
from goldsmith_provider.builders.aws.reaper import orphan_reason
from goldsmith_provider.builders.common.cloud_init import combine, user_data
from goldsmith_provider.builders.common.keys import generate_ed25519
from goldsmith_provider.builders.qemu import builder as qemu_builder
from goldsmith_provider.dynamic.aws import AwsImageProvider
from goldsmith_provider.engine.log import NullLog


@pytest.fixture(autouse=True)
def no_aws(monkeypatch):
    """Nothing here may reach AWS: a dead local endpoint and fake credentials, whatever the machine has."""
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:9")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "unit")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "unit")
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    monkeypatch.delenv("AWS_PROFILE", raising=False)


def stubbed(service="ec2", region="us-east-1"):
    import boto3
    from botocore.stub import Stubber

    client = boto3.session.Session().client(service, region_name=region, aws_access_key_id="x",
                                            aws_secret_access_key="x", endpoint_url="http://127.0.0.1:9")
    stub = Stubber(client)
    stub.activate()
    return client, stub


GOOD = {
    "name": "base",
    "source": {"type": "ami", "id": "ami-04681a1dbd79675a5"},
    "provisioners": [{"type": "shell", "inline": ["true"]}],
    "communicator": {"cidrs": ["203.0.113.7/32"]},
    "aws": {"region": "us-east-1"},
}

KEY = " ".join(generate_ed25519("bastion").public_openssh.split()[:2])

REJECT = [
    (lambda p: p.pop("source"), "source", "is required"),
    (lambda p: p.update(source={"type": "ami", "id": "ami-xyz"}), "source.id", "is not an AMI id"),
    (lambda p: p.update(source={"type": "amazon"}), "source.type", "must be one of"),
    (lambda p: p.update(source={"type": "filter", "name": "debian-*"}), "source.owners", "is required"),
    (lambda p: p.update(source={"type": "filter", "owners": []}), "source.owners", "at least one owner"),
    (lambda p: p.update(source={"type": "filter", "owners": ["debian"]}), "source.owners[0]", "12-digit account id"),
    (lambda p: p.update(source={"type": "filter", "owners": ["self"], "architecture": "sparc"}), "source.architecture", "must be one of"),
    (lambda p: p.update(source={"type": "filter", "owners": ["self"], "root_device_type": "instance-store"}), "source.root_device_type", "EBS"),
    (lambda p: p.update(source={"type": "ssm", "parameter": "aws/service/x"}), "source.parameter", "starting with '/'"),
    (lambda p: p.update(communicator={}), "communicator.cidrs", "is required unless"),
    (lambda p: p.update(communicator={"cidrs": ["10.0.0.1/8"]}), "communicator.cidrs[0]", "not a CIDR"),
    (lambda p: p.update(communicator={"cidrs": ["10.0.0.0/8"], "interface": "ipv6"}), "communicator.interface", "must be one of"),
    (lambda p: p.update(communicator={"cidrs": ["10.0.0.0/8"], "host": "a:b:c"}), "communicator.host", "'host' or 'host:port'"),
    (lambda p: p.update(communicator={"cidrs": ["10.0.0.0/8"], "host": "h:99999"}), "communicator.host", "'host' or 'host:port'"),
    (lambda p: p.update(communicator={"cidrs": ["10.0.0.0/8"], "bastion": {"host": "b"}}), "communicator.bastion.host_key", "is required"),
    (lambda p: p.update(communicator={"cidrs": ["10.0.0.0/8"], "bastion": {"host": "b", "host_key": "nope"}}), "communicator.bastion.host_key", "OpenSSH public host key"),
    (lambda p: p.update(communicator={"cidrs": ["10.0.0.0/8"], "bastion": {"host": "b", "host_key": KEY}}), "communicator.bastion", "exactly one of `private_key`"),
    (lambda p: p.update(communicator={"cidrs": ["10.0.0.0/8"], "bastion": {"host": "b", "host_key": KEY, "private_key_file": "nope.pem"}}), "communicator.bastion.private_key_file", "file not found"),
    (lambda p: p.update(instance={"security_group_ids": ["sg-0123456789abcdef0"]}), "communicator.cidrs", "only applies to the temporary"),
    (lambda p: p.update(instance={"security_group_ids": ["group-a"]}), "instance.security_group_ids[0]", "not a security group id"),
    (lambda p: p.update(instance={"subnet_id": "sub-1"}), "instance.subnet_id", "not a subnet id"),
    (lambda p: p.update(instance={"type": "large"}), "instance.type", "not an instance type"),
    (lambda p: p.update(instance={"spot_max_price": "0.1"}), "instance.spot_max_price", "only applies with spot"),
    (lambda p: p.update(instance={"user_data": "x", "user_data_file": "pyproject.toml"}), "instance", "at most one of `user_data`"),
    (lambda p: p.update(instance={"user_data": "x" * 15000}), "instance.user_data", "too long"),
    (lambda p: p.update(instance={"root_volume": {"type": "gp9"}}), "instance.root_volume.type", "must be one of"),
    (lambda p: p.update(instance={"root_volume": {"kms_key_id": "alias/x"}}), "instance.root_volume.kms_key_id", "encrypted = true"),
    (lambda p: p.update(instance={"root_volume": {"type": "gp2", "throughput": 250}}), "instance.root_volume.throughput", "only applies to gp3"),
    (lambda p: p.update(instance={"root_volume": {"size_gb": -1}}), "instance.root_volume.size_gb", "at least 0"),
    (lambda p: p.update(aws={"region": "Europe"}), "aws.region", "not an AWS region"),
    (lambda p: p.update(aws={"access_key_id": "AKIA"}), "aws", "both access_key_id and secret_access_key"),
    (lambda p: p.update(aws={"endpoint_url": "localhost:5000"}), "aws.endpoint_url", "http(s) URL"),
    (lambda p: p.update(distribution={"regions": ["eu-west-1", "eu-west-1"]}), "distribution.regions", "twice"),
    (lambda p: p.update(distribution={"regions": ["mars-1"]}), "distribution.regions[0]", "not an AWS region"),
    (lambda p: p.update(distribution={"regions": ["eu-west-1"], "kms_key_ids": {"eu-west-2": "k"}, "encrypt_copies": True}), "distribution.kms_key_ids.eu-west-2", "not one of the copy regions"),
    (lambda p: p.update(distribution={"regions": ["eu-west-1"], "kms_key_ids": {"eu-west-1": "k"}}), "distribution.kms_key_ids", "encrypt_copies = true"),
    (lambda p: p.update(distribution={"share": {"accounts": ["1234"]}}), "distribution.share.accounts[0]", "123456789012"),
    (lambda p: p.update(distribution={"share": {"organizations": ["o-abc"]}}), "distribution.share.organizations[0]", "organization/o-"),
    (lambda p: p.update(distribution={"deprecate_at": "next year"}), "distribution.deprecate_at", "RFC 3339"),
    (lambda p: p.update(distribution={"deprecate_at": "2030-01-01T00:00:00Z", "deprecate_after_days": 3}), "distribution", "at most one of"),
    (lambda p: p.update(wait={"poll_interval_s": 0}), "wait.poll_interval_s", "at least 0.05"),
    (lambda p: p.update(tags={"goldsmith:fingerprint": "x"}), "tags", "reserved"),
    (lambda p: p.update(run_tags={"aws:x": "y"}), "run_tags", "reserved"),
    (lambda p: p.update(name="Base!"), "name", "must be 1-63 characters"),
    (lambda p: p.update(provisioners=[{"type": "shel", "inline": ["x"]}]), "provisioners[0].type", "did you mean 'shell'"),
]


@pytest.mark.parametrize("mutate,path,reason", REJECT, ids=[r[1] + ":" + r[2][:20] for r in REJECT])
def test_check_rejects_with_property_path(tmp_path, mutate, path, reason):
    (tmp_path / "pyproject.toml").write_text("")
    props = copy.deepcopy(GOOD)
    mutate(props)
    props["base_dir"] = str(tmp_path)
    result = AwsImageProvider().check({}, props)
    found = [(f.property, f.reason) for f in result.failures]
    assert any(p == path and reason in r for p, r in found), found
    assert "fingerprint" not in result.inputs and "resolved" not in result.inputs  # no lookup for a bad spec


def test_check_reports_every_problem_at_once(tmp_path):
    props = {"name": "X", "source": {"type": "filter", "owners": []}, "communicator": {"cidrs": ["x"]},
             "instance": {"type": "huge"}, "distribution": {"regions": ["nowhere"]}, "bogus": 1, "base_dir": str(tmp_path)}
    failures = {f.property for f in AwsImageProvider().check({}, props).failures}
    assert {"name", "source.owners", "communicator.cidrs[0]", "instance.type", "distribution.regions[0]", "bogus"} <= failures


def test_the_qemu_provisioner_list_is_accepted_unchanged(tmp_path):
    (tmp_path / "files").mkdir()
    (tmp_path / "files" / "motd").write_text("hi\n")
    provisioners = [{"type": "file", "source": "files/motd", "destination": "/etc/motd", "mode": "0644"},
                    {"type": "packages", "install": ["jq"]},
                    {"type": "shell", "inline": ["echo hi"], "sudo": True, "env": {"A": "1"}},
                    {"type": "updates", "reboot": "auto"}]
    qemu, problems = qemu_builder.prepare({"name": "x", "source": {"type": "debootstrap"}, "provisioners": provisioners}, tmp_path)
    assert problems == []
    ami, problems = builder.prepare({**GOOD, "provisioners": provisioners}, tmp_path)
    assert problems == []
    assert ami.provisioners == qemu.provisioners
    qemu_digests = qemu_builder.identify(qemu, tmp_path).digests
    ami_digests = builder.identify(ami, tmp_path, resolved(ami_id="ami-04681a1dbd79675a5")).digests
    assert {k: v for k, v in qemu_digests.items() if k.startswith("provisioners")} == \
        {k: v for k, v in ami_digests.items() if k.startswith("provisioners")}


def resolved(ami_id="ami-0123456789abcdef0", region="us-east-1", name="debian-12-amd64-20250101"):
    return {"region": region, "source_ami_id": ami_id,
            "source": {"id": ami_id, "name": name, "owner_id": "136693071363", "creation_date": "2025-01-01T00:00:00.000Z",
                       "architecture": "x86_64", "root_device_name": "/dev/xvda", "region": region, "found_by": "id"}}


def test_identity_is_the_resolved_ami_not_how_it_was_found(tmp_path):
    by_id, _ = builder.prepare(GOOD, tmp_path)
    by_filter, _ = builder.prepare({**GOOD, "source": {"type": "filter", "owners": ["self"], "name": "base-*"}}, tmp_path)
    same = builder.identify(by_id, tmp_path, resolved()).fingerprint
    assert builder.identify(by_filter, tmp_path, resolved()).fingerprint == same
    assert builder.identify(by_id, tmp_path, resolved(ami_id="ami-0fedcba9876543210")).fingerprint != same
    assert builder.identify(by_id, tmp_path, resolved(region="eu-west-1")).fingerprint != same
    # Where it goes, who may launch it and how it is tagged is not content: no rebuild.
    moved, _ = builder.prepare({**GOOD, "distribution": {"regions": ["eu-west-1"], "share": {"accounts": ["111122223333"]}},
                                "tags": {"team": "a"}, "instance": {"type": "c7i.large"}}, tmp_path)
    assert builder.identify(moved, tmp_path, resolved()).fingerprint == same
    # What is inside is.
    bigger, _ = builder.prepare({**GOOD, "instance": {"root_volume": {"size_gb": 40}}}, tmp_path)
    assert builder.identify(bigger, tmp_path, resolved()).fingerprint != same
    secret, _ = builder.prepare({**GOOD, "aws": {"region": "us-east-1", "access_key_id": "A", "secret_access_key": "S"}}, tmp_path)
    assert builder.identify(secret, tmp_path, resolved()).fingerprint == same


def test_check_names_a_newer_source_ami_as_the_rebuild_reason(tmp_path, monkeypatch):
    answers = iter([resolved("ami-0aaaaaaaaaaaaaaaa"), resolved("ami-0bbbbbbbbbbbbbbbb", name="debian-12-amd64-20250201")])
    monkeypatch.setattr(builder, "resolve", lambda spec, base_dir: (next(answers), []))
    props = dict(copy.deepcopy(GOOD), base_dir=str(tmp_path))
    first = AwsImageProvider().check({}, props).inputs
    assert first["resolved"]["source_ami_id"] == "ami-0aaaaaaaaaaaaaaaa"
    second = AwsImageProvider().check(first, props).inputs
    assert second["fingerprint"] != first["fingerprint"]
    assert second["rebuild_reasons"][0].startswith("source AMI changed: ami-0aaaaaaaaaaaaaaaa -> ami-0bbbbbbbbbbbbbbbb")
    assert "debian-12-amd64-20250201" in second["rebuild_reasons"][0]
    diff = AwsImageProvider().diff("ami-0aaaaaaaaaaaaaaaa", {**first, "fingerprint": first["fingerprint"]}, second)
    assert diff.changes and "fingerprint" in diff.replaces


def test_check_failure_of_the_lookup_names_the_property(tmp_path, monkeypatch):
    from goldsmith_provider.engine.errors import Problem

    monkeypatch.setattr(builder, "resolve", lambda spec, base_dir: (None, [Problem("source", "no AMI in us-east-1 matches owners=self")]))
    result = AwsImageProvider().check({}, dict(copy.deepcopy(GOOD), base_dir=str(tmp_path)))
    assert [(f.property, f.reason) for f in result.failures] == [("source", "no AMI in us-east-1 matches owners=self")]


def test_diff_updates_distribution_and_tags_in_place(tmp_path, monkeypatch):
    monkeypatch.setattr(builder, "resolve", lambda spec, base_dir: (resolved(), []))
    p = AwsImageProvider()
    olds = p.check({}, dict(copy.deepcopy(GOOD), base_dir=str(tmp_path))).inputs
    assert p.diff("ami-1", olds, dict(olds)).changes is False
    for change in ({"tags": {"team": "b"}}, {"description": "new"},
                   {"distribution": {"regions": ["eu-west-1"]}}, {"distribution": {"share": {"public": True}}}):
        news = p.check(olds, dict(copy.deepcopy(GOOD), base_dir=str(tmp_path), **change)).inputs
        d = p.diff("ami-1", olds, news)
        assert d.changes is True and d.replaces == [], change


# --- resolution (Stubber: botocore validates each request against the API model) -----------------


def image(ami, created, name="debian-12-amd64-x", state="available"):
    return {"ImageId": ami, "Name": name, "OwnerId": "136693071363", "CreationDate": created, "State": state,
            "Architecture": "x86_64", "RootDeviceName": "/dev/xvda", "RootDeviceType": "ebs"}


def test_filter_takes_the_most_recent_match():
    ec2, stub = stubbed()
    spec = AmiFilterSource(owners=["136693071363"], name="debian-12-amd64-*")
    stub.add_response("describe_images", {"Images": [image("ami-0aaaaaaaaaaaaaaaa", "2025-01-01T00:00:00.000Z"),
                                                     image("ami-0cccccccccccccccc", "2025-03-01T00:00:00.000Z"),
                                                     image("ami-0bbbbbbbbbbbbbbbb", "2025-02-01T00:00:00.000Z")]},
                      {"Owners": ["136693071363"], "Filters": source.describe_filters(spec)})
    found = source.resolve_source(spec, ec2=ec2, ssm_client=None, region="us-east-1")
    assert found.id == "ami-0cccccccccccccccc" and found.found_by.startswith("filter: owners=136693071363")
    stub.assert_no_pending_responses()


def test_filter_without_a_match_names_the_search():
    ec2, stub = stubbed()
    spec = AmiFilterSource(owners=["self"], name="nothing-*", filters={"tag:os": ["debian"]})
    stub.add_response("describe_images", {"Images": []})
    with pytest.raises(source.SourceNotFound) as info:
        source.resolve_source(spec, ec2=ec2, ssm_client=None, region="eu-west-1")
    assert info.value.path == "source"
    assert str(info.value) == ("no AMI in eu-west-1 matches owners=self name='nothing-*' architecture=x86_64 "
                               "virtualization_type=hvm tag:os=debian")


def test_several_matches_without_most_recent_is_an_error():
    ec2, stub = stubbed()
    stub.add_response("describe_images", {"Images": [image("ami-0aaaaaaaaaaaaaaaa", "2025-01-01"), image("ami-0bbbbbbbbbbbbbbbb", "2025-02-01")]})
    with pytest.raises(source.SourceNotFound) as info:
        source.resolve_source(AmiFilterSource(owners=["self"], most_recent=False), ec2=ec2, ssm_client=None, region="us-east-1")
    assert info.value.path == "source.most_recent" and "2 AMIs match" in str(info.value)


def test_ssm_parameter_and_missing_id():
    from goldsmith_provider.builders.aws.config import AmiIdSource, SsmParameterSource

    ec2, stub = stubbed()
    ssm, ssm_stub = stubbed("ssm")
    name = "/aws/service/debian/release/bookworm/latest/amd64"
    ssm_stub.add_response("get_parameter", {"Parameter": {"Name": name, "Value": "ami-0aaaaaaaaaaaaaaaa"}}, {"Name": name})
    stub.add_response("describe_images", {"Images": [image("ami-0aaaaaaaaaaaaaaaa", "2025-01-01")]}, {"ImageIds": ["ami-0aaaaaaaaaaaaaaaa"]})
    found = source.resolve_source(SsmParameterSource(parameter=name), ec2=ec2, ssm_client=lambda: ssm, region="us-east-1")
    assert found.id == "ami-0aaaaaaaaaaaaaaaa" and found.found_by == f"ssm: {name}"
    ssm_stub.add_client_error("get_parameter", "ParameterNotFound", "not found")
    with pytest.raises(source.SourceNotFound) as info:
        source.resolve_source(SsmParameterSource(parameter="/nope"), ec2=ec2, ssm_client=lambda: ssm, region="us-east-1")
    assert info.value.path == "source.parameter"
    stub.add_client_error("describe_images", "InvalidAMIID.NotFound", "gone")
    with pytest.raises(source.SourceNotFound) as info:
        source.resolve_source(AmiIdSource(id="ami-0dddddddddddddddd"), ec2=ec2, ssm_client=None, region="us-east-1")
    assert info.value.path == "source.id" and "does not exist in us-east-1" in str(info.value)


# --- the waiter: pending (AWS) and available-at-once (moto) through the same loop -----------------


def test_waiter_rides_out_not_found_and_pending():
    ec2, stub = stubbed()
    stub.add_client_error("describe_images", "InvalidAMIID.NotFound", "eventual consistency")
    stub.add_response("describe_images", {"Images": [image("ami-0aaaaaaaaaaaaaaaa", "x", state="pending")]})
    stub.add_response("describe_images", {"Images": [image("ami-0aaaaaaaaaaaaaaaa", "x", state="pending")]})
    stub.add_response("describe_images", {"Images": [image("ami-0aaaaaaaaaaaaaaaa", "x")]})
    slept = []
    got = wait_for_image(ec2, "ami-0aaaaaaaaaaaaaaaa", timeout=600, interval=15, log=NullLog(), sleep=slept.append)
    assert got["State"] == "available" and slept == [15, 15, 15]


def test_waiter_reports_a_failed_image_and_a_timeout():
    ec2, stub = stubbed()
    failed = dict(image("ami-0aaaaaaaaaaaaaaaa", "x", state="failed"), StateReason={"Code": "x", "Message": "snapshot failed"})
    stub.add_response("describe_images", {"Images": [failed]})
    with pytest.raises(Exception, match="is failed: snapshot failed"):
        wait_for_image(ec2, "ami-0aaaaaaaaaaaaaaaa", timeout=600, interval=1, log=NullLog(), sleep=lambda s: None)
    now = iter(range(0, 10000, 400))
    for _ in range(3):
        stub.add_response("describe_images", {"Images": [image("ami-0aaaaaaaaaaaaaaaa", "x", state="pending")]})
    with pytest.raises(Exception, match="still pending after 1000s"):
        wait_for_image(ec2, "ami-0aaaaaaaaaaaaaaaa", timeout=1000, interval=1, log=NullLog(), sleep=lambda s: None,
                       clock=lambda: next(now))


def test_other_errors_are_explained():
    ec2, stub = stubbed()
    stub.add_client_error("describe_images", "UnauthorizedOperation", "You are not authorized")
    with pytest.raises(AwsError) as info:
        wait_for_image(ec2, "ami-0aaaaaaaaaaaaaaaa", timeout=10, interval=1, log=NullLog(), sleep=lambda s: None)
    assert info.value.code == "UnauthorizedOperation" and "lack this EC2 permission" in str(info.value)


# --- requests moto cannot answer (deprecation) or that must have a given shape ----------------------


def test_deprecation_and_sharing_requests():
    ec2, stub = stubbed()
    when = images.deprecation_time("", 30, "2025-01-01T00:00:00.000Z")
    assert when == datetime(2025, 1, 31, tzinfo=timezone.utc)
    stub.add_response("enable_image_deprecation", {"Return": True}, {"ImageId": "ami-0aaaaaaaaaaaaaaaa", "DeprecateAt": when})
    images.set_deprecation(ec2, "ami-0aaaaaaaaaaaaaaaa", when)
    stub.add_response("disable_image_deprecation", {"Return": True}, {"ImageId": "ami-0aaaaaaaaaaaaaaaa"})
    images.set_deprecation(ec2, "ami-0aaaaaaaaaaaaaaaa", None)
    org = "arn:aws:organizations::123456789012:organization/o-abcdefghij"
    stub.add_response("modify_image_attribute", {}, {"ImageId": "ami-0aaaaaaaaaaaaaaaa", "LaunchPermission": {
        "Add": [{"UserId": "111122223333"}, {"OrganizationArn": org}], "Remove": [{"Group": "all"}]}})
    images.set_launch_permissions(ec2, "ami-0aaaaaaaaaaaaaaaa", [{"UserId": "111122223333"}, {"OrganizationArn": org}], [{"Group": "all"}])
    stub.assert_no_pending_responses()


def run_params(tmp_path, **instance):
    spec, problems = builder.prepare({**GOOD, "instance": instance}, tmp_path)
    assert problems == []
    state = steps.AwsBuildState(name="base", build_id="20250101000000-abcd1234", fingerprint="f" * 64, log=NullLog(),
                                spec=spec, base_dir=tmp_path, region="us-east-1",
                                source={"id": "ami-0aaaaaaaaaaaaaaaa", "root_device_name": "/dev/sda1"},
                                key_name="goldsmith-k", security_group_id="sg-0123456789abcdef0")
    return steps.run_instances_params(state, "#cloud-config\n{}")


def test_run_instances_request(tmp_path):
    p = run_params(tmp_path)
    assert p["SecurityGroupIds"] == ["sg-0123456789abcdef0"] and "NetworkInterfaces" not in p
    assert p["BlockDeviceMappings"] == [{"DeviceName": "/dev/sda1", "Ebs": {"VolumeType": "gp3", "DeleteOnTermination": True}}]
    assert p["MetadataOptions"]["HttpTokens"] == "required" and p["InstanceInitiatedShutdownBehavior"] == "stop"
    assert p["ClientToken"] == "goldsmith-20250101000000-abcd1234"
    assert {t["ResourceType"] for t in p["TagSpecifications"]} == {"instance", "volume"}
    p = run_params(tmp_path, spot=True, spot_max_price="0.05", subnet_id="subnet-0123456789abcdef0", associate_public_ip=True,
                   iam_instance_profile="arn:aws:iam::123456789012:instance-profile/builder",
                   root_volume={"size_gb": 20, "encrypted": True, "kms_key_id": "alias/ami", "throughput": 250})
    assert p["InstanceMarketOptions"] == {"MarketType": "spot", "SpotOptions": {
        "SpotInstanceType": "one-time", "InstanceInterruptionBehavior": "terminate", "MaxPrice": "0.05"}}
    assert "InstanceInitiatedShutdownBehavior" not in p and "SecurityGroupIds" not in p
    assert p["NetworkInterfaces"] == [{"DeviceIndex": 0, "Groups": ["sg-0123456789abcdef0"], "AssociatePublicIpAddress": True,
                                       "DeleteOnTermination": True, "SubnetId": "subnet-0123456789abcdef0"}]
    assert p["IamInstanceProfile"] == {"Arn": "arn:aws:iam::123456789012:instance-profile/builder"}
    assert p["BlockDeviceMappings"][0]["Ebs"] == {"VolumeType": "gp3", "DeleteOnTermination": True, "VolumeSize": 20,
                                                  "Throughput": 250, "Encrypted": True, "KmsKeyId": "alias/ami"}


def test_step_names_are_the_fault_injection_points(tmp_path):
    (tmp_path / "x").write_text("")
    spec, _ = builder.prepare({**GOOD, "provisioners": [{"type": "file", "source": "x", "destination": "/x"},
                                                        {"type": "shell", "inline": ["true"]}]}, tmp_path)
    names = [step.name for step in builder.build_steps(spec)]
    assert names == ["resolve-secrets", "check-source", "check-ami-name", "key-pair", "security-group", "run-instance", "wait-for-ssh",
                     "provision[0] file", "provision[1] shell", "remove-secret-files", "collect-manifest", "generalize", "stop-instance",
                     "create-image", "copy-image", "share-image", "deprecate-image", "tag-image"]
    assert [s.name for s in builder.distribution_steps()] == ["copy-image", "share-image", "deprecate-image", "tag-image"]


def test_user_data_carries_the_keys_and_the_users_own_part():
    client, host = generate_ed25519("goldsmith-build-x"), generate_ed25519("goldsmith-host-x")
    ours = user_data("admin", client, host, "goldsmith")
    assert combine(ours, "") == ours
    text = combine(ours, "#!/bin/sh\necho hello > /etc/hello\n")
    message = email.message_from_string(text)
    parts = [(p.get_content_type(), p.get_payload(decode=True).decode()) for p in message.walk() if not p.is_multipart()]
    assert parts == [("text/cloud-config", ours), ("text/x-shellscript", "#!/bin/sh\necho hello > /etc/hello\n")]


def test_orphans_are_builds_whose_owner_is_gone_or_that_are_too_old():
    import os
    import subprocess

    dead = subprocess.Popen(["true"])
    dead.wait()
    now = datetime(2025, 1, 1, 1, 0, tzinfo=timezone.utc)
    mine = {"goldsmith:owner-host": "h1", "goldsmith:owner-pid": str(os.getpid()), "goldsmith:created-at": "2025-01-01T00:00:00Z"}
    assert orphan_reason(mine, None, host="h1", now=now) is None
    assert orphan_reason({**mine, "goldsmith:owner-pid": str(dead.pid)}, None, host="h1", now=now) == f"owner pid {dead.pid} is gone"
    assert orphan_reason({**mine, "goldsmith:owner-host": "h2", "goldsmith:owner-pid": str(dead.pid)}, None, host="h1", now=now) is None
    assert orphan_reason(mine, 1800, host="h1", now=now) == "older than 1800s"
    assert orphan_reason(mine, 7200, host="h1", now=now) is None


def test_outputs_never_echo_the_credentials(tmp_path, monkeypatch):
    monkeypatch.setattr(builder, "resolve", lambda spec, base_dir: (resolved(), []))
    props = dict(copy.deepcopy(GOOD), base_dir=str(tmp_path),
                 aws={"region": "us-east-1", "access_key_id": "AKIAEXAMPLE", "secret_access_key": "s3cr3t-value"})
    spec, _ = builder.prepare({k: v for k, v in props.items() if k != "base_dir"}, tmp_path)
    ident = builder.identify(spec, tmp_path, resolved())
    outs = AwsImageProvider._outputs(props, spec, ident, {"image_id": "ami-1", "aws": {"region": "us-east-1"}})
    assert "s3cr3t-value" not in repr(outs) and "AKIAEXAMPLE" not in repr(outs)
    assert isinstance(AmiImageSpec, type)
