"""A no-op `pulumi preview` of a 20-image stack against the same project's empty stack, real CLI, file backend.

The project declares --images QemuImages (config `images`), each from the same local source disk
(DiskSource: a qcow2 converted from goldsmith's cached Debian base, ~390 MiB, hashed for the
fingerprint) with a file and a shell provisioner. The images are "already built" without booting
anything: the bench writes each image's artifact (a small qcow2) and manifest under its real fingerprint,
and `pulumi up` adopts them, so all of them are in the state. Then, alternating, --runs times:

  empty        `pulumi preview` of the stack with 0 images
  noop         20 dynamic resources whose provider does nothing: Pulumi's own per-resource cost
  20, warm     `pulumi preview --expect-no-changes` of the full stack (digests on disk from an earlier run)
  20, cold     the same after removing the on-disk digest cache (the first preview after a source changed)
  20, REV      with --before REV: the full stack previewed by goldsmith's code at git revision REV
               (provider and SDK exported to a temp dir, put first on PYTHONPATH): the "before" numbers

It prints the medians, the ratios to the empty stack and the per-image check/diff cost. It asserts
nothing about time: it prints.

    python bench/noop_preview.py [--images 20] [--runs 3] [--before REV] [--quick]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

TEMPLATE = '''"""The bench's image spec, shared by the program and the bench (which seeds the adopted images)."""
import goldsmith as gs


def image_args(i: int) -> gs.QemuImageArgs:
    return gs.QemuImageArgs(
        name=f"img{i:02d}",
        source=gs.DiskSource(path="base.qcow2"),
        provisioners=[
            gs.File(source="files/motd", destination="/etc/motd", mode="0644"),
            gs.Shell(scripts=["scripts/setup.sh"], env={"INDEX": str(i)}),
        ],
        boot_test=gs.BootTest(enabled=False),
        labels={"bench": "noop-preview"},
    )
'''

PROGRAM = '''import pulumi
import pulumi.dynamic

import goldsmith as gs
from template import image_args


class Noop(pulumi.dynamic.ResourceProvider):
    """The calibration: a dynamic resource whose check/diff do nothing (Pulumi's own per-resource cost)."""

    def create(self, props):
        return pulumi.dynamic.CreateResult("noop", props)


class NoopResource(pulumi.dynamic.Resource, module="bench", name="Noop"):
    pass


