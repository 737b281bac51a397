"""The QEMU builder's steps: one side effect each, each recording what it made the moment it
makes it, each cleanup releasing exactly that."""

from __future__ import annotations

import json
import os
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ...communicators.ssh import SshCommunicator, SshTarget
from ...engine.errors import GoldsmithError
from ...engine.fingerprint import sha256_file
from ...engine.proc import run
from ...engine.runner import BaseStep
from ...provisioners.base import reboot_and_reconnect
from ...engine.state import BuildState
from ..common.keys import KeyPair, generate_ed25519
from . import sources
from .config import QemuImageSpec
from .seed import write_seed
from .vm import QemuVm, VmConfig

WORK_MARKER = "goldsmith-build.json"


@dataclass
class QemuBuildState(BuildState):
    spec: QemuImageSpec | None = None
    base_dir: Path = Path(".")
    cache_root: Path = Path(".")
    output_dir: Path = Path(".")
    accel: str = "tcg"
    accel_args: list[str] = field(default_factory=list)
    source_path: Path | None = None
    source_format: str = "qcow2"
    source_digest: str = ""
    overlay: Path | None = None
    client_key: KeyPair | None = None
    host_key: KeyPair | None = None
    seed: Path | None = None
    vm: QemuVm | None = None
    comm: SshCommunicator | None = None
    packages: list[dict[str, str]] = field(default_factory=list)
    path_digests: dict[str, str] = field(default_factory=dict)  # digest_paths -> sha256, before generalization
    artifacts: dict[str, dict[str, Any]] = field(default_factory=dict)
    partials: list[Path] = field(default_factory=list)

    def artifact_path(self, fmt: str) -> Path:
        return self.output_dir / f"{self.spec.name}-{self.fingerprint[:12]}.{fmt}"


class StepResolveSource(BaseStep[QemuBuildState]):
    """Find or make the source disk: a local image, a cached download, or a cached debootstrap base."""

    name = "resolve-source"

    def run(self, state: QemuBuildState) -> None:
        resolved = sources.resolve(state.spec.source, base_dir=state.base_dir, cache_root=state.cache_root, log=state.log)
        state.source_path, state.source_format, state.source_digest = resolved.path, resolved.format, resolved.digest
        state.log.info(f"source: {resolved.path} ({resolved.format}, {resolved.digest[:19]}…)")


class StepCreateWorkdir(BaseStep[QemuBuildState]):
    """A private work dir marked with the build id and our pid, so `goldsmith gc` can reap it."""

    name = "create-workdir"

    def run(self, state: QemuBuildState) -> None:
        work = state.cache_root / "work" / state.build_id
        work.mkdir(parents=True, mode=0o700)
        state.workdir = work
        state.track("workdir", f"work dir {work}")
        (work / WORK_MARKER).write_text(json.dumps({
            "build_id": state.build_id, "name": state.name, "pid": os.getpid(), "started": time.time(),
            "builder": "qemu"}))

    def cleanup(self, state: QemuBuildState) -> None:
        if state.workdir is not None and state.workdir.exists():
            shutil.rmtree(state.workdir)
        state.release("workdir")


class StepCreateOverlay(BaseStep[QemuBuildState]):
    """A qcow2 overlay on the source: the source stays pristine, the build writes only here."""

    name = "create-overlay"

    def run(self, state: QemuBuildState) -> None:
        overlay = state.workdir / "disk.qcow2"
        args = ["qemu-img", "create", "-q", "-f", "qcow2", "-F", state.source_format, "-b", str(state.source_path), str(overlay)]
        if state.spec.machine.disk_size_gb:
            args.append(f"{state.spec.machine.disk_size_gb}G")
        run(args, log=state.log)
        state.overlay = overlay
        state.track("overlay", f"overlay {overlay}")

    def cleanup(self, state: QemuBuildState) -> None:
        if state.overlay is not None and state.overlay.exists():
            state.overlay.unlink()
        state.release("overlay")


