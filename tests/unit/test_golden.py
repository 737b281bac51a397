"""GoldenImage: template expansion, template validation, the consistency report, fleet fail-fast, cancel
scopes in the step runner, and the images/workload examples under pulumi's mocks."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

import goldsmith as gs
from goldsmith._props import to_props
from goldsmith_provider.dynamic.base import UNKNOWN, contains_unknown, unknown_paths
from goldsmith_provider.engine import cancel
from goldsmith_provider.engine.errors import StepError
from goldsmith_provider.engine.log import BuildLog
from goldsmith_provider.engine.runner import BaseStep, run_steps
from goldsmith_provider.engine.state import BuildState
from goldsmith_provider.golden.fleet import Fleet
from goldsmith_provider.golden.report import consistency_report
from goldsmith_provider.golden.template import expand, required_packages, template_problems

ROOT = Path(__file__).resolve().parents[2]
MOCKS = Path(__file__).with_name("run_with_mocks.py")


# --- expansion --------------------------------------------------------------------------------------------

def test_target_types_are_the_builders_tables_without_the_shared_settings():
    import dataclasses

    names = {f.name for f in dataclasses.fields(gs.QemuTarget)}
    assert {"source", "machine", "output", "boot_test", "digest_paths", "extra_provisioners", "name"} <= names
    assert "provisioners" not in names
    assert gs.QemuTarget().source is None  # a parent can supply it
    assert {f.name for f in dataclasses.fields(gs.DockerTarget)} >= {"config", "repository", "tags", "registry"}
    assert {f.name for f in dataclasses.fields(gs.AmiTarget)} >= {"aws", "instance", "distribution"}


@pytest.mark.parametrize("resource,own", [
    (gs.QemuImage, {"path", "sha256", "artifacts", "manifest_path", "accelerator"}),
    (gs.DockerImage, {"image_ref", "repo_digests", "pushed_tags", "engine"}),
    (gs.AmiImage, {"ami_id", "ami_ids", "snapshot_ids", "api_retries"}),
])
def test_every_image_resource_declares_the_shared_outputs_and_sends_them(resource, own):
    """What the report and a GoldenImage read (fingerprint, packages, path_digests…) is declared once, on
    the shared base; each declared output goes out as a property, so a preview can reference it."""
    from goldsmith._props import ImageResource, resource_props

    shared = {"image_id", "fingerprint", "rebuild_reasons", "packages", "path_digests", "provenance", "adopted"}
    names = resource.output_names()
    assert issubclass(resource, ImageResource) and shared | own <= set(names)
    assert len(names) == len(set(names))
    props = resource_props({"name": "x"}, names)
    assert all(props[n] is None for n in names) and props["name"] == "x" and props["base_dir"]


def test_expand_merges_the_template_into_each_target():
    shared = to_props([gs.File(source="files/motd", destination="/etc/motd"), gs.Packages(install=["jq=1.6*"]),
                       gs.Shell(inline=["echo $TIER"], env={"TIER": "mine"})])
    target = to_props(gs.DockerTarget(source=gs.ImageSource(ref="debian:bookworm"), digest_paths=["/opt"],
                                      extra_provisioners=[gs.Shell(inline=["echo extra"])]))
    props = expand("docker", target, name="core", provisioners=shared, variables={"TIER": "core", "ZONE": "a"},
                   digest_paths=["/etc/motd", "/opt"], parent_source=None)
    assert props["name"] == "core" and "type" not in props and "extra_provisioners" not in props
    assert [p["type"] for p in props["provisioners"]] == ["file", "packages", "shell", "shell"]
    # variables reach every shell provisioner; a provisioner's own env wins; the platform is known.
    assert props["provisioners"][2]["env"] == {"TIER": "mine", "ZONE": "a", "GOLDSMITH_PLATFORM": "docker",
                                               "GOLDSMITH_BUILDER": "docker"}
    assert props["provisioners"][3]["env"]["TIER"] == "core"
    assert props["digest_paths"] == ["/opt", "/etc/motd"]
    assert props["source"] == {"type": "image", "ref": "debian:bookworm", "pull": "missing"}
    assert shared[2]["env"] == {"TIER": "mine"}, "the template itself is not modified"
    assert required_packages(shared) == ["jq"]


def test_expand_takes_the_parent_source_and_a_target_name():
    target = to_props(gs.QemuTarget(name="core-vm"))
    parent = {"type": "disk", "path": "/images/core.qcow2", "checksum": "sha256:" + "a" * 64}
    props = expand("qemu", target, name="core", provisioners=[], variables={}, digest_paths=[], parent_source=parent)
    assert props["name"] == "core-vm" and props["source"] == parent


def test_template_problems_name_their_property_paths():
    targets = {"qemu": gs.QemuTarget(), "Bad_Key": gs.DockerTarget(source=gs.ImageSource(ref="debian")),
               "docker": gs.DockerTarget(), "odd": object()}
    problems = {p.path: p.message for p in template_problems("core", targets, ["qemu", "vsphere"], parent_keys=["qemu"])}
    assert "targets.Bad_Key" in problems
    assert "targets.docker.source" in problems and "has no 'docker' target" in problems["targets.docker.source"]
    assert "targets.odd" in problems and "QemuTarget" in problems["targets.odd"]
    assert "only[1]" in problems and "vsphere" in problems["only[1]"]
    assert "targets.qemu.source" not in problems  # the parent has a qemu image
    no_parent = {p.path for p in template_problems("core", {"qemu": gs.QemuTarget()}, None, None)}
    assert no_parent == {"targets.qemu.source"}
    assert {p.path for p in template_problems("core", {}, None, None)} == {"targets"}


def test_component_rejects_a_bad_template_before_registering_anything():
    out = subprocess.run([sys.executable, "-c", (
        "import pulumi, goldsmith as gs\n"
        "class M(pulumi.runtime.Mocks):\n"
        "    def new_resource(self, a):\n"
        "        print('REGISTERED', a.typ); return [a.name, dict(a.inputs)]\n"
        "    def call(self, a): return {}\n"
        "pulumi.runtime.set_mocks(M(), preview=False)\n"
        "gs.GoldenImage('w', gs.GoldenImageArgs(name='w', targets={'qemu': gs.QemuTarget()}, only=['nope']))\n")],
        capture_output=True, text=True, timeout=120)
    assert out.returncode != 0
    assert "targets.qemu.source: is required" in out.stderr and "only[0]: names no target" in out.stderr
    assert "goldsmith:QemuImage" not in out.stdout


# --- the consistency report -------------------------------------------------------------------------------

def images(**overrides):
    base = {
        "qemu": {"packages": ["bash=5.2", "jq=1.6", "linux-image-amd64=6.1", "libc6=2.36"],
                 "path_digests": {"/etc/motd": "sha256:aa", "/etc/goldsmith": "dir:sha256:bb"}, "fingerprint": "f1"},
        "docker": {"packages": ["bash=5.2", "jq=1.6", "libc6=2.36"],
                   "path_digests": {"/etc/motd": "sha256:aa", "/etc/goldsmith": "dir:sha256:bb"}, "fingerprint": "f2"},
    }
    for key, value in overrides.items():
        base[key] = {**base[key], **value}
    return base


def test_report_equal_images_have_no_drift():
    r = consistency_report("core", images(), paths=["/etc/motd", "/etc/goldsmith"], required_packages=["jq"])
    assert r["drift"] is False and r["unexpected"] == []
    assert r["packages"]["common"] == 3 and r["packages"]["identical"] == 3
    assert r["packages"]["only_on"] == {"qemu": ["linux-image-amd64"], "docker": []}  # reported, not drift
    assert [p["path"] for p in r["paths"]["identical"]] == ["/etc/motd", "/etc/goldsmith"]
    assert "3/3 common packages identical" in r["summary"] and "no unexpected drift" in r["summary"]


def test_report_finds_every_kind_of_drift():
    r = consistency_report("core", images(docker={"packages": ["bash=5.1", "libc6=2.36"],
                                                  "path_digests": {"/etc/motd": "sha256:XX"}}),
                           paths=["/etc/motd", "/etc/goldsmith", "/opt/none"], required_packages=["jq"])
    assert r["drift"] is True
    text = "\n".join(r["unexpected"])
    assert "package bash differs: docker=5.1, qemu=5.2" in text
    assert "package jq (installed by the template) missing on docker" in text
    assert "path /etc/motd differs" in text
    assert "path /etc/goldsmith not recorded on docker" in text
    assert "path /opt/none not recorded" in text


def test_report_allowed_ignored_and_strict():
    drifting = images(docker={"packages": ["bash=5.1", "jq=1.6", "libc6=2.36"]})
    r = consistency_report("core", drifting, allowed_drift=["ba*"])
    assert r["drift"] is False and r["packages"]["allowed_drift"][0]["name"] == "bash"
    assert consistency_report("core", drifting, ignore_packages=["bash"])["packages"]["common"] == 2
    strict = consistency_report("core", images(), strict_packages=True, ignore_packages=["linux-image-*"])
    assert strict["drift"] is False
    assert consistency_report("core", images(), strict_packages=True)["unexpected"] == ["package linux-image-amd64 only on qemu"]
    missing = images(docker={"path_digests": {"/etc/motd": "missing", "/etc/goldsmith": "dir:sha256:bb"}})
    assert consistency_report("core", missing, paths=["/etc/motd"])["unexpected"] == ["path /etc/motd missing on docker"]


# --- fleet fail-fast and cancel scopes ------------------------------------------------------------------

def test_fleet_markers_count_only_for_builds_started_before_them(tmp_path, monkeypatch):
    monkeypatch.setenv("GOLDSMITH_CACHE", str(tmp_path))
    a, b = Fleet("p/s/core", "qemu", True), Fleet("p/s/core", "docker", True)
    started = time.time()
    assert b.failure_since(started) is None
    a.mark_failed("core: step 'provision[1] shell' failed: exit 1\nmore")
    assert "target 'qemu' of p/s/core failed" in b.failure_since(started)
    assert "exit 1" in b.failure_since(started) and "more" not in b.failure_since(started)
    assert a.failure_since(started) is None, "a member never stops because of itself"
    assert b.failure_since(time.time() + 1) is None, "a marker from an earlier update is stale"
    assert Fleet("p/s/core", "docker", False).failure_since(started) is None  # finish the rest
    assert Fleet("p/s/other", "docker", True).failure_since(started) is None
    assert Fleet.from_props(None) is None and Fleet.from_props({"id": "x", "member": "y"}).fail_fast is True


class _Wait(BaseStep):
    """Waits like a long remote command does: polling the cancellation."""

    name = "long-command"

    def run(self, state):
        cancel.sleep(30)
        raise AssertionError("never interrupted")


class _Track(BaseStep):
    name = "create-thing"

    def run(self, state):
        state.track("thing", "thing-1")

    def cleanup(self, state):
        state.release("thing")
        state.cleaned = True


def test_a_cancel_interrupts_the_running_step_and_the_cleanups_run(tmp_path):
    state = BuildState(name="t", build_id="b", fingerprint="f", log=BuildLog("t", tmp_path / "log"))
    state.cleaned = False
    flag = {"reason": None}
    threading.Timer(0.3, lambda: flag.update(reason="stopped: target 'qemu' failed")).start()
    started = time.monotonic()
    with cancel.scope(lambda: flag["reason"], poll_s=0.05):
        with pytest.raises(StepError) as err:
            run_steps([_Track(), _Wait(), _Track()], state)
    assert time.monotonic() - started < 10
    assert isinstance(err.value.cause, cancel.BuildCancelled)
    assert "long-command" in str(err.value) and "target 'qemu' failed" in str(err.value)
    assert state.cleaned and state.resources == {}


def test_no_scope_no_cancel(tmp_path):
    state = BuildState(name="t", build_id="b", fingerprint="f", log=BuildLog("t", tmp_path / "log"))
    run_steps([_Track()], state)
    assert not cancel.cancelled() and cancel.reason() == ""


def test_unknown_paths_name_what_a_preview_cannot_know():
    from pulumi.output import Unknown

    # the SDK's deserializer gives providers Unknown objects (older SDKs: the marker string)
    props = {"name": "web", "source": {"type": "disk", "path": Unknown(), "checksum": UNKNOWN},
             "provisioners": [{"type": "shell", "env": {"A": "1"}}]}
    assert unknown_paths(props) == ["source.path", "source.checksum"]
    assert unknown_paths({"source": Unknown()}) == ["source"]
    assert contains_unknown({"a": [1, {"b": Unknown()}]}) and not contains_unknown({"a": [1, {"b": "x"}]})


# --- the examples under mocks ---------------------------------------------------------------------------

def registered(program: Path, config: dict | None = None) -> list[dict]:
    argv = [sys.executable, str(MOCKS), str(program)] + ([json.dumps(config)] if config else [])
    out = subprocess.run(argv, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-4000:]
    line = [l for l in out.stdout.splitlines() if l.startswith("RESOURCES=")][-1]
    return json.loads(line[len("RESOURCES="):])


def test_images_example_one_provider_process_per_image_and_layering():
    resources = registered(ROOT / "examples" / "images")
    by_name = {r["name"]: r for r in resources}
    images = [r for r in resources if "goldsmith:" in r["type"] and r["type"].endswith("Image") and "dynamic" in r["type"]]
    assert sorted(r["name"] for r in images) == ["core-docker", "core-qemu", "web-docker", "web-qemu"]
    providers = {r["provider"] for r in images}
    assert len(providers) == 4 and all("pulumi:providers:pulumi-python" in p for p in providers)
    web_vm = by_name["web-qemu"]["inputs"]
    assert web_vm["source"]["type"] == "disk" and web_vm["source"]["path"] == "/mock/core-qemu.qcow2"
    assert web_vm["source"]["checksum"].startswith("sha256:")
    assert by_name["web-docker"]["inputs"]["source"] == {"type": "image", "ref": "mock-core-docker", "pull": "never"}
    assert by_name["core-qemu"]["inputs"]["fleet"] == {"id": "images/test/core", "member": "qemu", "fail_fast": True}
    assert by_name["core-qemu"]["inputs"]["digest_paths"] == ["/etc/motd", "/etc/goldsmith", "/usr/bin/jq"]
    reports = [r for r in resources if r["type"].endswith("goldsmith:ConsistencyReport")]
    assert sorted(r["name"] for r in reports) == ["core-consistency", "web-consistency"]
    assert by_name["core-consistency"]["inputs"]["required_packages"] == ["jq"]


def test_images_example_builds_only_the_selected_targets_and_adds_aws():
    only = registered(ROOT / "examples" / "images", {"goldsmith:only": "docker"})
    assert sorted(r["name"] for r in only if r["type"].endswith("Image") and "dynamic" in r["type"]) == ["core-docker", "web-docker"]
    aws = {"region": "eu-central-1", "sourceAmi": "ami-0123456789abcdef0", "cidrs": ["10.0.0.0/8"]}
    resources = {r["name"]: r for r in registered(ROOT / "examples" / "images", {"images:aws": json.dumps(aws)})}
    assert resources["core-aws"]["inputs"]["source"] == {"type": "ami", "id": "ami-0123456789abcdef0"}
    assert resources["web-aws"]["inputs"]["source"]["type"] == "ami"  # the core's AMI (a mock id here)


def test_workload_example_reads_the_images_through_a_stack_reference():
    types = {r["type"]: r for r in registered(ROOT / "examples" / "workload", {"workload:cloud": "true"})}
    assert types["pulumi:pulumi:StackReference"]["name"] == "organization/goldsmith-images/test"
    assert types["pulumi-python:dynamic/workload:LocalContainer"]["inputs"]["image"] == "sha256:" + "2" * 64
    assert types["aws:ec2/launchTemplate:LaunchTemplate"]["inputs"]["imageId"] == "ami-0123456789abcdef0"
    assert types["docker:index/container:Container"]["inputs"]["image"] == "sha256:" + "2" * 64
    assert types["pulumi-python:dynamic/workload:LocalVmDisk"]["inputs"]["base"] == "/mock/images/web-0123.qcow2"


def test_report_resource_writes_the_file_and_fails_on_drift_when_asked(tmp_path):
    from goldsmith_provider.dynamic.report import ConsistencyDrift, ConsistencyReportProvider

    provider = ConsistencyReportProvider()
    props = {"template": "core", "images": images(), "required_packages": ["jq"], "base_dir": str(tmp_path),
             "settings": {"paths": ["/etc/motd"], "fail_on_drift": True}}
    assert provider.check({}, props).failures == []
    assert [f.property for f in provider.check({}, {**props, "settings": {"fail_on_drfit": True}}).failures] == [
        "consistency.fail_on_drfit"]
    outs = provider.create(props).outs
    written = json.loads((tmp_path / "reports" / "core-consistency.json").read_text())
    assert written == outs["report"] and outs["drift"] is False and outs["path"].endswith("core-consistency.json")

    drifting = {**props, "images": images(docker={"packages": ["bash=5.1", "jq=1.6", "libc6=2.36"]})}
    assert provider.diff("core-consistency", outs, drifting).changes is True
    with pytest.raises(ConsistencyDrift, match="package bash differs: docker=5.1, qemu=5.2"):
        provider.update("core-consistency", outs, drifting)
    assert json.loads((tmp_path / "reports" / "core-consistency.json").read_text())["drift"] is True, \
        "the report is written even when the update fails"
    report_only = {**drifting, "settings": {"paths": ["/etc/motd"], "fail_on_drift": False}}
    assert provider.update("core-consistency", outs, report_only).outs["drift"] is True
    provider.delete("core-consistency", outs)
    assert not (tmp_path / "reports" / "core-consistency.json").exists()
