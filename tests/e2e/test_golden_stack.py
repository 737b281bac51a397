"""GoldenImage through the real `pulumi` CLI on a file backend, with real QEMU guests and a real dockerd:

- one template fans out to a QEMU and a Docker image built in parallel (wall time against the slower
  target alone, reported as a ratio), and the consistency report compares their manifests;
- a workload stack reads the images through a stack reference and deploys them (a container, a VM disk);
- a change to a core provisioner cascades: the preview shows the core and every derived image replaced,
  with the reasons; an unchanged core rebuilds nothing;
- 8 images build at once, each in its own provider process (the shared provider serves 4 calls at a time);
- destroy removes every artifact.
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

import pytest

from goldsmith_provider.builders.docker import engine as labels

from .conftest import HERE, ProcessWatch

pytestmark = pytest.mark.e2e

ROOT = HERE.parents[1]


def say(text: str) -> None:
    sys.stderr.write(f"\n[golden e2e] {text}\n")


def record(name: str, value) -> None:
    """Measured numbers, kept for the closing report (not asserted)."""
    from goldsmith_provider.engine.paths import cache_root

    results = cache_root() / "e2e-results"
    results.mkdir(parents=True, exist_ok=True)
    (results / f"{name}.json").write_text(json.dumps(value, indent=2, default=str))


def goldsmith_images(client, name_prefix: str) -> list:
    return [i for i in client.images.list(filters={"label": labels.FINGERPRINT})
            if (i.labels or {}).get(labels.NAME, "").startswith(name_prefix)]


def test_fan_out_report_stack_reference_cascade_destroy(pulumi_project, docker_engine, debian_rootfs):
    client = docker_engine.client()
    images = pulumi_project(ROOT / "examples" / "images", name="goldsmith-images", stack="e2e")
    for key, value in (("rootfs", str(debian_rootfs)), ("buildNetwork", "host"), ("bootTest", "false"),
                       ("workload", "false")):
        images.run("config", "set", key, value)

    # The slower target alone (QEMU), then destroyed so the fan-out builds it again instead of adopting it.
    images.run("config", "set", "goldsmith:only", "qemu")
    alone = images.run("up", "--yes", "--skip-preview")
    images.run("destroy", "--yes", "--skip-preview")
    images.run("config", "rm", "goldsmith:only")

    # The fan-out: both targets at once, each in its own provider process.
    with ProcessWatch() as vms:
        both = images.run("up", "--yes", "--skip-preview")
    assert vms.seen, "the QEMU target booted a builder VM"
    out = images.outputs()
    assert set(out["core"]) == {"qemu", "docker"}
    ratio = both.seconds / alone.seconds
    say(f"fan-out qemu+docker {both.seconds:.1f}s vs qemu alone {alone.seconds:.1f}s: ratio {ratio:.2f}")
    record("fanout", {"qemu_alone_s": alone.seconds, "qemu_and_docker_s": both.seconds, "ratio": ratio})
    assert Path(out["core"]["qemu"]["path"]).exists() and Path(out["core"]["qemu"]["artifacts"]["vmdk"]["path"]).exists()
    assert client.images.get(out["core"]["docker"]["image_id"]).labels[labels.FINGERPRINT] == out["core_fingerprints"]["docker"]

    # The consistency report: same packages at the same versions where both have them, same declared paths.
    report = out["core_report"]
    say("core consistency: " + report["summary"])
    record("core-consistency", report)
    assert report["packages"]["version_drift"] == [] and report["packages"]["required_missing"] == []
    assert report["packages"]["common"] > 50 and report["packages"]["identical"] == report["packages"]["common"]
    assert sorted(p["path"] for p in report["paths"]["identical"]) == ["/etc/goldsmith", "/etc/motd", "/usr/bin/jq"]
    assert report["drift"] is False
    assert any(n.startswith("linux-image-") for n in report["packages"]["only_on"]["qemu"])  # a VM has a kernel, a container none
    report_file = images.dir / "reports" / "core-consistency.json"
    assert json.loads(report_file.read_text())["summary"] == report["summary"]

    # The workload images, layered on the core per platform; the core is adopted from state, not rebuilt.
    images.run("config", "set", "workload", "true")
    layered = images.run("up", "--yes", "--skip-preview")
    assert "core-qemu" not in re.findall(r"\+\s+\S+\s+(\S+)\s+created", layered.text)
    out = images.outputs()
    assert out["web_report"]["drift"] is False
    assert client.containers.run(out["web"]["docker"]["image_id"], remove=True, network_mode="none").decode() == "core=1\nweb=1\n"

    # The workload stack reads them through a stack reference and deploys them.
    workload = pulumi_project(ROOT / "examples" / "workload", name="goldsmith-workload", stack="e2e")
    workload.run("up", "--yes", "--skip-preview")
    deployed = workload.outputs()
    assert deployed["container_output"] == "core=1\nweb=1\n"
    assert Path(deployed["vm_disk"]).is_file()
    assert deployed["web_fingerprints"] == out["web_fingerprints"]

    # Nothing changed: nothing rebuilds.
    with ProcessWatch() as vms:
        noop = images.run("preview", "--diff")
    assert not vms.seen and "replace" not in noop.text and "+-" not in noop.text

    # A core provisioner changes: the core and every image derived from it are replaced, with the reasons.
    script = images.dir / "scripts" / "core.sh"
    script.write_text(script.read_text().replace("core release 1", "core release 2"))
    cascade = images.run("preview", "--diff")
    record("cascade-preview", cascade.text)
    for name in ("core-qemu", "core-docker", "web-qemu", "web-docker"):
        assert name in cascade.text
    assert "provisioners[2].scripts[0] changed" in cascade.text  # the core's reason
    # the web images' reason: their source is the core's artifact, which the core's rebuild replaces
    assert cascade.text.count("[web] rebuild: source not known until its producer (a parent image being rebuilt)") >= 2
    assert cascade.text.count("(replace)") >= 4, "the core's two images and the web's two"

    images.run("up", "--yes", "--skip-preview")
    rebuilt = images.outputs()
    for target in ("qemu", "docker"):
        assert rebuilt["core_fingerprints"][target] != out["core_fingerprints"][target]
        assert rebuilt["web_fingerprints"][target] != out["web_fingerprints"][target]
    assert not Path(out["core"]["qemu"]["path"]).exists(), "the replaced core's artifacts are deleted"
    assert "core release 2" in client.containers.run(rebuilt["web"]["docker"]["image_id"], ["cat", "/etc/goldsmith/core-release"],
                                                    remove=True, network_mode="none").decode()
    # The workload rolls out the new images on its next update.
    rollout = workload.run("up", "--yes", "--skip-preview")
    assert "replaced" in rollout.text
    assert workload.outputs()["web_fingerprints"] == rebuilt["web_fingerprints"]

    # Destroy cleans everything: both stacks, every artifact, every image.
    workload.run("destroy", "--yes", "--skip-preview")
    images.run("destroy", "--yes", "--skip-preview")
    assert list((images.dir / "images").glob("*.qcow2")) == [] and list((images.dir / "images").glob("*.vmdk")) == []
    assert goldsmith_images(client, "core") == [] and goldsmith_images(client, "web") == []
    assert not report_file.exists()
    assert client.containers.list(all=True, filters={"label": labels.BUILD_ID}) == []


def overlap(intervals: list[tuple[float, float]]) -> int:
    """The most intervals running at one instant."""
    events = sorted([(s, 1) for s, _ in intervals] + [(e, -1) for _, e in intervals], key=lambda x: (x[0], x[1]))
    best = cur = 0
    for _, d in events:
        cur += d
        best = max(best, cur)
    return best


def build_intervals(client, ids: dict[str, str]) -> list[tuple[float, float]]:
    spans = []
    for image_id in ids.values():
        text = client.containers.run(image_id, ["cat", "/etc/fleet-start", "/etc/fleet-end"], remove=True,
                                     network_mode="none").decode().split()
        spans.append((float(text[0]), float(text[1])))
    return spans


def test_eight_builds_at_once_each_in_its_own_provider_process(pulumi_project, docker_engine, debian_rootfs):
    client = docker_engine.client()
    p = pulumi_project(HERE / "fleet_project", name="goldsmith-fleet", stack="e2e")
    p.run("config", "set", "rootfs", str(debian_rootfs))

    p.run("config", "set", "isolated", "false")
    shared = p.run("up", "--yes", "--skip-preview")
    shared_overlap = overlap(build_intervals(client, p.outputs()["images"]))
    p.run("destroy", "--yes", "--skip-preview")

    p.run("config", "set", "isolated", "true")
    isolated = p.run("up", "--yes", "--skip-preview")
    ids = p.outputs()["images"]
    isolated_overlap = overlap(build_intervals(client, ids))
    say(f"8 builds: shared provider {shared.seconds:.1f}s (at most {shared_overlap} at once), "
        f"one process each {isolated.seconds:.1f}s ({isolated_overlap} at once): ratio {isolated.seconds / shared.seconds:.2f}")
    record("fleet", {"shared_s": shared.seconds, "shared_overlap": shared_overlap, "isolated_s": isolated.seconds,
                     "isolated_overlap": isolated_overlap, "ratio": isolated.seconds / shared.seconds})
    assert shared_overlap <= 4, "the shared provider process serves at most 4 calls at once"
    assert isolated_overlap == 8, "every build ran at the same time as the 7 others"
    p.run("destroy", "--yes", "--skip-preview")
    assert goldsmith_images(client, "fleet-") == []