class StepCreateSeed(BaseStep[QemuBuildState]):
    """Ephemeral client and host keys, handed to the guest on a cidata seed disk."""

    name = "create-seed"

    def run(self, state: QemuBuildState) -> None:
        state.client_key = generate_ed25519(f"goldsmith-build-{state.build_id}")
        state.host_key = generate_ed25519(f"goldsmith-host-{state.build_id}")
        state.log.masker.add(state.client_key.private_openssh)
        state.log.masker.add(state.host_key.private_openssh)
        state.seed = write_seed(state.workdir, user=state.spec.communicator.user, client=state.client_key,
                                host=state.host_key, instance_id=state.build_id, hostname="goldsmith", log=state.log)
        state.track("seed", f"seed disk {state.seed}")

    def cleanup(self, state: QemuBuildState) -> None:
        if state.seed is not None:
            shutil.rmtree(state.seed.parent / "seed", ignore_errors=True)
            state.seed.unlink(missing_ok=True)
        state.release("seed")


def start_vm(state: QemuBuildState, disk: Path, disk_format: str, seed: Path | None) -> QemuVm:
    m = state.spec.machine
    vm = QemuVm(VmConfig(disk=disk, disk_format=disk_format, seed=seed, accel_args=state.accel_args,
                         cpus=m.cpus, memory_mb=m.memory_mb, tag=state.build_id, workdir=state.workdir))
    vm.start(state.log)
    return vm


class StepStartVm(BaseStep[QemuBuildState]):
    name = "start-vm"

    def run(self, state: QemuBuildState) -> None:
        state.log.info(f"qemu: booting the builder ({state.accel})")
        state.vm = start_vm(state, state.overlay, "qcow2", state.seed)
        state.track("vm", f"qemu pid {state.vm.pid}")

    def cleanup(self, state: QemuBuildState) -> None:
        if state.vm is not None:
            state.vm.stop(state.log, grace=20)
        state.release("vm")


def connect_ssh(state: QemuBuildState, vm: QemuVm, timeout: float) -> SshCommunicator:
    comm = SshCommunicator(SshTarget(host="127.0.0.1", port=vm.ssh_port, user=state.spec.communicator.user,
                                     private_key=state.client_key.private_openssh, host_key=state.host_key.public_openssh))
    try:
        waited = comm.wait_ready(timeout=timeout, log=state.log, alive=vm.alive)
    except GoldsmithError as exc:
        raise GoldsmithError(f"{exc}\n--- serial console (last lines) ---\n{vm.serial_tail()}") from exc
    state.outputs.setdefault("timings", {})["boot_to_ssh_s"] = round(waited, 1)
    return comm


class StepWaitForSsh(BaseStep[QemuBuildState]):
    name = "wait-for-ssh"

    def run(self, state: QemuBuildState) -> None:
        state.comm = connect_ssh(state, state.vm, state.spec.communicator.timeout_s)

    def cleanup(self, state: QemuBuildState) -> None:
        if state.comm is not None:
            state.comm.close()


def reboot(state: QemuBuildState) -> None:
    """Reboot the builder and reconnect (used by provisioners that must reboot)."""
    reboot_and_reconnect(state.comm, state.log, timeout=state.spec.communicator.reboot_timeout_s,
                         alive=state.vm.alive)


class StepShutdown(BaseStep[QemuBuildState]):
    """A clean power-off: the guest flushes its disks and QEMU exits."""

    name = "shutdown"

    def run(self, state: QemuBuildState) -> None:
        started = time.monotonic()
        try:
            state.comm.run("(sleep 1; systemctl poweroff) >/dev/null 2>&1 &", log=state.log, sudo=True, quiet=True)
        finally:
            state.comm.close()
        if not state.vm.wait_exit(180, cancellable=True):
            raise GoldsmithError("the builder did not power off within 180 s")
        state.release("vm")
        state.log.info(f"qemu: powered off cleanly in {time.monotonic() - started:.1f}s")


