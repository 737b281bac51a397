"""A real QEMU build, then the produced image booted again and inspected; and a failing build
that must leave nothing behind. Real peers only: QEMU (TCG or KVM), the guest's sshd, apt."""

import hashlib
import json
import re
from pathlib import Path

import pytest

from goldsmith_provider.builders.qemu import builder
from goldsmith_provider.builders.qemu.boot import booted
from goldsmith_provider.engine.errors import StepError
from goldsmith_provider.engine.paths import cache_root
import fault_matrix
from peers.http_server import LocalHttpServer

from .conftest import make_project, qemu_processes


pytestmark = pytest.mark.integration

USERADD = "useradd --system --no-create-home appsvc\n"


def prepare(props, root):
    spec, problems = builder.prepare(props, root)
    assert problems == [], problems
    return spec, builder.identify(spec, root)


def test_build_then_boot_the_image_and_inspect_it(tmp_path, tee_log, qemu_baseline):
    root = make_project(tmp_path / "project", script_extra=USERADD)
    tool = (root / "www" / "tool.sh").read_bytes()
    with LocalHttpServer(root / "www") as http:
        props = {
            "name": "it-image",
            "source": {"type": "debootstrap"},
            "provisioners": [
                {"type": "file", "source": "files/motd", "destination": "/etc/motd", "mode": "0644"},
                {"type": "shell", "scripts": ["scripts/configure.sh"], "env": {"GREETING": "hello world"}},
                {"type": "file", "source": "files/conf.d", "destination": "/etc/app", "mode": "0750", "owner": "appsvc", "group": "appsvc"},
                {"type": "file", "url": f"{http.url}/tool.sh", "checksum": "sha256:" + hashlib.sha256(tool).hexdigest(),
                 "destination": "/usr/local/bin/tool", "mode": "0755"},
                {"type": "shell", "inline": ["echo before-reboot > /root/marker", "systemctl reboot"], "expect_disconnect": True},
                {"type": "shell", "inline": ["test -f /root/marker", "echo booted-twice >> /root/marker", "uptime"]},
                {"type": "packages", "install": ["jq"]},
            ],
            "output": {"directory": str(tmp_path / "out"), "formats": ["qcow2", "vmdk", "raw"]},
            "boot_test": {"enabled": False},
        }
        spec, ident = prepare(props, root)
        outputs = builder.build(spec, ident, base_dir=root, log=tee_log)

    # Artifacts: every format, checksums that match, a manifest with packages and provenance.
    assert set(outputs["artifacts"]) == {"qcow2", "vmdk", "raw"}
    for fmt, art in outputs["artifacts"].items():
        path = Path(art["path"])
        assert path.exists() and path.stat().st_size == art["size"]
        assert art["sha256"] == "sha256:" + hashlib.sha256(path.read_bytes()).hexdigest()
    manifest = json.loads(Path(outputs["manifest_path"]).read_text())
    names = {p["name"] for p in manifest["packages"]}
    assert {"jq", "openssh-server", "systemd"} <= names
    assert manifest["provenance"]["fingerprint"] == ident.fingerprint
    assert manifest["provenance"]["source"]["digest"].startswith("sha256:")
    assert outputs["timings"]["boot_to_ssh_s"] > 0
    assert "the guest rebooted" in tee_log.text, "the reboot provisioner must really reboot (a new boot id) before the next one runs"
    assert not list((tmp_path / "out").glob(".*partial")), "no partial files may remain"
    assert qemu_baseline() == []

    # Boot the produced image again (fresh keys, throw-away overlay) and look inside.
    qcow2 = Path(outputs["path"])
    before = qcow2.read_bytes()[:1 << 20]
    from goldsmith_provider.builders.qemu.builder import select_accelerator

    _, accel_args = select_accelerator(spec, tee_log)
    with booted(qcow2, log=tee_log, accel_args=accel_args) as (comm, _vm):
        def sh(cmd):
            return comm.run(cmd, log=tee_log).output.strip()

        assert sh("cat /etc/motd") == "goldsmith integration image"
        assert sh("stat -c '%a' /etc/motd") == "644"
        assert sh("cat /opt/app/greeting") == "hello world"
        assert sh("stat -c '%a %U %G' /etc/app") == "750 appsvc appsvc"
        assert sh("cat /etc/app/app.conf /etc/app/db.conf") == "listen = 8080\npool = 5"
        assert sh("/usr/local/bin/tool") == "tool-from-artifact"
        assert sh("cat /root/marker") == "before-reboot\nbooted-twice"
        assert sh("jq -n '1+1'") == "2"
        # Generalized: new machine-id generated at this boot, only our injected host key, no build key.
        assert len(sh("cat /etc/machine-id")) == 32
        assert sh("ls /etc/ssh/ | grep -c ssh_host_ || true") == "2"
        assert sh("wc -l < /root/.ssh/authorized_keys") == "1", "only this boot's key, not the build's"
        assert sh("ls /var/lib/apt/lists | grep -v -e partial -e lock | wc -l") == "0"
    assert qcow2.read_bytes()[:1 << 20] == before, "booting for the check must not write the artifact"
    assert qemu_baseline() == []


