"""A real EC2/SSM/STS API peer: moto's server on 127.0.0.1, one per test session.

Validation is on (AMIs, key pairs and instance types must exist, as on AWS). Tests that talk to it
pass its URL as ``aws.endpoint_url`` (or AWS_ENDPOINT_URL to a subprocess) with the fake
credentials below; nothing ever leaves 127.0.0.1.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

CREDENTIALS = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing"}
# Moto's fixed account id (its AMIs, snapshots and key pairs belong to it).
ACCOUNT_ID = "123456789012"
BASE_AMI = "ami-04681a1dbd79675a5"  # a preloaded Amazon Linux 2 x86_64 HVM EBS image in every region
REGION = "us-east-1"
COPY_REGION = "eu-west-1"

# Two base AMIs owned by this account, as a vendor would publish them (moto's own CreateImage AMIs
# report RootDeviceType "standard", so they could never match a root-device-type=ebs filter).
TEST_BASES = [
    {"ami_id": "ami-0a11ce0000000b001", "name": "goldsmith-test-base-2025-01", "creation_date": "2025-01-01T00:00:00.000Z",
     "tags": {"channel": "stable"}},
    {"ami_id": "ami-0a11ce0000000b002", "name": "goldsmith-test-base-2025-02", "creation_date": "2025-02-01T00:00:00.000Z",
     "tags": {"channel": "candidate"}},
]

MOTO_ENV = {
    "MOTO_ENABLE_AMI_VALIDATION": "1",
    "MOTO_ENABLE_KEYPAIR_VALIDATION": "1",
    "MOTO_EC2_ENABLE_INSTANCE_TYPE_VALIDATION": "1",
}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class MotoServer:
    def __init__(self, log_path: Path) -> None:
        self.port = _free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = log_path
        self.proc: subprocess.Popen | None = None

    def write_amis(self) -> Path:
        """moto's preloaded AMIs, us-east-1's "latest" ones (behind its SSM parameters) and TEST_BASES."""
        from moto.utilities.utils import load_resource

        amis = load_resource("ec2/resources/amis.json") + load_resource(f"ec2/resources/latest_amis/{REGION}.json")
        for base in TEST_BASES:
            amis.append({**base, "architecture": "x86_64", "image_type": "machine", "public": False, "owner_id": ACCOUNT_ID,
                         "platform": "Linux/UNIX", "state": "available", "description": base["name"], "hypervisor": "xen",
                         "root_device_name": "/dev/xvda", "root_device_type": "ebs", "sriov": "simple",
                         "virtualization_type": "hvm"})
        path = self.log_path.with_name("amis.json")
        path.write_text(json.dumps(amis))
        return path

    def start(self, timeout: float = 60) -> "MotoServer":
        env = dict(os.environ, **MOTO_ENV, **CREDENTIALS, MOTO_AMIS_PATH=str(self.write_amis()))
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen([sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(self.port)],
                                         stdout=log, stderr=log, stdin=subprocess.DEVNULL, env=env, start_new_session=True)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"moto server exited ({self.proc.returncode}): {self.log_path.read_text()[-2000:]}")
            try:
                with urllib.request.urlopen(f"{self.url}/moto-api/", timeout=2):
                    return self
            except OSError:
                time.sleep(0.3)
        raise RuntimeError(f"moto server did not answer on {self.url}")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def client(self, service: str, region: str = REGION):
        import boto3

        return boto3.session.Session().client(service, region_name=region, endpoint_url=self.url,
                                              aws_access_key_id="testing", aws_secret_access_key="testing")

    def connection(self, region: str = REGION) -> dict:
        """The spec's `aws` section for this peer (credentials through the secret fields)."""
        return {"region": region, "endpoint_url": self.url, "access_key_id": "testing", "secret_access_key": "testing"}

    def env(self, region: str = REGION) -> dict:
        """The standard-chain environment for a subprocess (pulumi, goldsmith gc)."""
        return {**CREDENTIALS, "AWS_ENDPOINT_URL": self.url, "AWS_REGION": region, "AWS_DEFAULT_REGION": region,
                "AWS_EC2_METADATA_DISABLED": "true"}

    # -- what tests look at -------------------------------------------------------------------------------

    def inventory(self, regions: list[str]) -> dict[str, dict[str, set[str]]]:
        """Everything of ours in moto, per region: live instances, key pairs, groups, AMIs, snapshots."""
        out = {}
        for region in regions:
            ec2 = self.client("ec2", region)
            reservations = ec2.describe_instances(Filters=[{"Name": "instance-state-name",
                                                            "Values": ["pending", "running", "stopping", "stopped"]}])
            out[region] = {
                "instances": {i["InstanceId"] for r in reservations["Reservations"] for i in r["Instances"]},
                "key_pairs": {k["KeyName"] for k in ec2.describe_key_pairs()["KeyPairs"]},
                "security_groups": {g["GroupId"] for g in ec2.describe_security_groups()["SecurityGroups"]
                                    if g["GroupName"] != "default"},
                "images": {i["ImageId"] for i in ec2.describe_images(Owners=["self"])["Images"]},
                "snapshots": {s["SnapshotId"] for s in ec2.describe_snapshots(OwnerIds=["self"])["Snapshots"]},
            }
        return out


@pytest.fixture(scope="session")
def moto_server(tmp_path_factory):
    # botocore's credential chain ends at the EC2 instance metadata service (169.254.169.254): never here.
    os.environ["AWS_EC2_METADATA_DISABLED"] = "true"
    server = MotoServer(tmp_path_factory.mktemp("moto") / "moto.log").start()
    try:
        yield server
    finally:
        server.stop()