class StepExportImage(BaseStep[QemuBuildState]):
    """Flatten the overlay into the qcow2 artifact (written under a temporary name, renamed at the end)."""

    name = "export-image"

    def run(self, state: QemuBuildState) -> None:
        state.output_dir.mkdir(parents=True, exist_ok=True)
        final = state.artifact_path("qcow2")
        partial = final.with_name(f".{final.name}.partial")
        state.partials.append(partial)
        state.track("partial:qcow2", f"partial artifact {partial}")
        args = ["qemu-img", "convert", "-O", "qcow2"]
        if state.spec.output.compress:
            args.append("-c")
        run([*args, str(state.overlay), str(partial)], log=state.log, timeout=3600)
        state.artifacts["qcow2"] = {"path": str(final), "partial": str(partial), "format": "qcow2"}

    def cleanup(self, state: QemuBuildState) -> None:
        remove_partials(state)


CONVERT_ARGS = {
    "raw": ["-O", "raw"],
    "vmdk": ["-O", "vmdk", "-o", "subformat=streamOptimized"],
    "vhdx": ["-O", "vhdx", "-o", "subformat=dynamic"],
}


class StepConvert(BaseStep[QemuBuildState]):
    """The other formats, converted from the qcow2 with qemu-img."""

    name = "convert"

    def run(self, state: QemuBuildState) -> None:
        source = state.artifacts["qcow2"]["partial"]
        for fmt in state.spec.output.formats:
            if fmt == "qcow2":
                continue
            final = state.artifact_path(fmt)
            partial = final.with_name(f".{final.name}.partial")
            state.partials.append(partial)
            state.track(f"partial:{fmt}", f"partial artifact {partial}")
            run(["qemu-img", "convert", "-f", "qcow2", *CONVERT_ARGS[fmt], source, str(partial)], log=state.log, timeout=3600)
            state.artifacts[fmt] = {"path": str(final), "partial": str(partial), "format": fmt}
            state.log.info(f"convert: {fmt} written")

    def cleanup(self, state: QemuBuildState) -> None:
        remove_partials(state)


class StepBootTest(BaseStep[QemuBuildState]):
    """The gate: boot the finished image (through a throw-away overlay) and run the checks."""

    name = "boot-test"

    def run(self, state: QemuBuildState) -> None:
        from .boot import booted

        test = state.spec.boot_test
        if not test.enabled:
            state.log.info("boot-test: skipped (boot_test.enabled = false)")
            return
        started = time.monotonic()
        m = state.spec.machine
        track = lambda vm: state.track("boottest-vm", f"qemu pid {vm.pid}")  # noqa: E731
        with booted(Path(state.artifacts["qcow2"]["partial"]), log=state.log, accel_args=state.accel_args,
                    user=state.spec.communicator.user, cpus=m.cpus, memory_mb=m.memory_mb, timeout=test.timeout_s,
                    workdir=state.workdir, tag=f"{state.build_id}-boottest", on_start=track) as (comm, _vm):
            for command in ["test -s /etc/machine-id", *test.commands]:
                comm.run(comm.privileged(command), log=state.log, timeout=test.timeout_s)
        state.release("boottest-vm")
        state.outputs.setdefault("timings", {})["boot_test_s"] = round(time.monotonic() - started, 1)
        state.log.info(f"boot-test: passed ({len(test.commands) + 1} checks)")