def test_failing_provisioner_leaves_nothing_and_shows_the_output(tmp_path, tee_log, qemu_baseline):
    root = make_project(tmp_path / "project", script_extra=USERADD)
    out = tmp_path / "out"
    props = {
        "name": "it-broken",
        "source": {"type": "debootstrap"},
        "provisioners": [
            {"type": "shell", "inline": ["echo preparing", "echo 'E: the thing is broken' >&2", "exit 7"]},
            {"type": "shell", "inline": ["echo never runs"]},
        ],
        "output": {"directory": str(out)},
    }
    spec, ident = prepare(props, root)
    with pytest.raises(StepError) as info:
        builder.build(spec, ident, base_dir=root, log=tee_log)
    message = str(info.value)
    assert info.value.step == "provision[0] shell"
    assert "exit status 7" in message and "E: the thing is broken" in message and "preparing" in message
    assert "never runs" not in tee_log.text
    assert qemu_baseline() == []
    assert not out.exists() or list(out.iterdir()) == []
    mine = [m for m in (cache_root() / "work").glob("*/goldsmith-build.json") if json.loads(m.read_text())["name"] == "it-broken"]
    assert mine == [], "the work dir (overlay, seed, keys) must be removed"


# --- the fault matrix: a failure at any step leaves nothing ----------------------------------------------------
# One case per step of the builder's own step list (tests/fault_matrix.py), each its own build; the cases up to
# create-seed boot nothing, the others boot one TCG guest each (boot-test: two).

QEMU_STEPS = fault_matrix.qemu_cases()


def build_id_of(log_text: str) -> str:
    found = re.findall(r"build (\d{14}-[0-9a-f]{8}): fingerprint", log_text)
    assert found, "the build logged its id"
    return found[-1]


def qemu_leftovers(build_id: str, out: Path) -> list[str]:
    """Everything of build ``build_id`` that still exists: its VMs (by process name), its work dir (overlay,
    seed, keys, boot-test overlay) and any file in the output directory (partial or complete artifacts)."""
    left = sorted(qemu_processes(f"goldsmith-build-{build_id}"))
    work = cache_root() / "work" / build_id
    if work.exists():
        left.append(f"work dir {work}: {sorted(p.name for p in work.rglob('*'))}")
    if out.exists():
        left += [f"output {p.name}" for p in out.iterdir()]
    return left


@pytest.mark.fault_matrix("qemu")
@pytest.mark.parametrize("step", QEMU_STEPS, ids=[fault_matrix.case_id(s) for s in QEMU_STEPS])
def test_a_failure_at_any_qemu_step_leaves_nothing(tmp_path, tee_log, monkeypatch, step):
    root = tmp_path / "project"
    root.mkdir()
    out = tmp_path / "out"
    props = fault_matrix.qemu_props(f"fm-{fault_matrix.case_id(step)}", out,
                                    boot_test=fault_matrix.qemu_needs_boot_test(step))
    spec, ident = prepare(props, root)
    monkeypatch.setenv("GOLDSMITH_FAIL_STEP", step)
    with pytest.raises(StepError) as info:
        builder.build(spec, ident, base_dir=root, log=tee_log)
    assert info.value.step == step
    assert f"step {step!r} failed: injected failure after step {step!r}" in str(info.value)
    assert f"==> {step}" in tee_log.text
    build_id = build_id_of(tee_log.text)
    # by this build's id (its boot-test VM included): other suites' VMs may start meanwhile
    assert qemu_leftovers(build_id, out) == []
