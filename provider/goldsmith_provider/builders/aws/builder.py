"""The AWS AMI builder (the amazon-ebs flow): validate (no side effects), resolve the source AMI
(a read-only lookup, at check time), list the steps, run them; and the AMI's lifecycle after the
build (adopt, refresh, update in place, delete with retention).

boto3 is imported only inside the calls that talk to AWS, never at module import.
"""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ...engine import fingerprint as fp
from ...engine import schema
from ...engine.errors import GoldsmithError, Problem, ValidationError
from ...engine.log import BuildLog
from ...engine.paths import cache_root
from ...engine.runner import run_steps
from ...engine.state import new_build_id
from ...provisioners import ProvisionContext
from ..common.identity import Identity, compute_identity
from ..common.provenance import provenance
from ..common.steps import StepCollectManifest, StepGeneralize, StepResolveSecrets, provision_steps
from . import images as img
from . import steps as s
from .client import Aws, AwsError, call, connection_from_outputs, owner_tags, tags_of
from .config import AmiImageSpec, ShareSettings

BUILDER = "aws"
BUILDER_VERSION = 1
# Spec fields that change in place (no rebuild): AWS tags, description, copies, sharing, deprecation.
METADATA_FIELDS = ("tags", "description", "distribution", "retention", "keep_on_error")


@dataclass(frozen=True)
class AwsIdentity(Identity):
    resolved: dict[str, Any] = field(default_factory=dict)  # region and source AMI, found at check time


def prepare(props: dict[str, Any], base_dir: Path) -> tuple[AmiImageSpec | None, list[Problem]]:
    """Parse and validate: every problem at once, each with its property path; no side effects."""
    return schema.prepare(AmiImageSpec, props, base_dir)


def resolve(spec: AmiImageSpec, base_dir: Path) -> tuple[dict[str, Any] | None, list[Problem]]:
    """The lookups check makes before the fingerprint: the build region and the source AMI.

    Read-only (DescribeImages, GetParameter). Problems carry the property path to fix.
    """
    from .source import SourceNotFound, resolve_source

    aws = Aws(spec.aws)
    try:
        region = aws.default_region()
    except GoldsmithError as exc:
        return None, [Problem("aws", str(exc))]
    if not region:
        return None, [Problem("aws.region", "no region: set aws.region (or the `aws:region` stack config), "
                              "AWS_REGION, or a profile with a region")]
    from .config import partition_of, region_problem

    if problem := region_problem(region):  # from the environment or a profile: checked like aws.region
        return None, [Problem("aws.region", f"the region from the environment/profile {problem}")]
    problems = [Problem(f"distribution.regions[{i}]", f"is the build region {region}: the AMI is built there")
                for i, r in enumerate(spec.distribution.regions) if r == region]
    problems += [Problem(f"distribution.regions[{i}]", f"{r} is in partition {partition_of(r)}, the build region {region} "
                         f"in {partition_of(region)}: AMIs cannot be copied across partitions")
                 for i, r in enumerate(spec.distribution.regions)
                 if partition_of(r) and partition_of(region) and partition_of(r) != partition_of(region)]
    if problems:
        return None, problems
    aws = Aws(spec.aws, region, log=BuildLog(spec.name))  # a lookup that needed retries says so on the console
    try:
        source = resolve_source(spec.source, ec2=aws.ec2(), ssm_client=lambda: aws.client("ssm"), region=region)
    except SourceNotFound as exc:
        return None, [Problem(exc.path, str(exc))]
    except GoldsmithError as exc:
        return None, [Problem("source", f"cannot look up the source AMI in {region}: {exc}")]
    return {"region": region, "source_ami_id": source.id, "source": source.as_dict()}, []


