"""The vagrant post-processor's cost per gzip level, on a real Debian disk: box size and time
relative to the qcow2 it packs (and to a plain `qemu-img convert`, the cost of writing the qcow2
itself). Prints; asserts nothing.

    python bench/vagrant_box.py [--qcow2 PATH] [--levels 0,1,6,9]

Without --qcow2 it converts the cached debootstrap base (~/.cache/goldsmith/bases/*/disk.raw, made
by any QEMU build) to a qcow2 in a temp dir first.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "provider"))

from goldsmith_provider.engine.paths import cache_root  # noqa: E402
from goldsmith_provider.postprocessors.vagrant import VagrantBox, package_box  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--qcow2", type=Path)
    ap.add_argument("--levels", default="0,1,6,9")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        qcow2 = args.qcow2
        convert_s = None
        if qcow2 is None:
            bases = sorted(cache_root().glob("bases/*/disk.raw"))
            if not bases:
                sys.exit("no cached base: run a QEMU build first, or pass --qcow2")
            qcow2 = Path(tmp) / "disk.qcow2"
            started = time.monotonic()
            subprocess.run(["qemu-img", "convert", "-f", "raw", "-O", "qcow2", str(bases[0]), str(qcow2)], check=True)
            convert_s = time.monotonic() - started
        size = qcow2.stat().st_size
        print(f"qcow2: {qcow2} ({size / (1 << 20):.0f} MiB)" + (f", qemu-img convert {convert_s:.1f}s" if convert_s else ""))
        print(f"{'level':>5} {'box MiB':>8} {'box/qcow2':>9} {'seconds':>8} {'MiB/s':>7}" + ("  x convert" if convert_s else ""))
        for level in (int(x) for x in args.levels.split(",")):
            box = Path(tmp) / f"l{level}.box"
            started = time.monotonic()
            package_box(VagrantBox(compression_level=level), qcow2, box, base_dir=Path(tmp))
            took = time.monotonic() - started
            ratio = f"  {took / convert_s:9.1f}" if convert_s else ""
            print(f"{level:>5} {box.stat().st_size / (1 << 20):>8.0f} {box.stat().st_size / size:>9.2f} {took:>8.1f} "
                  f"{size / (1 << 20) / took:>7.0f}{ratio}")
            box.unlink()


if __name__ == "__main__":
    main()
