"""A goldsmith QEMU build against the physical limit, measured by hand in the same run on the same base.

The spec is the cheapest real one: goldsmith's cached Debian base (debootstrap source), a file provisioner
(a motd, 0644) and a shell provisioner (a script with an env var), no updates, no boot test. goldsmith's
time is its own per-step timings (the runner's). The limit is the same work done by hand, with no
goldsmith code on the path but the seed disk that hands the guest its keys:

  boot-to-SSH   qemu-system-x86_64 (same machine flags) on a qcow2 overlay until OpenSSH `ssh` logs in
  provision     OpenSSH scp of the motd + chmod, scp of the script + run it with the env var
  power-off     `poweroff` until QEMU exits (needed for a consistent disk; reported apart)
  disk write    qemu-img convert -O qcow2 of the overlay

It prints both columns, the overhead ratio and where the rest goes. It asserts nothing about time.

    python bench/qemu_build_overhead.py [--runs 1]
"""

from __future__ import annotations

import argparse
import io
import json
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

SCRIPT = "#!/bin/sh\nset -eu\nmkdir -p /opt/app\necho \"greeting=$GREETING\" > /opt/app/greeting\n"


def make_project(root: Path) -> Path:
    (root / "files").mkdir(parents=True)
    (root / "files" / "motd").write_text("goldsmith bench image\n")
    (root / "scripts").mkdir()
    (root / "scripts" / "configure.sh").write_text(SCRIPT)
    return root


def goldsmith_build(root: Path, run: str) -> dict:
    from goldsmith_provider.builders.qemu import builder
    from goldsmith_provider.engine.log import BuildLog

    props = {
        "name": f"bench-{run}",
        "source": {"type": "debootstrap"},
        "provisioners": [
            {"type": "file", "source": "files/motd", "destination": "/etc/motd", "mode": "0644"},
            {"type": "shell", "scripts": ["scripts/configure.sh"], "env": {"GREETING": run}},
        ],
        "boot_test": {"enabled": False},
        "output": {"directory": "images"},
    }
    spec, problems = builder.prepare(props, root)
    assert not problems, problems
    ident = builder.identify(spec, root)
    log = BuildLog("bench", root / f"goldsmith-{run}.log", console=io.StringIO())
    started = time.monotonic()
    out = builder.build(spec, ident, base_dir=root, log=log)
    total = time.monotonic() - started
    manifest = json.loads(Path(out["manifest_path"]).read_text())
    steps = manifest["provenance"]["step_timings_s"]
    return {"total": total, "steps": steps, "timings": out["timings"], "size": out["artifacts"]["qcow2"]["size"]}


