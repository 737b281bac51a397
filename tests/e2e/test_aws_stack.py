"""examples/aws-ami through the real `pulumi` CLI against a real EC2 API peer (moto server), the
builder's SSH going to the local guest that plays the instances (tests/peers/ec2_guest.py):
preview, up, a no-op up, a changed script (replace: new AMIs, the old ones gone), destroy."""

from pathlib import Path

import pytest

from peers.moto_server import BASE_AMI, COPY_REGION, REGION

pytestmark = pytest.mark.e2e

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "aws-ami"
PROJECT = "goldsmith-aws-e2e"


def ours(moto) -> dict[str, tuple[set, set]]:
    """This project's AMIs and snapshots (by the goldsmith:project tag), per region."""
    out = {}
    for region in (REGION, COPY_REGION):
        ec2 = moto.client("ec2", region)
        tag = [{"Name": "tag:goldsmith:project", "Values": [PROJECT]}]
        out[region] = ({i["ImageId"] for i in ec2.describe_images(Owners=["self"], Filters=tag)["Images"]},
                       {s["SnapshotId"] for s in ec2.describe_snapshots(OwnerIds=["self"], Filters=tag)["Snapshots"]})
    return out


def test_preview_up_noop_replace_destroy(pulumi_project, moto_server, ec2_guest):
    moto, guest = moto_server, ec2_guest
    guest.reset_commands = ["rm -rf /etc/goldsmith"]
    p = pulumi_project(EXAMPLE, name=PROJECT)
    p.env.update(moto.env(REGION))  # credentials and AWS_ENDPOINT_URL through the standard chain
    for key, value in (("aws:region", REGION), ("sourceAmi", BASE_AMI), ("sshHost", guest.host),
                       ("sshCidr", "10.0.0.0/8"), ("copyRegions", f'["{COPY_REGION}"]'), ("launchTemplate", "false")):
        p.run("config", "set", key, value)
    launched = lambda: len(guest.applied)  # noqa: E731 - instances the "hypervisor" served

    # preview: resolves the source AMI and fingerprints the inputs; starts nothing.
    before = launched()
    preview = p.run("preview", "--diff")
    assert launched() == before
    assert "goldsmith:AmiImage" in preview.text and "fingerprint" in preview.text
    assert BASE_AMI in preview.text, "the resolved source AMI is visible in the preview"
    assert ours(moto) == {REGION: (set(), set()), COPY_REGION: (set(), set())}

    # up: builds on an instance, copies to the second region.
    p.run("up", "--yes", "--skip-preview")
    out = p.outputs()
    assert launched() == before + 1
    assert set(out["ami_ids"]) == {REGION, COPY_REGION} and out["ami_id"] == out["ami_ids"][REGION]
    assert out["source_ami_id"] == BASE_AMI and out["ami_name"] == f"golden-base-{out['fingerprint'][:12]}"
    first = ours(moto)
    for region in (REGION, COPY_REGION):
        assert first[region][0] == {out["ami_ids"][region]} and first[region][1] == set(out["snapshot_ids"][region])
    assert guest.sh("cat /etc/goldsmith/release") == "release=v1"
    assert guest.sh("cat /etc/motd").startswith("Built by goldsmith")

    # A second up changes nothing and starts no instance.
    again = p.run("up", "--yes")
    assert "unchanged" in again.text and launched() == before + 1
    assert p.outputs()["ami_ids"] == out["ami_ids"]

    # Edit the provisioning script: the preview shows a replace and which input changed.
    script = p.dir / "scripts" / "provision.sh"
    script.write_text(script.read_text().replace("release=v1", "release=v2"))
    preview = p.run("preview", "--diff")
    assert "replace" in preview.text and "provisioners[1].scripts[0]" in preview.text
    assert launched() == before + 1

    # up: the new AMIs exist, then the old ones are deregistered with their snapshots, everywhere.
    p.run("up", "--yes", "--skip-preview")
    out2 = p.outputs()
    assert out2["fingerprint"] != out["fingerprint"] and launched() == before + 2
    assert guest.sh("cat /etc/goldsmith/release") == "release=v2"
    second = ours(moto)
    for region in (REGION, COPY_REGION):
        assert second[region][0] == {out2["ami_ids"][region]}, region
        assert second[region][1] == set(out2["snapshot_ids"][region]), region

    # destroy: nothing of this project is left in any region.
    p.run("destroy", "--yes", "--skip-preview")
    assert ours(moto) == {REGION: (set(), set()), COPY_REGION: (set(), set())}
    assert guest.errors == []
