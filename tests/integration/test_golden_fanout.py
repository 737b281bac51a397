"""A GoldenImage template fanned out through the real providers, as the engine runs them (one build per
target, concurrently): Docker (real dockerd) and AWS (moto server + the EC2 guest peer) from one template,
then the consistency report over what they recorded; and fail-fast across the targets."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest

import goldsmith as gs
from goldsmith._props import to_props
from goldsmith_provider.builders.docker import engine as labels
from goldsmith_provider.dynamic.aws import AwsImageProvider
from goldsmith_provider.dynamic.base import ImageBuildError
from goldsmith_provider.dynamic.docker import DockerImageProvider
from goldsmith_provider.golden.report import consistency_report
from goldsmith_provider.golden.template import expand, required_packages

from .test_aws_build import aws_env, guest, leftovers_of, props_for  # noqa: F401 - fixtures

pytestmark = pytest.mark.integration

PATHS = ["/etc/motd", "/etc/goldsmith"]


def template(root: Path) -> list[dict]:
    (root / "files").mkdir(parents=True, exist_ok=True)
    (root / "files" / "motd").write_text("one template, every platform\n")
    return to_props([
        gs.File(source="files/motd", destination="/etc/motd", mode="0644"),
        gs.Shell(inline=["mkdir -p /etc/goldsmith", "echo \"core for $TIER\" > /etc/goldsmith/release",
                         "echo \"$GOLDSMITH_PLATFORM\" > /etc/goldsmith-platform"], sudo=True),
    ])


def fan_out(builds: dict[str, tuple], fleet: str, fail_fast: bool = True) -> dict[str, object]:
    """Check and create every target concurrently, each with the fleet marker; target -> outputs or error."""
    results: dict[str, object] = {}

    def one(key: str, provider, props: dict, root: Path) -> None:
        props = {**props, "base_dir": str(root), "fleet": {"id": fleet, "member": key, "fail_fast": fail_fast}}
        try:
            checked = provider.check({}, props)
            assert checked.failures == [], checked.failures
            results[key] = provider.create(checked.inputs).outs
        except Exception as exc:  # noqa: BLE001 - the test inspects it
            results[key] = exc
        results[f"{key}:done"] = time.monotonic()

    threads = [threading.Thread(target=one, args=(k, *v)) for k, v in builds.items()]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=1800)
    return results


def test_one_template_fans_out_to_docker_and_aws(moto_server, guest, aws_env, docker_engine, debian_rootfs, tmp_path):  # noqa: F811
    root = tmp_path / "project"
    shared = template(root)
    docker_target = to_props(gs.DockerTarget(source=gs.RootfsSource(path=str(debian_rootfs)), network_mode="none"))
    aws_target = {k: v for k, v in props_for(moto_server, guest, "fan").items() if k not in ("name", "provisioners")}
    aws_target["type"] = "aws"
    specs = {key: expand(key, target, name="fan", provisioners=shared, variables={"TIER": "core"}, digest_paths=PATHS,
                         parent_source=None)
             for key, target in (("docker", docker_target), ("aws", aws_target))}
    results = fan_out({"docker": (DockerImageProvider(), specs["docker"], root),
                       "aws": (AwsImageProvider(), specs["aws"], root)}, fleet="it/fan-out")
    for key in ("docker", "aws"):
        assert not isinstance(results[key], Exception), f"{key}: {results[key]}"
    docker_out, aws_out = results["docker"], results["aws"]
    assert aws_out["ami_id"].startswith("ami-") and docker_out["image_id"].startswith("sha256:")
    assert aws_out["path_digests"]["/etc/motd"] == docker_out["path_digests"]["/etc/motd"]

    report = consistency_report("fan", {"docker": docker_out, "aws": aws_out}, paths=PATHS,
                                required_packages=required_packages(shared))
    print(report["summary"])
    assert [p["path"] for p in report["paths"]["identical"]] == PATHS, report["paths"]
    assert report["packages"]["version_drift"] == [], report["packages"]["version_drift"][:5]
    assert report["packages"]["common"] > 50 and report["drift"] is False

    # the images are real and leave nothing of their builds behind
    client = docker_engine.client()
    assert client.containers.run(docker_out["image_id"], ["cat", "/etc/goldsmith/release"], remove=True,
                                 network_mode="none").decode() == "core for core\n"
    assert leftovers_of(moto_server, aws_out["provenance"]["build_id"]) == []
    DockerImageProvider().delete(docker_out["image_id"], docker_out)
    AwsImageProvider().delete(aws_out["ami_id"], aws_out)


def docker_specs(root: Path, rootfs: Path, *, fail_after: int, other_sleep: int) -> dict[str, dict]:
    source = gs.RootfsSource(path=str(rootfs))
    shared = template(root)
    return {
        "broken": expand("broken", to_props(gs.DockerTarget(source=source, network_mode="none", extra_provisioners=[
            gs.Shell(inline=[f"sleep {fail_after}", "echo 'the broken target fails now' >&2", "exit 3"])])),
            name="ff-broken", provisioners=shared, variables={}, digest_paths=[], parent_source=None),
        "slow": expand("slow", to_props(gs.DockerTarget(source=source, network_mode="none", extra_provisioners=[
            gs.Shell(inline=[f"sleep {other_sleep}", "echo slept > /etc/slept"])])),
            name="ff-slow", provisioners=shared, variables={}, digest_paths=[], parent_source=None),
    }


def build_containers(client) -> list:
    return client.containers.list(all=True, filters={"label": labels.BUILD_ID})


def test_fail_fast_stops_the_other_targets_and_they_clean_up(docker_engine, debian_rootfs, tmp_path):
    client = docker_engine.client()
    root = tmp_path / "project"
    specs = docker_specs(root, debian_rootfs, fail_after=3, other_sleep=600)
    started = time.monotonic()
    results = fan_out({k: (DockerImageProvider(), v, root) for k, v in specs.items()}, fleet=f"it/ff-{time.time()}")
    broken, slow = results["broken"], results["slow"]
    assert isinstance(broken, ImageBuildError) and "exit status 3" in str(broken)
    assert isinstance(slow, ImageBuildError), f"the slow target was not stopped: {slow}"
    assert "stopped: target 'broken'" in str(slow) and "fail_fast" in str(slow)
    took = results["slow:done"] - started
    print(f"the slow target stopped {took:.1f}s after the fan-out began (its provisioner sleeps 600s)")
    assert took < 300
    assert build_containers(client) == []
    assert [i for i in client.images.list(filters={"label": labels.FINGERPRINT})
            if (i.labels or {}).get(labels.NAME, "").startswith("ff-")] == []


def test_without_fail_fast_the_other_targets_finish(docker_engine, debian_rootfs, tmp_path):
    client = docker_engine.client()
    root = tmp_path / "project"
    specs = docker_specs(root, debian_rootfs, fail_after=1, other_sleep=8)
    results = fan_out({k: (DockerImageProvider(), v, root) for k, v in specs.items()}, fleet=f"it/nff-{time.time()}",
                      fail_fast=False)
    assert isinstance(results["broken"], ImageBuildError)
    slow = results["slow"]
    assert not isinstance(slow, Exception), slow
    assert client.containers.run(slow["image_id"], ["cat", "/etc/slept"], remove=True, network_mode="none").decode() == "slept\n"
    DockerImageProvider().delete(slow["image_id"], slow)
    assert build_containers(client) == []