def identify(spec: AmiImageSpec, base_dir: Path, resolved: dict[str, Any] | None = None) -> AwsIdentity:
    """The spec's identity and the resolved source AMI: a newer base AMI is a new fingerprint."""
    if resolved is None:
        resolved, problems = resolve(spec, base_dir)
        if problems:
            raise ValidationError(problems)
    base = compute_identity(spec, builder=BUILDER, builder_version=BUILDER_VERSION, base_dir=base_dir)
    source_key = {"region": resolved["region"], "source_ami_id": resolved["source_ami_id"]}
    fingerprint = fp.fingerprint({"spec": base.fingerprint, "source": source_key})
    digests = dict(base.digests)
    digests["source"] = "sha256:" + fp.fingerprint(source_key)[:16]
    return AwsIdentity(fingerprint, dict(sorted(digests.items())), resolved)


def ami_name(spec: AmiImageSpec, fingerprint: str) -> str:
    return f"{spec.name}-{fingerprint[:12]}"


def build_steps(spec: AmiImageSpec) -> list:
    def provision_context(state: s.AwsBuildState) -> ProvisionContext:
        return ProvisionContext(
            log=state.log, base_dir=state.base_dir, cache_root=state.cache_root,
            reboot=lambda: s.reboot(state),
            reconnect=lambda: state.comm.reconnect(timeout=spec.communicator.reboot_timeout_s, log=state.log,
                                                   alive=s.instance_alive(state)),
        )

    return [
        StepResolveSecrets(),
        s.StepCheckSource(),
        s.StepCheckAmiName(),
        s.StepCreateKeyPair(),
        s.StepCreateSecurityGroup(),
        s.StepRunInstance(),
        s.StepWaitForSsh(),
        *provision_steps(spec.provisioners, provision_context),
        StepCollectManifest(),
        StepGeneralize(),
        s.StepStopInstance(),
        s.StepCreateImage(),
        *distribution_steps(),
    ]


def step_names(spec: AmiImageSpec) -> list[str]:
    """The names of the steps a build of ``spec`` runs, in order: the fault-injection points of
    GOLDSMITH_FAIL_STEP and what the fault matrix (tests/fault_matrix.py) fails one by one."""
    return [step.name for step in build_steps(spec)]


def distribution_steps() -> list:
    """What an adopted AMI goes through too: copies it lacks, sharing, deprecation, final tags."""
    return [s.StepCopyImage(), s.StepShareImage(), s.StepDeprecateImage(), s.StepTagImage()]


def new_state(spec: AmiImageSpec, ident: AwsIdentity, base_dir: Path, log: BuildLog) -> s.AwsBuildState:
    region = ident.resolved["region"]
    build_id = new_build_id()
    state = s.AwsBuildState(name=spec.name, build_id=build_id, fingerprint=ident.fingerprint, log=log, spec=spec,
                            base_dir=base_dir, cache_root=cache_root(), aws=Aws(spec.aws, region, log=log), region=region,
                            resolved=ident.resolved, source=dict(ident.resolved["source"]),
                            ami_name=ami_name(spec, ident.fingerprint))
    state.owner_tags = owner_tags(build_id, stack=spec.stack, project=spec.project, resource=spec.resource, name=spec.name)
    state.outputs["input_digests"] = ident.digests
    return state


def build(spec: AmiImageSpec, ident: Identity, *, base_dir: Path, log: BuildLog) -> dict[str, Any]:
    """Build the AMI (or adopt one with this fingerprint); leaves nothing behind if it fails."""
    if not isinstance(ident, AwsIdentity):
        ident = identify(spec, base_dir)
    state = new_state(spec, ident, base_dir, log)
    started = time.monotonic()
    if adopt_existing(state):
        steps = distribution_steps()
    else:
        log.info(f"build {state.build_id}: fingerprint {ident.short}, {len(spec.provisioners)} provisioner(s), "
                 f"{state.region}{' + ' + ', '.join(spec.distribution.regions) if spec.distribution.regions else ''}")
        steps = build_steps(spec)
    try:
        run_steps(steps, state, keep_on_error=spec.keep_on_error)
    finally:
        log.info(state.aws.retries.summary_line())
    total = time.monotonic() - started
    timings = state.outputs.get("timings", {})
    timings["provision_s"] = round(sum(v for k, v in state.timings.items() if k.startswith("provision[")), 1)
    timings["image_s"] = round(sum(state.timings.get(k, 0) for k in ("stop-instance", "create-image")), 1)
    timings["distribution_s"] = round(sum(state.timings.get(k, 0) for k in ("copy-image", "share-image", "deprecate-image", "tag-image")), 1)
    timings["total_s"] = round(total, 1)
    log.info(f"build {state.build_id}: {'adopted' if state.adopted else 'done'} in {total:.1f}s: "
             + ", ".join(f"{r} {a}" for r, a in sorted(state.amis.items())))
    return outputs_of(state, timings)


