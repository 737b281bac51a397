"""Interrupting `pulumi up` mid-build, through the real CLI, with real builders (a dockerd, a TCG QEMU guest).

- SIGINT / SIGTERM to `pulumi up`: the engine calls the provider's Cancel; the build's cleanups run; the CLI
  exits; nothing of the build remains; the state holds no resource and no pending operation; a later `up` works.
- SIGTERM to the provider process: the same, the provider exiting once its cleanups are done.
- SIGKILL to `pulumi up`: the provider notices that its engine is gone and cleans up; the pending create the CLI
  left in the state is cleared by `pulumi refresh --clear-pending-creates`; a later `up` works.
- SIGKILL to the provider (and the CLI): the builder stays behind; `goldsmith gc` finds and removes it.

The seconds from the signal to a clean state are printed (`interrupt:` lines); the bound asserted is a
correctness bound, not a speed target.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from goldsmith_provider.builders.docker import engine as labels
from goldsmith_provider.engine.paths import cache_root

from .conftest import HERE, qemu_pids

pytestmark = pytest.mark.e2e

BOUND_S = 120  # signal -> CLI exited and everything cleaned up: a correctness bound
SLEEP_S = 900  # the provisioner's sleep: far longer than any interrupt takes


def measured(what: str, seconds: float) -> None:
    sys.stderr.write(f"\ninterrupt: {what}: {seconds:.1f}s\n")


def gone(pid: int) -> bool:
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return True
    return "(zombie)" in status


def wait_gone(pid: int, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while not gone(pid):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.2)
    return True


def goldsmith_gc(*args: str) -> str:
    done = subprocess.run([sys.executable, "-m", "goldsmith_provider.cli", "gc", *args], capture_output=True,
                          text=True, timeout=300, env=os.environ)
    assert done.returncode == 0, done.stdout + done.stderr
    sys.stderr.write(f"\n$ goldsmith gc {' '.join(args)}\n{done.stdout}")
    return done.stdout


def state_of(p) -> tuple[list[str], list]:
    deployment = p.export()["deployment"]
    resources = [r["urn"] for r in deployment.get("resources") or [] if "goldsmith:" in r.get("type", "") or
                 "dynamic:Resource" in r.get("type", "")]
    return resources, deployment.get("pending_operations") or []


def interrupt(run, target: str, sig: signal.Signals) -> float:
    """Send ``sig`` to the CLI or to its provider plugin; the seconds until the CLI has exited."""
    provider = run.plugin_pid()
    started = time.monotonic()
    os.kill(run.proc.pid if target == "cli" else provider, sig)
    if target == "cli" and sig == signal.SIGKILL:
        run.proc.wait(30)
    else:
        status = run.finish(BOUND_S)
        assert status != 0, "an interrupted update fails"
    return time.monotonic() - started


# --- Docker -----------------------------------------------------------------------------------------------------


def docker_project(pulumi_project, debian_rootfs):
    p = pulumi_project(HERE / "interrupt_project", name="goldsmith-e2e-interrupt")
    p.run("config", "set", "builder", "docker")
    p.run("config", "set", "rootfs", str(debian_rootfs))
    p.run("config", "set", "sleep", str(SLEEP_S))
    return p


def build_containers(client) -> list[str]:
    return [c.name for c in client.containers.list(all=True, filters={"label": labels.BUILD_ID})]


def start_docker_build(p, client):
    run = p.start("up", "--yes", "--skip-preview")
    run.wait_for("interrupt-me", 300)  # the provisioner runs in the build container
    assert len(build_containers(client)) == 1
    return run


def later_up_works(p, client):
    p.run("config", "set", "sleep", "0")
    p.run("up", "--yes", "--skip-preview")
    out = p.outputs()
    assert client.containers.run(out["image_id"], remove=True, network_mode="none").decode().strip() == "slept"
    p.run("destroy", "--yes", "--skip-preview")


@pytest.mark.parametrize("target,sig", [("cli", signal.SIGINT), ("cli", signal.SIGTERM), ("provider", signal.SIGTERM)],
                         ids=["SIGINT-to-pulumi", "SIGTERM-to-pulumi", "SIGTERM-to-provider"])
def test_docker_build_interrupted_cleans_up(pulumi_project, docker_engine, debian_rootfs, target, sig):
    client = docker_engine.client()
    p = docker_project(pulumi_project, debian_rootfs)
    run = start_docker_build(p, client)
    provider = run.plugin_pid()
    took = interrupt(run, target, sig)
    measured(f"docker, {sig.name} to {target}: pulumi up exited", took)
    text = run.text
    assert build_containers(client) == [], "the build container was removed"
    assert "build cancelled" in text and "step 'provision[0] shell' failed" in text
    if target == "cli":
        assert f"{'^C' if sig == signal.SIGINT else 'SIGTERM'} received; cancelling" in text
        assert "the engine cancelled the update" in text
    else:
        assert f"{sig.name} received: cancelling 1 running build(s)" in text
    assert wait_gone(provider, 30), "the provider process exited"
    assert state_of(p) == ([], []), "no resource and no pending operation"
    later_up_works(p, client)


def test_docker_sigkill_to_pulumi_the_provider_cleans_up_itself(pulumi_project, docker_engine, debian_rootfs):
    client = docker_engine.client()
    p = docker_project(pulumi_project, debian_rootfs)
    run = start_docker_build(p, client)
    provider = run.plugin_pid()
    started = time.monotonic()
    os.killpg(run.proc.pid, signal.SIGKILL)  # the CLI and its process group; the plugin has a group of its own
    run.proc.wait(30)
    assert wait_gone(provider, BOUND_S), "the orphaned provider cleaned up and exited"
    measured("docker, SIGKILL to pulumi: the orphaned provider cleaned up and exited", time.monotonic() - started)
    assert build_containers(client) == []
    resources, pending = state_of(p)
    assert resources == [] and [op["type"] for op in pending] == ["creating"], "the killed CLI left its pending create"
    refresh = p.run("refresh", "--yes", "--skip-preview", "--clear-pending-creates")
    assert state_of(p) == ([], []), refresh.text
    later_up_works(p, client)


def test_docker_sigkill_to_the_provider_leaves_a_container_that_gc_removes(pulumi_project, docker_engine, debian_rootfs):
    client = docker_engine.client()
    p = docker_project(pulumi_project, debian_rootfs)
    run = start_docker_build(p, client)
    took = interrupt(run, "provider", signal.SIGKILL)
    measured("docker, SIGKILL to the provider: pulumi up exited", took)
    [left] = build_containers(client)
    assert left in goldsmith_gc("--platform", "docker", "--dry-run")
    goldsmith_gc("--platform", "docker")
    assert build_containers(client) == []
    assert state_of(p) == ([], [])
    later_up_works(p, client)


# --- QEMU -------------------------------------------------------------------------------------------------------


def qemu_project(pulumi_project):
    p = pulumi_project(HERE / "interrupt_project", name="goldsmith-e2e-interrupt-qemu")
    p.run("config", "set", "builder", "qemu")
    p.run("config", "set", "sleep", str(SLEEP_S))
    return p


def qemu_build_id(text: str) -> str:
    found = re.findall(r"build (\d{14}-[0-9a-f]{8}): fingerprint", text)
    assert found, text[-3000:]
    return found[-1]


def qemu_leftovers(build_id: str) -> list[str]:
    left = list(qemu_pids(f"goldsmith-build-{build_id}").values())
    if (cache_root() / "work" / build_id).exists():
        left.append(f"work dir {cache_root() / 'work' / build_id}")
    return left


@pytest.mark.parametrize("target,sig", [("cli", signal.SIGINT), ("provider", signal.SIGKILL)],
                         ids=["SIGINT-to-pulumi", "SIGKILL-to-provider-then-gc"])
def test_qemu_build_interrupted(pulumi_project, target, sig):
    p = qemu_project(pulumi_project)
    run = p.start("up", "--yes", "--skip-preview")
    run.wait_for("interrupt-me", 900)  # the VM booted, SSH is up, the provisioner runs
    build_id = qemu_build_id(run.text)
    assert qemu_leftovers(build_id), "the builder VM and its work dir exist"
    took = interrupt(run, target, sig)
    measured(f"qemu, {sig.name} to {target}: pulumi up exited", took)
    if sig == signal.SIGKILL:
        left = qemu_leftovers(build_id)
        assert len(left) == 2, left  # the VM (in its own session) and the work dir outlive the provider
        listed = goldsmith_gc("--platform", "qemu", "--dry-run")
        assert f"goldsmith-build-{build_id}" in listed and f"workdir {build_id}" in listed
        goldsmith_gc("--platform", "qemu")
    else:
        assert "build cancelled" in run.text and "step 'provision[0] shell' failed" in run.text
    assert qemu_leftovers(build_id) == []
    assert state_of(p) == ([], [])
    preview = p.run("preview")  # the stack is consistent: the image is simply still to be created
    assert "+ 1 to create" in preview.text or "1 to create" in preview.text
