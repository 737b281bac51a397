"""goldsmith's Docker builder against `docker build` of the equivalent Dockerfile, on the same engine, same base.

Both start from the same imported Debian rootfs (imported once, before any timing) and produce the same files:
a motd (0644), a config directory owned by a system user (0750), a script run with an environment variable.
goldsmith runs them as its provisioners over `docker exec` and commits once (one layer); the Dockerfile uses
COPY/RUN (one layer each, the classic builder that docker-py drives). Neither pushes. Each side runs --runs
times with a fresh cache-busting value, alternating; the medians and their ratios are printed. It asserts
nothing about time: it prints.

    python bench/docker_vs_dockerfile.py [--runs 3]

Uses $DOCKER_HOST when it answers, else starts a dockerd of its own (tests/peers/docker_engine.py) and stops it.
"""

from __future__ import annotations

import argparse
import io
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

SCRIPT = """#!/bin/sh
set -eu
echo "configured greeting=$GREETING run=$RUN"
mkdir -p /opt/app && echo "$GREETING $RUN" > /opt/app/greeting
id appsvc >/dev/null 2>&1 || useradd --system --no-create-home appsvc
"""

DOCKERFILE = """FROM {base}
COPY files/motd /etc/motd
RUN chmod 0644 /etc/motd
COPY scripts/configure.sh /tmp/configure.sh
RUN GREETING="hello world" RUN={run} /bin/sh -e /tmp/configure.sh && rm -f /tmp/configure.sh \\
    && rm -rf /tmp/* /var/tmp/* /var/lib/apt/lists/* && find /var/log -type f -exec truncate -s 0 {{}} +
COPY --chown=appsvc:appsvc files/conf.d/ /etc/app/
RUN chmod 0750 /etc/app
CMD ["cat", "/etc/motd"]
"""


def make_project(root: Path) -> Path:
    (root / "files" / "conf.d").mkdir(parents=True)
    (root / "files" / "conf.d" / "app.conf").write_text("listen = 8080\n")
    (root / "files" / "conf.d" / "db.conf").write_text("pool = 5\n")
    (root / "files" / "motd").write_text("goldsmith bench image\n")
    (root / "scripts").mkdir()
    (root / "scripts" / "configure.sh").write_text(SCRIPT)
    return root


def goldsmith_build(root: Path, rootfs: Path, run: str, log) -> tuple[float, str]:
    from goldsmith_provider.builders.docker import builder

    props = {
        "name": "bench-goldsmith",
        "source": {"type": "rootfs", "path": str(rootfs)},
        "provisioners": [
            {"type": "file", "source": "files/motd", "destination": "/etc/motd", "mode": "0644"},
            {"type": "shell", "scripts": ["scripts/configure.sh"], "env": {"GREETING": "hello world", "RUN": run}},
            {"type": "file", "source": "files/conf.d", "destination": "/etc/app", "mode": "0750",
             "owner": "appsvc", "group": "appsvc"},
        ],
        "config": {"cmd": ["cat", "/etc/motd"]},
        "tags": [run],
        "network_mode": "none",
    }
    spec, problems = builder.prepare(props, root)
    assert not problems, problems
    started = time.monotonic()
    out = builder.build(spec, builder.identify(spec, root), base_dir=root, log=log)
    return time.monotonic() - started, out["image_id"]


def dockerfile_build(client, root: Path, base: str, run: str) -> tuple[float, str]:
    (root / "Dockerfile").write_text(DOCKERFILE.format(base=base, run=run))
    started = time.monotonic()
    image, _logs = client.images.build(path=str(root), tag=f"bench-dockerfile:{run}", nocache=True, rm=True,
                                       forcerm=True, network_mode="none")
    return time.monotonic() - started, image.id


def layers_above(client, image_id: str, base) -> tuple[int, int]:
    """(filesystem layers, bytes) an image adds on top of the base."""
    image = client.images.get(image_id)
    return (len(image.attrs["RootFS"]["Layers"]) - len(base.attrs["RootFS"]["Layers"]),
            image.attrs["Size"] - base.attrs["Size"])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()

    from goldsmith_provider.builders.docker.steps import DockerBuildState, import_rootfs
    from goldsmith_provider.engine.fingerprint import sha256_file
    from goldsmith_provider.engine.log import BuildLog
    from goldsmith_provider.engine.paths import cache_root
    from peers.docker_engine import debian_rootfs_tarball, ensure_engine

    engine = ensure_engine(Path(tempfile.gettempdir()))
    os.environ["DOCKER_HOST"] = engine.host
    work = Path(tempfile.mkdtemp(prefix="gs-bench-"))
    try:
        client = engine.client()
        rootfs = debian_rootfs_tarball()
        base = import_rootfs(DockerBuildState(name="bench", build_id="bench", fingerprint="", client=client,
                                              log=BuildLog("bench", console=io.StringIO()), rootfs=rootfs,
                                              source_digest=sha256_file(rootfs), cache_root=cache_root()))
        root = make_project(work / "project")
        quiet = BuildLog("bench", work / "goldsmith.log", console=io.StringIO())
        gs_times, df_times, gs_ids, df_ids = [], [], [], []
        for i in range(args.runs):
            run = f"r{i}-{os.urandom(3).hex()}"
            t, image = goldsmith_build(root, rootfs, run, quiet)
            gs_times.append(t)
            gs_ids.append(image)
            t, image = dockerfile_build(client, root, base.id, run)
            df_times.append(t)
            df_ids.append(image)
            print(f"run {i + 1}: goldsmith {gs_times[-1]:.2f}s, docker build {df_times[-1]:.2f}s", flush=True)

        gs_image, df_image = client.images.get(gs_ids[-1]), client.images.get(df_ids[-1])
        for image in (gs_image, df_image):  # the two produce the same files
            check = "cat /etc/motd; stat -c '%a %U' /etc/app /etc/app/app.conf; cut -d' ' -f1,2 /opt/app/greeting"
            print(f"  {image.id[:19]}: " + client.containers.run(image.id, ["sh", "-c", check], remove=True,
                                                                 network_mode="none").decode().strip().replace("\n", " | "))
        gs_layers, gs_added = layers_above(client, gs_image.id, base)
        df_layers, df_added = layers_above(client, df_image.id, base)
        gs_time, df_time = statistics.median(gs_times), statistics.median(df_times)
        mib = 2 ** 20
        print()
        print(f"engine: {client.version().get('Version')} ({client.info().get('Driver')}), base {base.attrs['Size'] / mib:.1f} MiB, runs {args.runs}")
        print(f"{'':22}{'goldsmith':>12}{'docker build':>14}{'ratio':>8}")
        print(f"{'build time (median)':22}{gs_time:>11.2f}s{df_time:>13.2f}s{gs_time / df_time:>8.2f}")
        print(f"{'image size':22}{gs_image.attrs['Size'] / mib:>9.2f}MiB{df_image.attrs['Size'] / mib:>11.2f}MiB"
              f"{gs_image.attrs['Size'] / df_image.attrs['Size']:>8.3f}")
        print(f"{'added over the base':22}{gs_added / 1024:>9.1f}KiB{df_added / 1024:>11.1f}KiB"
              f"{(gs_added / df_added if df_added else float('nan')):>8.3f}")
        print(f"{'layers added':22}{gs_layers:>12}{df_layers:>14}")
        for image_id in gs_ids + df_ids:
            client.images.remove(image_id, force=True, noprune=True)
        return 0
    finally:
        import shutil

        shutil.rmtree(work, ignore_errors=True)
        if engine.started_here:
            engine.stop()


if __name__ == "__main__":
    sys.exit(main())