def adopt_existing(state: s.AwsBuildState) -> bool:
    """Adoption: a complete AMI with this fingerprint owned by this account is used instead of a build."""
    wanted = {"goldsmith:fingerprint": state.fingerprint, "goldsmith:state": img.COMPLETE}
    found = img.find_images(state.ec2, wanted, states=("available",), name=state.ami_name)
    if not found:
        return False
    primary = found[0]
    owner = tags_of(primary)
    if (owner.get("goldsmith:stack"), owner.get("goldsmith:resource")) != (state.owner_tags["goldsmith:stack"], state.spec.resource):
        state.log.info(f"adoption: {primary['ImageId']} was built for stack {owner.get('goldsmith:stack') or '?'} resource "
                       f"{owner.get('goldsmith:resource') or '?'}; deleting this resource will deregister it")
    state.adopted = True
    state.amis[state.region] = primary["ImageId"]
    state.created[state.region] = primary.get("CreationDate", "")
    state.snapshots[state.region] = img.snapshot_ids(primary)
    tags = tags_of(primary)
    if tags.get("goldsmith:package-count", "").isdigit():
        state.outputs["package_count"] = int(tags["goldsmith:package-count"])
    for region in state.spec.distribution.regions:
        copies = img.find_images(state.aws.ec2(region), wanted, states=("available",), name=state.ami_name)
        if copies:
            state.amis[region] = copies[0]["ImageId"]
            state.snapshots[region] = img.snapshot_ids(copies[0])
            state.created[region] = copies[0].get("CreationDate", "")
    missing = [r for r in state.spec.distribution.regions if r not in state.amis]
    state.log.info(f"adopting the existing AMI {primary['ImageId']} ({state.region}, {primary.get('Name', '')}) with "
                   f"fingerprint {state.fingerprint[:12]}: no build needed"
                   + (f"; copying it to {', '.join(missing)}" if missing else ""))
    return True


def outputs_of(state: s.AwsBuildState, timings: dict[str, Any]) -> dict[str, Any]:
    spec = state.spec
    primary = state.amis[state.region]
    packages = state.packages
    return {
        "image_id": primary,
        "ami_id": primary,
        "ami_ids": dict(sorted(state.amis.items())),
        "ami_name": state.ami_name,
        "region": state.region,
        "snapshot_ids": {r: list(v) for r, v in sorted(state.snapshots.items())},
        "source_ami_id": state.source["id"],
        "source_ami": {k: v for k, v in state.source.items() if k != "root_volume_size"},
        "resolved": state.resolved,
        "fingerprint": state.fingerprint,
        "packages": [f"{p['name']}={p['version']}" for p in packages],
        "package_count": len(packages) if packages else state.outputs.get("package_count", 0),
        "path_digests": dict(state.path_digests),
        "provenance": provenance(builder=BUILDER, build_id=state.build_id, fingerprint=state.fingerprint,
                                 base_dir=state.base_dir, source={"type": spec.source.TYPE, "ami_id": state.source["id"],
                                                                  "name": state.source.get("name", ""), "region": state.region},
                                 extra={"instance_type": spec.instance.type, "regions": sorted(state.amis)}),
        "timings": timings,
        "adopted": state.adopted,
        "aws": state.aws.settings_output(),
        "api_retries": state.aws.retries.summary(),  # botocore's retries of this build's AWS calls
    }


# --- lifecycle --------------------------------------------------------------------------------------------


def _aws(outputs: dict[str, Any]) -> Aws:
    return Aws(connection_from_outputs(outputs), outputs.get("region") or "")


