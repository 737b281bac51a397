"""The QEMU builder: validate (no side effects), list the steps, run them; and the image's
lifecycle after the build (adopt, verify, delete, retain)."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

from ...engine import schema
from ...engine.errors import GoldsmithError
from ...engine.fingerprint import sha256_file
from ...engine.log import BuildLog
from ...engine.paths import cache_root
from ...engine.runner import run_steps
from ...engine.state import new_build_id
from ...provisioners import ProvisionContext
from ..common.identity import Identity, compute_identity
from ..common.provenance import provenance
from ..common.steps import StepCollectManifest, StepGeneralize, StepResolveSecrets, provision_steps
from . import steps as s
from .config import QemuImageSpec

BUILDER = "qemu"
BUILDER_VERSION = 1


def prepare(props: dict[str, Any], base_dir: Path) -> tuple[QemuImageSpec | None, list]:
    """Parse and validate: every problem at once, each with its property path; no side effects."""
    return schema.prepare(QemuImageSpec, props, base_dir)


def identify(spec: QemuImageSpec, base_dir: Path) -> Identity:
    return compute_identity(spec, builder=BUILDER, builder_version=BUILDER_VERSION, base_dir=base_dir)


def output_dir(spec: QemuImageSpec, base_dir: Path) -> Path:
    d = Path(spec.output.directory).expanduser()
    return (d if d.is_absolute() else base_dir / d).resolve()


def build_steps(spec: QemuImageSpec) -> list:
    def provision_context(state: s.QemuBuildState) -> ProvisionContext:
        return ProvisionContext(
            log=state.log, base_dir=state.base_dir, cache_root=state.cache_root,
            reboot=lambda: s.reboot(state),
            reconnect=lambda: state.comm.reconnect(timeout=spec.communicator.reboot_timeout_s, log=state.log,
                                                   alive=state.vm.alive),
        )

    return [
        StepResolveSecrets(),
        s.StepResolveSource(),
        s.StepCreateWorkdir(),
        s.StepCreateOverlay(),
        s.StepCreateSeed(),
        s.StepStartVm(),
        s.StepWaitForSsh(),
        *provision_steps(spec.provisioners, provision_context),
        StepCollectManifest(),
        StepGeneralize(),
        s.StepShutdown(),
        s.StepExportImage(),
        s.StepConvert(),
        s.StepBootTest(),
        *s.post_processor_steps(spec),
        s.StepFinalize(manifest_document),
    ]


def step_names(spec: QemuImageSpec) -> list[str]:
    """The names of the steps a build of ``spec`` runs, in order: the fault-injection points of
    GOLDSMITH_FAIL_STEP and what the fault matrix (tests/fault_matrix.py) fails one by one."""
    return [step.name for step in build_steps(spec)]


def manifest_document(state: s.QemuBuildState) -> dict[str, Any]:
    spec = state.spec
    return {
        "name": spec.name,
        "description": spec.description,
        "labels": spec.labels,
        "fingerprint": state.fingerprint,
        "input_digests": state.outputs.get("input_digests", {}),
        "artifacts": {fmt: {k: v for k, v in a.items() if k != "partial"} for fmt, a in state.artifacts.items()},
        "packages": state.packages,
        "path_digests": state.path_digests,
        "provenance": provenance(
            builder=BUILDER, build_id=state.build_id, fingerprint=state.fingerprint, base_dir=state.base_dir,
            source={"type": spec.source.TYPE, "digest": state.source_digest},
            extra={"accelerator": state.accel, "step_timings_s": dict(state.timings)}),
    }


def select_accelerator(spec: QemuImageSpec, log: BuildLog) -> tuple[str, list[str]]:
    from . import accel

    if spec.machine.accelerator != "auto":
        chosen = spec.machine.accelerator
        log.info(f"accelerator: {chosen} (machine.accelerator)")
    else:
        chosen = accel.detect_accelerator(cache_root(), log=log.info)
    return chosen, accel.qemu_accel_args(chosen)


def build(spec: QemuImageSpec, ident: Identity, *, base_dir: Path, log: BuildLog) -> dict[str, Any]:
    """Build the image; leaves nothing behind if it fails. Returns the outputs."""
    existing = find_existing(spec, ident, base_dir, log)
    if existing is not None:
        return existing
    state = s.QemuBuildState(name=spec.name, build_id=new_build_id(), fingerprint=ident.fingerprint, log=log,
                             spec=spec, base_dir=base_dir, cache_root=cache_root(), output_dir=output_dir(spec, base_dir))
    state.outputs["input_digests"] = ident.digests
    state.accel, state.accel_args = select_accelerator(spec, log)
    started = time.monotonic()
    log.info(f"build {state.build_id}: fingerprint {ident.short}, {len(spec.provisioners)} provisioner(s)")
    run_steps(build_steps(spec), state, keep_on_error=spec.keep_on_error)
    total = time.monotonic() - started
    timings = state.outputs.get("timings", {})
    timings["provision_s"] = round(sum(v for k, v in state.timings.items() if k.startswith("provision[")), 1)
    timings["snapshot_s"] = round(sum(state.timings.get(k, 0) for k in ("generalize", "shutdown", "export-image", "convert", "finalize")), 1)
    timings["total_s"] = round(total, 1)
    log.info(f"build {state.build_id}: done in {total:.1f}s ({timings})")
    manifest = json.loads(Path(state.outputs["manifest_path"]).read_text())
    return outputs_of(manifest, Path(state.outputs["manifest_path"]), timings=timings, adopted=False)


def outputs_of(manifest: dict[str, Any], manifest_path: Path, *, timings: dict[str, Any], adopted: bool) -> dict[str, Any]:
    arts = manifest["artifacts"]
    return {
        "image_id": f"{manifest['name']}-{manifest['fingerprint'][:12]}",
        "fingerprint": manifest["fingerprint"],
        "path": arts["qcow2"]["path"],
        "sha256": arts["qcow2"]["sha256"],
        "artifacts": arts,
        "manifest_path": str(manifest_path),
        "packages": [f"{p['name']}={p['version']}" for p in manifest["packages"]],
        "package_count": len(manifest["packages"]),
        "path_digests": manifest.get("path_digests", {}),
        "source_image": manifest["provenance"]["source"],
        "accelerator": manifest["provenance"].get("accelerator", ""),
        "provenance": {k: v for k, v in manifest["provenance"].items() if k != "step_timings_s"},
        "timings": timings,
        "adopted": adopted,
    }


def manifest_path(spec: QemuImageSpec, ident: Identity, base_dir: Path) -> Path:
    return output_dir(spec, base_dir) / f"{spec.name}-{ident.short}.manifest.json"


def verify_artifacts(manifest: dict[str, Any]) -> str | None:
    """Why the artifacts of a manifest are not intact, or None."""
    for fmt, art in manifest.get("artifacts", {}).items():
        path = Path(art["path"])
        if not path.exists():
            return f"{fmt} artifact {path} is missing"
        if path.stat().st_size != art["size"]:
            return f"{fmt} artifact {path} has size {path.stat().st_size}, expected {art['size']}"
        if sha256_file(path) != art["sha256"]:
            return f"{fmt} artifact {path} does not match its sha256"
    return None


def find_existing(spec: QemuImageSpec, ident: Identity, base_dir: Path, log: BuildLog) -> dict[str, Any] | None:
    """Adoption: an intact image with this fingerprint already exists, so no build is needed."""
    path = manifest_path(spec, ident, base_dir)
    if not path.exists():
        return None
    manifest = json.loads(path.read_text())
    if set(manifest.get("artifacts", {})) != set(spec.output.formats) | {"qcow2"} | s.post_processor_artifacts(spec):
        return None
    problem = verify_artifacts(manifest)
    if problem:
        log.info(f"an image with fingerprint {ident.short} exists but {problem}: building anew")
        return None
    log.info(f"adopting the existing image with fingerprint {ident.short} ({path}): no build needed")
    return outputs_of(manifest, path, timings={}, adopted=True)


def read(outputs: dict[str, Any]) -> dict[str, Any] | None:
    """Refresh: the outputs if the artifacts are intact, None if the image is gone or damaged."""
    path = Path(outputs.get("manifest_path", ""))
    if not path.is_file():
        return None
    manifest = json.loads(path.read_text())
    if verify_artifacts(manifest):
        return None
    fresh = outputs_of(manifest, path, timings=outputs.get("timings", {}), adopted=outputs.get("adopted", False))
    return {**outputs, **fresh}


def update_metadata(outputs: dict[str, Any], spec: QemuImageSpec) -> None:
    """Labels and description change in place: only the manifest is rewritten."""
    from ..common.provenance import write_json_atomic

    path = Path(outputs["manifest_path"])
    manifest = json.loads(path.read_text())
    manifest["labels"] = spec.labels
    manifest["description"] = spec.description
    write_json_atomic(path, manifest)


def delete(outputs: dict[str, Any], *, keep_previous: int, log: BuildLog) -> None:
    """Remove the image's artifacts and manifest.

    With ``keep_previous`` > 0 and a newer image of the same name beside it (a replacement, since
    Pulumi creates the new image before deleting the old one), the image is retained instead and
    only images beyond the newest ``keep_previous`` previous ones are removed.
    """
    path = Path(outputs.get("manifest_path", ""))
    if not path.exists():
        log.info(f"delete: {path} is already gone")
        return
    manifest = json.loads(path.read_text())
    if keep_previous > 0:
        siblings = sorted(_siblings(path, manifest["name"]), key=lambda m: m[1]["provenance"]["built_at"], reverse=True)
        mine = manifest["provenance"]["built_at"]
        if any(m[1]["provenance"]["built_at"] > mine for m in siblings):
            previous = [m for m in siblings if m[1]["provenance"]["built_at"] <= mine]
            for old_path, old in previous[keep_previous:]:
                _remove(old_path, old, log)
            if any(p == path for p, _ in previous[:keep_previous]):
                log.info(f"retention: keeping {path.name} (keep_previous = {keep_previous})")
                return
            return
    _remove(path, manifest, log)


def _siblings(path: Path, name: str):
    for candidate in path.parent.glob(f"{name}-*.manifest.json"):
        try:
            doc = json.loads(candidate.read_text())
        except (OSError, ValueError):
            continue
        if doc.get("name") == name:
            yield candidate, doc


def _remove(path: Path, manifest: dict[str, Any], log: BuildLog) -> None:
    for art in manifest.get("artifacts", {}).values():
        Path(art["path"]).unlink(missing_ok=True)
    path.unlink(missing_ok=True)
    log.info(f"delete: removed {manifest['name']}-{manifest['fingerprint'][:12]} ({', '.join(manifest.get('artifacts', {}))})")


__all__ = ["prepare", "identify", "build", "read", "delete", "update_metadata", "GoldsmithError", "os"]
