"""goldsmith's SSH communicator against OpenSSH's scp: the same random file to the same guest, side by side.

The guest is a local OpenSSH sshd (tests/peers/sshd.py) or, with --guest qemu, goldsmith's cached Debian base
booted under QEMU (TCG here). Each run uploads the file with:

  goldsmith upload_file   the File provisioner's path (a tar streamed into `tar -x`, mode/owner applied)
  goldsmith put_file      paramiko SFTP, pipelined
  scp                     OpenSSH 9 scp (SFTP protocol)
  scp -O                  OpenSSH scp, legacy scp protocol

alternating, --runs times; after every upload the far side's sha256 must equal the file's (not timed). It
prints medians, MB/s and the ratios to scp. It asserts nothing about time: it prints.

    python bench/ssh_upload.py [--size-mb 200] [--runs 3] [--guest sshd|qemu] [--quick]
"""

from __future__ import annotations

import argparse
import hashlib
import io
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))


@contextmanager
def sshd_guest():
    """(communicator, ssh argv prefix, scp argv prefix, remote dir, user@host) for a local sshd."""
    from goldsmith_provider.communicators.ssh import SshCommunicator, SshTarget
    from peers.sshd import LocalSshd

    with LocalSshd() as server:
        comm = SshCommunicator(SshTarget("127.0.0.1", server.port, server.user, server.client.private_openssh,
                                         server.host.public_openssh))
        remote_dir = Path(tempfile.mkdtemp(prefix="gs-bench-far-"))
        try:
            yield comm, server.port, server.client.private_openssh, server.host.public_openssh, server.user, str(remote_dir)
        finally:
            comm.close()
            shutil.rmtree(remote_dir, ignore_errors=True)


@contextmanager
def qemu_guest():
    from goldsmith_provider.builders.qemu import accel, sources
    from goldsmith_provider.builders.qemu.boot import booted
    from goldsmith_provider.builders.qemu.config import DebootstrapSource
    from goldsmith_provider.engine.log import BuildLog
    from goldsmith_provider.engine.paths import cache_root

    log = BuildLog("bench-ssh", None, console=io.StringIO())
    resolved = sources.resolve(DebootstrapSource(disk_size_gb=4), base_dir=ROOT, cache_root=cache_root(), log=log)
    chosen = accel.detect_accelerator(cache_root(), log=log.info)
    print(f"guest: {resolved.path} under QEMU ({chosen})", flush=True)
    with booted(resolved.path, disk_format=resolved.format, log=log, accel_args=accel.qemu_accel_args(chosen),
                tag="bench-ssh-upload") as (comm, vm):
        t = comm.target
        yield comm, vm.ssh_port, t.private_key, t.host_key, t.user, "/root"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size-mb", type=int, default=200)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--guest", choices=("sshd", "qemu"), default="sshd")
    parser.add_argument("--quick", action="store_true", help="32 MB, one run")
    args = parser.parse_args()
    if args.quick:
        args.size_mb, args.runs = 32, 1

    from goldsmith_provider.engine.log import BuildLog

    work = Path(tempfile.mkdtemp(prefix="gs-bench-ssh-"))
    log = BuildLog("bench-ssh", None, console=io.StringIO())
    try:
        payload = work / "payload.bin"
        digest = hashlib.sha256()
        with open(payload, "wb") as f:
            for _ in range(args.size_mb):
                chunk = os.urandom(1 << 20)
                digest.update(chunk)
                f.write(chunk)
        want = digest.hexdigest()
        guest = sshd_guest() if args.guest == "sshd" else qemu_guest()
        with guest as (comm, port, private_key, host_key, user, far):
            key = work / "id"
            key.write_text(private_key)
            key.chmod(0o600)
            known = work / "known_hosts"
            known.write_text(f"[127.0.0.1]:{port} {host_key}\n")
            opts = ["-i", str(key), "-o", f"UserKnownHostsFile={known}", "-o", "StrictHostKeyChecking=yes",
                    "-o", "BatchMode=yes", "-o", "IdentitiesOnly=yes"]

            def scp(extra):
                return lambda dest: subprocess.run(["scp", "-q", *extra, "-P", str(port), *opts, str(payload),
                                                    f"{user}@127.0.0.1:{dest}"], check=True)

            methods = {
                "goldsmith upload_file": lambda dest: comm.upload_file(payload, dest, log=log, mode="0644"),
                "goldsmith put_file": lambda dest: comm.put_file(str(payload), dest),
                "scp": scp([]),
                "scp -O": scp(["-O"]),
            }
            comm.run("true", log=log)  # connect before timing
            transport = comm.client.get_transport()
            cipher = f"paramiko {transport.local_cipher}"
            times: dict[str, list[float]] = {m: [] for m in methods}
            for i in range(args.runs):
                for name, upload in methods.items():
                    dest = f"{far}/bench-{i}.bin"
                    started = time.monotonic()
                    upload(dest)
                    times[name].append(time.monotonic() - started)
                    got = comm.run(f"sha256sum {dest} && rm -f {dest}", log=log).output.split()[0]
                    if got != want:
                        raise SystemExit(f"{name}: the far side has sha256 {got}, expected {want}")
                print(f"run {i + 1}: " + ", ".join(f"{n} {t[-1]:.2f}s" for n, t in times.items()), flush=True)
        scp_time = statistics.median(times["scp"])
        print()
        print(f"guest: {args.guest}, file {args.size_mb} MiB random, runs {args.runs}, sha256 verified on the far side "
              f"after every upload; {cipher}; {subprocess.run(['ssh', '-V'], capture_output=True, text=True).stderr.strip()}")
        print(f"{'method':24}{'median':>9}{'MiB/s':>9}{'vs scp':>9}")
        for name, ts in times.items():
            t = statistics.median(ts)
            print(f"{name:24}{t:>8.2f}s{args.size_mb / t:>9.1f}{t / scp_time:>9.2f}")
        return 0
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
