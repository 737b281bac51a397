"""examples/aws-ami under pulumi's mocks: the AMI's spec as the provider receives it, and the
consumption side, a pulumi-aws launch template taking the AMI id."""

import json
import subprocess
import sys
from pathlib import Path


import pulumi_aws  # noqa: F401,E402 - the test extra installs it; a missing plugin package must fail, not skip

RUNNER = Path(__file__).with_name("aws_example_mocks.py")


def registered(config: dict) -> dict[str, dict]:
    out = subprocess.run([sys.executable, str(RUNNER), json.dumps(config)], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-4000:]
    line = [l for l in out.stdout.splitlines() if l.startswith("RESOURCES=")][-1]
    return {r["name"]: r for r in json.loads(line[len("RESOURCES="):])}


def test_the_launch_template_takes_the_ami_id():
    resources = registered({"aws:region": "eu-central-1", "goldsmith-aws-ami:sshCidr": "203.0.113.7/32",
                            "goldsmith-aws-ami:copyRegions": '["eu-west-1"]',
                            "goldsmith-aws-ami:shareAccounts": '["111122223333"]'})
    ami, template = resources["base"], resources["web"]
    assert ami["type"] == "pulumi-python:dynamic/goldsmith:AmiImage"
    assert template["type"] == "aws:ec2/launchTemplate:LaunchTemplate"
    assert template["inputs"]["imageId"] == "ami-0123456789abcdef0"
    assert template["inputs"]["metadataOptions"]["httpTokens"] == "required"
    assert template["inputs"]["tagSpecifications"][0]["tags"]["golden-ami"] == "golden-base-0123456789ab"

    spec = ami["inputs"]
    assert spec["source"] == {"type": "ssm", "parameter": "/aws/service/debian/release/bookworm/latest/amd64"}
    assert [p["type"] for p in spec["provisioners"]] == ["file", "shell"]
    assert spec["communicator"]["cidrs"] == ["203.0.113.7/32"] and spec["communicator"]["user"] == "admin"
    assert spec["aws"]["region"] == "eu-central-1", "the SDK takes aws:region from the stack config"
    assert spec["distribution"]["regions"] == ["eu-west-1"]
    assert spec["distribution"]["share"]["accounts"] == ["111122223333"]
    assert spec["instance"]["root_volume"]["encrypted"] is True
    assert (spec["stack"], spec["project"], spec["resource"]) == ("test", "goldsmith-aws-ami", "base")


def test_without_the_launch_template_only_the_ami_is_registered():
    resources = registered({"goldsmith-aws-ami:launchTemplate": "false", "goldsmith-aws-ami:sourceAmi": "ami-0aaaaaaaaaaaaaaaa"})
    assert set(resources) == {"base"}
    assert resources["base"]["inputs"]["source"] == {"type": "ami", "id": "ami-0aaaaaaaaaaaaaaaa"}
    assert resources["base"]["inputs"]["communicator"]["cidrs"] == []  # the provider's check will say so