class StepPackageVagrantBox(BaseStep[QemuBuildState]):
    """The vagrant post-processor: the accepted qcow2 packaged as a libvirt box (artifact
    ``vagrant``), and optionally its Vagrant catalog (artifact ``vagrant_catalog``)."""

    name = "vagrant-box"

    def __init__(self, box) -> None:
        self.box = box

    def run(self, state: QemuBuildState) -> None:
        from ...postprocessors.vagrant import catalog_document, package_box

        final = state.artifact_path("box")
        partial = final.with_name(f".{final.name}.partial")
        state.partials.append(partial)
        state.track("partial:vagrant", f"partial artifact {partial}")
        package_box(self.box, Path(state.artifacts["qcow2"]["partial"]), partial, base_dir=state.base_dir, log=state.log)
        state.artifacts["vagrant"] = {"path": str(final), "partial": str(partial), "format": "box", "provider": self.box.provider}
        if self.box.catalog is None:
            return
        catalog_final = state.artifact_path("vagrant.json")
        catalog_partial = catalog_final.with_name(f".{catalog_final.name}.partial")
        state.partials.append(catalog_partial)
        state.track("partial:vagrant_catalog", f"partial artifact {catalog_partial}")
        doc = catalog_document(self.box.catalog, provider=self.box.provider, url=self.box.catalog.url or final.as_uri(),
                               sha256_hex=sha256_file(partial).split(":", 1)[1])
        catalog_partial.write_text(json.dumps(doc, indent=2) + "\n")
        state.artifacts["vagrant_catalog"] = {"path": str(catalog_final), "partial": str(catalog_partial), "format": "json"}
        state.log.info(f"vagrant: catalog for {self.box.catalog.name} {self.box.catalog.version} written")

    def cleanup(self, state: QemuBuildState) -> None:
        remove_partials(state)


def post_processor_artifacts(spec: QemuImageSpec) -> set[str]:
    """The artifact keys the post-processors of ``spec`` add to the qcow2 and its conversions."""
    keys: set[str] = set()
    for pp in spec.post_processors:
        keys.add("vagrant")
        if pp.catalog is not None:
            keys.add("vagrant_catalog")
    return keys


def post_processor_steps(spec: QemuImageSpec) -> list:
    return [StepPackageVagrantBox(pp) for pp in spec.post_processors]


class StepFinalize(BaseStep[QemuBuildState]):
    """Checksum every artifact, write the manifest, move everything into place: the last side
    effect of a build. The manifest is renamed last, so its presence means a complete image."""

    name = "finalize"

    def __init__(self, manifest_of) -> None:
        self.manifest_of = manifest_of

    def run(self, state: QemuBuildState) -> None:
        for art in state.artifacts.values():
            partial = Path(art["partial"])
            art["sha256"] = sha256_file(partial)
            art["size"] = partial.stat().st_size
        manifest = state.artifact_path("manifest.json")
        partial_manifest = manifest.with_name(f".{manifest.name}.partial")
        state.partials.append(partial_manifest)
        doc = self.manifest_of(state)
        partial_manifest.write_text(json.dumps(doc, indent=2, sort_keys=True) + "\n")
        for fmt, art in state.artifacts.items():
            os.replace(art.pop("partial"), art["path"])
            state.release(f"partial:{fmt}")
            state.track(f"artifact:{fmt}", f"artifact {art['path']}")
        os.replace(partial_manifest, manifest)
        state.track("manifest", f"manifest {manifest}")
        state.partials.clear()
        state.outputs["manifest_path"] = str(manifest)

    def cleanup(self, state: QemuBuildState) -> None:
        # The artifacts stay tracked until the build has succeeded: a failure after (or half way through) the
        # renames leaves nothing of this build, the manifest first (its presence means a complete image).
        placed = [k for k in state.resources if k == "manifest" or k.startswith("artifact:")]
        if state.failed:
            manifest = state.outputs.pop("manifest_path", None)
            if "manifest" in state.resources and manifest:
                Path(manifest).unlink(missing_ok=True)
            for fmt, art in state.artifacts.items():
                if f"artifact:{fmt}" in state.resources:
                    Path(art["path"]).unlink(missing_ok=True)
        for key in placed:
            state.release(key)
        remove_partials(state)


def remove_partials(state: QemuBuildState) -> None:
    for partial in state.partials:
        partial.unlink(missing_ok=True)
    for key in [k for k in state.resources if k.startswith("partial:")]:
        state.release(key)