def read(outputs: dict[str, Any]) -> dict[str, Any] | None:
    """Refresh: the outputs if every region's AMI still exists, None if one was deregistered."""
    aws = _aws(outputs)
    snapshots = {}
    for region, ami in sorted((outputs.get("ami_ids") or {}).items()):
        image = img.describe_image(aws.ec2(region), ami)
        if image is None or image.get("State") not in ("available", "pending"):
            print(f"[{outputs.get('name')}] refresh: AMI {ami} ({region}) was deregistered", file=sys.stderr, flush=True)
            return None
        snapshots[region] = img.snapshot_ids(image)
    if not snapshots:
        return None
    return {**outputs, "snapshot_ids": snapshots}


def update_metadata(outputs: dict[str, Any], spec: AmiImageSpec) -> dict[str, Any]:
    """In place: description, tags, copy regions (new ones copied, dropped ones removed), launch
    permissions and deprecation. Returns the outputs that changed (AMI and snapshot ids)."""
    log = BuildLog(spec.name)
    aws = Aws(spec.aws, outputs["region"], log=log)
    primary_region = outputs["region"]
    amis = dict(outputs.get("ami_ids") or {})
    snapshots = {r: list(v) for r, v in (outputs.get("snapshot_ids") or {}).items()}
    old_dist = outputs.get("distribution") or {}
    old_share = old_dist.get("share") or {}
    dist = spec.distribution

    # Regions: copy to the new ones first (a failure removes what it copied), then drop the old ones.
    added = [r for r in dist.regions if r not in amis]
    if added:
        made: dict[str, str] = {}
        primary = img.describe_image(aws.ec2(primary_region), amis[primary_region])
        tags = dict(tags_of(primary or {}))
        tags.update(spec.tags)
        tags["goldsmith:regions"] = ",".join([primary_region, *dist.regions])
        try:
            copies = img.copy_to_regions(
                aws, source_ami=amis[primary_region], source_region=primary_region, regions=added,
                name=outputs["ami_name"], description=spec.description or (primary or {}).get("Description", ""),
                tags={**tags, "goldsmith:state": img.BUILDING}, encrypted=dist.encrypt_copies, kms_key_ids=dist.kms_key_ids,
                client_token=f"goldsmith-update-{outputs['fingerprint'][:12]}-{int(time.time())}",
                timeout=spec.wait.image_timeout_s, interval=spec.wait.poll_interval_s, log=log,
                on_created=lambda region, ami: made.__setitem__(region, ami))
            for region, image in copies.items():
                snapshots[region] = img.snapshot_ids(image)
                img.tag(aws.ec2(region), [image["ImageId"], *snapshots[region]], {**tags, "goldsmith:state": img.COMPLETE})
        except BaseException:
            for region, ami in made.items():
                try:
                    img.remove_image(aws.ec2(region), ami, log)
                except GoldsmithError as exc:
                    log.info(f"update: could not remove the copy {ami} ({region}): {exc}")
            raise
        amis.update(made)
    for region in [r for r in list(amis) if r != primary_region and r not in dist.regions]:
        img.remove_image(aws.ec2(region), amis.pop(region), log, known_snapshots=snapshots.pop(region, []))

    # Tags (on the AMIs and their snapshots), description.
    old_tags = outputs.get("tags") or {}
    removed_keys = [k for k in old_tags if k not in spec.tags]
    desc_changed = (outputs.get("description") or "") != spec.description
    for region, ami in sorted(amis.items()):
        ec2 = aws.ec2(region)
        ids = [ami, *snapshots.get(region, [])]
        img.untag(ec2, ids, removed_keys)
        img.tag(ec2, ids, {**spec.tags, "goldsmith:regions": ",".join([primary_region, *dist.regions])})
        if desc_changed:
            call(ec2, "modify_image_attribute", ImageId=ami,
                 Description={"Value": spec.description or f"goldsmith {spec.name} {outputs['fingerprint'][:12]}"})

    # Launch permissions: add the new, remove the dropped (new regions get the full set).
    old_perms = ShareSettings(accounts=list(old_share.get("accounts") or []),
                              organizations=list(old_share.get("organizations") or []),
                              organizational_units=list(old_share.get("organizational_units") or []),
                              public=bool(old_share.get("public"))).permissions()
    new_perms = dist.share.permissions()
    for region, ami in sorted(amis.items()):
        if region in added:
            img.set_launch_permissions(aws.ec2(region), ami, new_perms, [])
        else:
            img.set_launch_permissions(aws.ec2(region), ami, [p for p in new_perms if p not in old_perms],
                                       [p for p in old_perms if p not in new_perms])

    # Deprecation: every AMI when the setting changed, the new copies when there is one.
    new_when = (dist.deprecate_at, dist.deprecate_after_days)
    old_when = (old_dist.get("deprecate_at") or "", int(old_dist.get("deprecate_after_days") or 0))
    changed = new_when != old_when
    for region, ami in sorted(amis.items()):
        if region in added and not any(new_when) or not changed and region not in added:
            continue
        image = img.describe_image(aws.ec2(region), ami) or {}
        img.set_deprecation(aws.ec2(region), ami, img.deprecation_time(*new_when, image.get("CreationDate")))
    if added or len(amis) != len(outputs.get("ami_ids") or {}):
        log.info(f"update: AMIs now in {', '.join(sorted(amis))}")
    return {"ami_ids": dict(sorted(amis.items())), "snapshot_ids": dict(sorted(snapshots.items()))}