config = pulumi.Config()
count = config.get_int("images") or 0
images = [gs.QemuImage(f"img{i:02d}", image_args(i)) for i in range(count)]
noops = [NoopResource(Noop(), f"noop{i:02d}", {"index": i}) for i in range(config.get_int("noops") or 0)]
pulumi.export("fingerprints", [image.fingerprint for image in images])
'''


def make_project(root: Path, base_raw: Path) -> Path:
    root.mkdir(parents=True)
    (root / "Pulumi.yaml").write_text("name: goldsmith-bench-preview\nruntime:\n  name: python\n  options:\n"
                                      f"    toolchain: pip\n    virtualenv: {sys.prefix}\n")
    (root / "__main__.py").write_text(PROGRAM)
    (root / "template.py").write_text(TEMPLATE)
    (root / "files").mkdir()
    (root / "files" / "motd").write_text("bench image\n")
    (root / "scripts").mkdir()
    (root / "scripts" / "setup.sh").write_text("#!/bin/sh\necho \"image $INDEX\" > /etc/bench-index\n")
    subprocess.run(["qemu-img", "convert", "-O", "qcow2", str(base_raw), str(root / "base.qcow2")], check=True)
    return root


def seed_adoptable_images(root: Path, count: int) -> None:
    """Write what a finished build leaves (artifact + manifest) under each image's real fingerprint."""
    sys.path.insert(0, str(root))
    from template import image_args  # type: ignore[import-not-found]

    from goldsmith._props import to_props
    from goldsmith_provider.builders.qemu import builder
    from goldsmith_provider.engine.fingerprint import sha256_file

    for i in range(count):
        spec, problems = builder.prepare(to_props(image_args(i)), root)
        assert not problems, problems
        ident = builder.identify(spec, root)
        manifest = builder.manifest_path(spec, ident, root)
        manifest.parent.mkdir(parents=True, exist_ok=True)
        art = manifest.with_name(f"{spec.name}-{ident.short}.qcow2")
        subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", str(art), "1G"], check=True)
        manifest.write_text(json.dumps({
            "name": spec.name, "description": "", "labels": spec.labels, "fingerprint": ident.fingerprint,
            "input_digests": ident.digests,
            "artifacts": {"qcow2": {"path": str(art), "format": "qcow2", "size": art.stat().st_size,
                                    "sha256": sha256_file(art)}},
            "packages": [],
            "provenance": {"builder": "qemu", "built_at": "2026-01-01T00:00:00Z", "accelerator": "tcg",
                           "source": {"type": "disk", "digest": ident.digests.get("source.path", "")}},
        }, indent=2))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=20)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--before", metavar="REV", help="also preview with goldsmith's code at this git revision")
    parser.add_argument("--quick", action="store_true", help="5 images, one run")
    args = parser.parse_args()
    if args.quick:
        args.images, args.runs = 5, 1

    from e2e.conftest import pulumi_bin
    from goldsmith_provider.builders.qemu import sources
    from goldsmith_provider.builders.qemu.config import DebootstrapSource
    from goldsmith_provider.engine.log import BuildLog
    from goldsmith_provider.engine.paths import cache_root

    import io

    base = sources.resolve(DebootstrapSource(), base_dir=ROOT, cache_root=cache_root(),
                           log=BuildLog("bench", None, console=io.StringIO())).path
    work = Path(tempfile.mkdtemp(prefix="gs-bench-preview-"))
    try:
        project = make_project(work / "project", base)
        cache = work / "cache"  # the provider's cache: the on-disk digests live here
        env = dict(os.environ)
        env.update({
            "PULUMI_HOME": str(work / "pulumi-home"), "PULUMI_BACKEND_URL": f"file://{work / 'state'}",
            "PULUMI_CONFIG_PASSPHRASE": "goldsmith-bench", "PULUMI_SKIP_UPDATE_CHECK": "true",
            "PULUMI_DISABLE_AUTOMATIC_PLUGIN_ACQUISITION": "true", "GOLDSMITH_CACHE": str(cache),
            "PATH": str(Path(sys.executable).parent) + os.pathsep + env.get("PATH", ""),
        })
        (work / "state").mkdir()
        os.environ["GOLDSMITH_CACHE"] = str(cache)

        old_env = None
        if args.before:
            old = work / "old-code"
            old.mkdir()
            archive = subprocess.run(["git", "-C", str(ROOT), "archive", args.before, "provider", "sdk"],
                                     capture_output=True, check=True).stdout
            subprocess.run(["tar", "-x", "-C", str(old)], input=archive, check=True)
            old_env = {**env, "PYTHONPATH": f"{old / 'provider'}{os.pathsep}{old / 'sdk'}"}

        def pulumi(*argv: str, stack: str, code_env: dict | None = None) -> float:
            started = time.monotonic()
            proc = subprocess.run([pulumi_bin(), *argv, "--stack", stack, "--non-interactive"], cwd=project,
                                  env=code_env or env,
                                  capture_output=True, text=True)
            took = time.monotonic() - started
            if proc.returncode != 0:
                raise SystemExit(f"pulumi {' '.join(argv)} --stack {stack} failed:\n{(proc.stdout + proc.stderr)[-4000:]}")
            return took

        for stack, count, noops in (("empty", 0, 0), ("full", args.images, 0), ("noop", 0, args.images)):
            pulumi("stack", "init", stack=stack)
            pulumi("config", "set", "images", str(count), stack=stack)
            pulumi("config", "set", "noops", str(noops), stack=stack)
        seed_adoptable_images(project, args.images)
        up = pulumi("up", "--yes", "--skip-preview", stack="full")
        state = json.loads(subprocess.run([pulumi_bin(), "stack", "export", "--stack", "full"], cwd=project, env=env,
                                          capture_output=True, text=True, check=True).stdout)
        images = [r for r in state["deployment"]["resources"] if r["type"].endswith("QemuImage")]
        adopted = sum(1 for r in images if r["outputs"].get("adopted"))
        print(f"up: {len(images)} images in the state ({adopted} adopted, none built) in {up:.1f}s; "
              f"source disk {(project / 'base.qcow2').stat().st_size / 2**20:.0f} MiB", flush=True)
        pulumi("up", "--yes", "--skip-preview", stack="empty")
        pulumi("up", "--yes", "--skip-preview", stack="noop")

        times: dict[str, list[float]] = {"empty": [], "noop": [], "warm": [], "cold": [], "before": []}
        for i in range(args.runs):
            times["empty"].append(pulumi("preview", stack="empty"))
            times["noop"].append(pulumi("preview", "--expect-no-changes", stack="noop"))
            times["warm"].append(pulumi("preview", "--expect-no-changes", stack="full"))
            shutil.rmtree(cache / "digests", ignore_errors=True)
            times["cold"].append(pulumi("preview", "--expect-no-changes", stack="full"))
            if old_env:
                times["before"].append(pulumi("preview", "--expect-no-changes", stack="full", code_env=old_env))
            print(f"run {i + 1}: empty {times['empty'][-1]:.2f}s, noop {times['noop'][-1]:.2f}s, {args.images} images warm {times['warm'][-1]:.2f}s, "
                  f"cold {times['cold'][-1]:.2f}s" + (f", at {args.before} {times['before'][-1]:.2f}s" if old_env else ""),
                  flush=True)

        empty, noop, warm, cold = (statistics.median(times[k]) for k in ("empty", "noop", "warm", "cold"))
        print()
        print(f"pulumi preview, file backend, {args.images} adopted QemuImages vs an empty stack, runs {args.runs}")
        print(f"{'stack':34}{'median':>9}{'vs empty':>10}{'per image':>11}")
        print(f"{'empty (0 images)':34}{empty:>8.2f}s{1:>10.2f}{'':>11}")
        print(f"{f'{args.images} no-op dynamic resources':34}{noop:>8.2f}s{noop / empty:>10.2f}"
              f"{(noop - empty) / args.images * 1000:>9.0f}ms")
        print(f"{f'{args.images} images, digests cached':34}{warm:>8.2f}s{warm / empty:>10.2f}"
              f"{(warm - empty) / args.images * 1000:>9.0f}ms")
        print(f"{f'{args.images} images, digests removed':34}{cold:>8.2f}s{cold / empty:>10.2f}"
              f"{(cold - empty) / args.images * 1000:>9.0f}ms")
        if old_env:
            before = statistics.median(times["before"])
            print(f"{f'{args.images} images, code at {args.before}':34}{before:>8.2f}s{before / empty:>10.2f}"
                  f"{(before - empty) / args.images * 1000:>9.0f}ms")
            print(f"before / after (warm): {before / warm:.2f}")
        print(f"cold / warm: {cold / warm:.2f}")
        print(f"goldsmith's own share of a no-op image preview: {(warm - noop) / args.images * 1000:.0f} ms per image "
              f"(images minus no-op resources)")
        for stack in ("full", "empty", "noop"):
            pulumi("destroy", "--yes", "--skip-preview", stack=stack)
        return 0
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