def by_hand(root: Path, base: Path, accel_args: list[str], run: str) -> dict:
    """The same work with qemu, ssh, scp and qemu-img only."""
    from goldsmith_provider.builders.common.keys import generate_ed25519
    from goldsmith_provider.builders.qemu.seed import write_seed
    from goldsmith_provider.engine.log import BuildLog

    work = Path(tempfile.mkdtemp(prefix="gs-bench-hand-"))
    proc = None
    try:
        client, host = generate_ed25519("bench-client"), generate_ed25519("bench-host")
        write_seed(work, user="root", client=client, host=host, instance_id=f"hand-{run}", hostname="bench",
                   log=BuildLog("bench", None, console=io.StringIO()))
        (work / "id").write_text(client.private_openssh)
        (work / "id").chmod(0o600)
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        (work / "known_hosts").write_text(f"[127.0.0.1]:{port} {host.public_openssh}\n")
        opts = ["-i", str(work / "id"), "-o", f"UserKnownHostsFile={work / 'known_hosts'}", "-o",
                "StrictHostKeyChecking=yes", "-o", "BatchMode=yes", "-o", "IdentitiesOnly=yes", "-o", "ConnectTimeout=3"]
        ssh = ["ssh", "-p", str(port), *opts, "root@127.0.0.1"]

        def scp(local: Path, remote: str) -> None:
            subprocess.run(["scp", "-q", "-P", str(port), *opts, str(local), f"root@127.0.0.1:{remote}"], check=True)

        subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", "-F", "raw", "-b", str(base), str(work / "disk.qcow2")],
                       check=True)
        t = {}
        started = time.monotonic()
        proc = subprocess.Popen([
            "qemu-system-x86_64", "-name", f"bench-hand-{run}", *accel_args, "-smp", "2", "-m", "2048",
            "-nodefaults", "-no-user-config", "-display", "none",
            "-drive", f"file={work / 'disk.qcow2'},if=virtio,format=qcow2,discard=unmap,detect-zeroes=unmap",
            "-netdev", f"user,id=n0,hostfwd=tcp:127.0.0.1:{port}-:22", "-device", "virtio-net-pci,netdev=n0",
            "-device", "virtio-rng-pci", "-serial", f"file:{work / 'serial.log'}",
            "-drive", f"file={work / 'seed.img'},if=virtio,format=raw,readonly=on",
        ], stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        while subprocess.run([*ssh, "true"], capture_output=True).returncode != 0:
            if proc.poll() is not None or time.monotonic() - started > 900:
                raise SystemExit("by hand: the guest never answered SSH")
            time.sleep(1)
        t["boot_to_ssh"] = time.monotonic() - started

        started = time.monotonic()
        scp(root / "files" / "motd", "/etc/motd")
        subprocess.run([*ssh, "chmod 0644 /etc/motd"], check=True)
        scp(root / "scripts" / "configure.sh", "/tmp/configure.sh")
        subprocess.run([*ssh, f"GREETING={run} sh -e /tmp/configure.sh && rm -f /tmp/configure.sh"], check=True)
        t["provision"] = time.monotonic() - started

        started = time.monotonic()
        subprocess.run([*ssh, "(sleep 1; systemctl poweroff) </dev/null >/dev/null 2>&1 &"], check=True)
        proc.wait(300)
        t["power_off"] = time.monotonic() - started

        started = time.monotonic()
        subprocess.run(["qemu-img", "convert", "-O", "qcow2", str(work / "disk.qcow2"), str(work / "out.qcow2")], check=True)
        t["disk_write"] = time.monotonic() - started
        t["size"] = (work / "out.qcow2").stat().st_size
        return t
    finally:
        if proc is not None and proc.poll() is None:
            proc.kill()
            proc.wait()
        shutil.rmtree(work, ignore_errors=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=1)
    args = parser.parse_args()

    from goldsmith_provider.builders.qemu import accel, sources
    from goldsmith_provider.builders.qemu.config import DebootstrapSource
    from goldsmith_provider.engine.log import BuildLog
    from goldsmith_provider.engine.paths import cache_root

    quiet = BuildLog("bench", None, console=io.StringIO())
    base = sources.resolve(DebootstrapSource(), base_dir=ROOT, cache_root=cache_root(), log=quiet).path
    chosen = accel.detect_accelerator(cache_root(), log=quiet.info)
    accel_args = accel.qemu_accel_args(chosen)
    work = Path(tempfile.mkdtemp(prefix="gs-bench-qemu-"))
    try:
        root = make_project(work / "project")
        gs_runs, hand_runs = [], []
        for i in range(args.runs):
            run = f"r{i}{int(time.time()) % 100000}"
            hand_runs.append(by_hand(root, base, accel_args, run))
            h = hand_runs[-1]
            print(f"run {i + 1} by hand: boot-to-SSH {h['boot_to_ssh']:.1f}s, provision {h['provision']:.1f}s, "
                  f"power-off {h['power_off']:.1f}s, disk write {h['disk_write']:.1f}s", flush=True)
            gs_runs.append(goldsmith_build(root, run))
            g = gs_runs[-1]
            print(f"run {i + 1} goldsmith: {g['total']:.1f}s {json.dumps(g['steps'])}", flush=True)

        med = lambda rows, key: statistics.median(r[key] for r in rows)  # noqa: E731
        steps = {k: statistics.median(r["steps"].get(k, 0.0) for r in gs_runs) for k in gs_runs[0]["steps"]}
        provision = sum(v for k, v in steps.items() if k.startswith("provision["))
        gs_total = med(gs_runs, "total")
        limit = med(hand_runs, "boot_to_ssh") + med(hand_runs, "provision") + med(hand_runs, "disk_write")
        limit_off = limit + med(hand_runs, "power_off")
        rows = [
            ("boot to SSH", steps.get("start-vm", 0) + steps.get("wait-for-ssh", 0), med(hand_runs, "boot_to_ssh")),
            ("provision", provision, med(hand_runs, "provision")),
            ("power-off", steps.get("shutdown", 0), med(hand_runs, "power_off")),
            ("disk write", steps.get("export-image", 0) + steps.get("convert", 0), med(hand_runs, "disk_write")),
        ]
        accounted = {"start-vm", "wait-for-ssh", "shutdown", "export-image", "convert"}
        extra = {k: v for k, v in steps.items() if k not in accounted and not k.startswith("provision[")}
        print()
        print(f"QEMU ({chosen}), base {base}, runs {args.runs}")
        print(f"{'phase':22}{'goldsmith':>11}{'by hand':>10}")
        for name, g, h in rows:
            print(f"{name:22}{g:>10.1f}s{h:>9.1f}s")
        for name, v in extra.items():
            print(f"{name:22}{v:>10.1f}s{'-':>10}")
        print(f"{'total':22}{gs_total:>10.1f}s{limit_off:>9.1f}s")
        print(f"overhead: goldsmith / (boot-to-SSH + provision + disk write) = {gs_total:.1f} / {limit:.1f} = "
              f"{gs_total / limit:.2f}; with the clean power-off in the limit: {gs_total / limit_off:.2f}")
        print(f"qcow2 written: goldsmith {med(gs_runs, 'size') / 2**20:.0f} MiB, by hand {med(hand_runs, 'size') / 2**20:.0f} MiB")
        return 0
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