def delete(outputs: dict[str, Any], *, keep_previous: int, log: BuildLog) -> None:
    """Deregister the AMI and delete its snapshots in every region.

    With ``keep_previous`` > 0 and a newer complete AMI of the same resource (a replacement: Pulumi
    creates the new image before deleting the old one), this AMI is kept and only the ones beyond the
    newest ``keep_previous`` previous ones are removed.
    """
    aws = _aws(outputs)
    region = outputs.get("region") or aws.region
    amis = dict(outputs.get("ami_ids") or {})
    mine_id = amis.get(region)
    if not mine_id:
        log.info("delete: no AMI recorded")
        return
    mine = img.describe_image(aws.ec2(region), mine_id)
    if keep_previous > 0 and mine is not None:
        tags = tags_of(mine)
        family = {k: tags.get(k, "") for k in ("goldsmith:name", "goldsmith:stack", "goldsmith:project", "goldsmith:resource")}
        siblings = [i for i in img.find_images(aws.ec2(region), {**family, "goldsmith:state": img.COMPLETE})]
        created = mine.get("CreationDate") or ""
        if any((i.get("CreationDate") or "") > created for i in siblings):
            previous = [i for i in siblings if (i.get("CreationDate") or "") <= created]
            for old in previous[keep_previous:]:
                remove_everywhere(aws, old, log)
            if any(i["ImageId"] == mine_id for i in previous[:keep_previous]):
                log.info(f"retention: keeping {mine_id} {mine.get('Name', '')} (keep_previous = {keep_previous})")
            return
    snapshots = outputs.get("snapshot_ids") or {}
    for r, ami in sorted(amis.items()):
        img.remove_image(aws.ec2(r), ami, log, known_snapshots=snapshots.get(r, []))


def remove_everywhere(aws: Aws, image: dict[str, Any], log: BuildLog) -> None:
    """Remove an AMI and its copies: every region in its goldsmith:regions tag, by fingerprint."""
    tags = tags_of(image)
    fingerprint = tags.get("goldsmith:fingerprint")
    regions = [r for r in (tags.get("goldsmith:regions") or "").split(",") if r] or [aws.region]
    for region in regions:
        ec2 = aws.ec2(region)
        found = img.find_images(ec2, {"goldsmith:fingerprint": fingerprint}, states=()) if fingerprint else []
        for other in found:
            if tags_of(other).get("goldsmith:resource") == tags.get("goldsmith:resource"):
                img.remove_image(ec2, other["ImageId"], log)
    log.info(f"retention: removed {image.get('Name', image['ImageId'])} from {', '.join(regions)}")


__all__ = ["prepare", "resolve", "identify", "build", "read", "update_metadata", "delete", "AwsError"]
