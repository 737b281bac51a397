"""What the steps, the lifecycle calls and the reaper do to AMIs: find them by tag, copy, share,
deprecate, tag them with their snapshots, and remove them with their snapshots.

Snapshots: DeregisterImage leaves them behind (on AWS as on moto), so removal always looks them up
and deletes them: from the AMI's block device mappings while it exists, and by description
("Created by CreateImage(i-...) for ami-..." / "Copied for DestinationAmi ami-...") for the ones a
still-pending AMI did not list yet.
"""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timedelta, timezone
from typing import Any, Callable

from ...engine.errors import GoldsmithError
from ...engine.log import BuildLog
from ...engine import cancel
from .client import Aws, AwsError, call, call_retrying, tag_list, tags_of, wait_for_image

COMPLETE = "complete"
BUILDING = "building"


def snapshot_ids(image: dict[str, Any]) -> list[str]:
    return sorted({m["Ebs"]["SnapshotId"] for m in image.get("BlockDeviceMappings", [])
                   if m.get("Ebs", {}).get("SnapshotId")})


def describe_image(ec2: Any, ami_id: str) -> dict[str, Any] | None:
    """The AMI, or None once it is deregistered (AWS answers NotFound, moto an empty list)."""
    try:
        images = call(ec2, "describe_images", ImageIds=[ami_id])["Images"]
    except AwsError as exc:
        if exc.code in ("InvalidAMIID.NotFound", "InvalidAMIID.Unavailable"):
            return None
        raise
    if not images or images[0].get("State") in ("deregistered",):
        return None
    return images[0]


def find_images(ec2: Any, tags: dict[str, str], *, states: tuple[str, ...] = ("available", "pending"),
                name: str = "") -> list[dict[str, Any]]:
    """Our AMIs (owned by this account) carrying every tag in ``tags`` (and ``name``), newest first."""
    filters = [{"Name": f"tag:{k}", "Values": [v]} for k, v in sorted(tags.items())]
    if name:
        filters.append({"Name": "name", "Values": [name]})
    if states:
        filters.append({"Name": "state", "Values": list(states)})
    images = call(ec2, "describe_images", Owners=["self"], Filters=filters)["Images"]
    return sorted(images, key=lambda i: (i.get("CreationDate") or "", i["ImageId"]), reverse=True)


def tag(ec2: Any, resource_ids: list[str], tags: dict[str, str], *, timeout: float = 60) -> None:
    """CreateTags, retried while a resource just created is not visible yet."""
    if not resource_ids or not tags:
        return
    call_retrying(ec2, "create_tags", codes={"InvalidAMIID.NotFound", "InvalidSnapshot.NotFound", "InvalidID"},
                  timeout=timeout, Resources=list(resource_ids), Tags=tag_list(tags))


def untag(ec2: Any, resource_ids: list[str], keys: list[str]) -> None:
    if resource_ids and keys:
        call(ec2, "delete_tags", Resources=list(resource_ids), Tags=[{"Key": k} for k in sorted(keys)])


def remove_image(ec2: Any, ami_id: str, log: BuildLog, *, known_snapshots: list[str] = ()) -> None:
    """Deregister ``ami_id`` and delete its snapshots; raises naming what is left if it cannot."""
    region = ec2.meta.region_name
    image = describe_image(ec2, ami_id)
    snaps = set(known_snapshots)
    if image is not None:
        snaps |= set(snapshot_ids(image))
        call(ec2, "deregister_image", ImageId=ami_id)
    snaps |= {s["SnapshotId"] for s in call(ec2, "describe_snapshots", OwnerIds=["self"],
                                            Filters=[{"Name": "description", "Values": [f"*{ami_id}*"]}])["Snapshots"]}
    left = []
    for snap in sorted(snaps):
        try:
            # Right after DeregisterImage AWS may still call the snapshot in use for a moment.
            call_retrying(ec2, "delete_snapshot", codes={"InvalidSnapshot.InUse"}, timeout=120, interval=3, SnapshotId=snap)
        except AwsError as exc:
            if exc.code == "InvalidSnapshot.NotFound":
                continue
            left.append(f"{snap} ({exc.code})")
    what = f"{ami_id} ({region})" + (f" and snapshot(s) {', '.join(sorted(snaps))}" if snaps else "")
    if left:
        raise GoldsmithError(f"deregistered {ami_id} ({region}) but could not delete snapshot(s) {', '.join(left)}")
    log.info(f"ami: removed {what}" if image is not None or snaps else f"ami: {ami_id} ({region}) is already gone")


def set_launch_permissions(ec2: Any, ami_id: str, add: list[dict[str, str]], remove: list[dict[str, str]]) -> None:
    change: dict[str, Any] = {}
    if add:
        change["Add"] = add
    if remove:
        change["Remove"] = remove
    if change:
        call(ec2, "modify_image_attribute", ImageId=ami_id, LaunchPermission=change)


def deprecation_time(deprecate_at: str, after_days: int, created: str | None) -> datetime | None:
    """When the AMI is to be deprecated: an absolute time, or N days after its creation."""
    if deprecate_at:
        return datetime.fromisoformat(deprecate_at.replace("Z", "+00:00"))
    if after_days:
        base = datetime.fromisoformat(created.replace("Z", "+00:00")) if created else datetime.now(timezone.utc)
        return base + timedelta(days=after_days)
    return None


def set_deprecation(ec2: Any, ami_id: str, when: datetime | None) -> None:
    if when is None:
        call(ec2, "disable_image_deprecation", ImageId=ami_id)
    else:
        call(ec2, "enable_image_deprecation", ImageId=ami_id, DeprecateAt=when)


def copy_to_regions(aws: Aws, *, source_ami: str, source_region: str, regions: list[str], name: str, description: str,
                    tags: dict[str, str], encrypted: bool, kms_key_ids: dict[str, str], client_token: str,
                    timeout: float, interval: float, log: BuildLog,
                    on_created: Callable[[str, str], None]) -> dict[str, dict[str, Any]]:
    """Copy ``source_ami`` to every region in parallel (a thread and a client of its own each) and
    wait until every copy is available. ``on_created(region, ami)`` records each copy the moment it
    exists, so a failure anywhere still lets the caller remove every copy made. Returns the copies'
    descriptions by region; raises after all threads finished if any copy failed."""
    results: dict[str, dict[str, Any]] = {}
    errors: dict[str, BaseException] = {}
    lock = threading.Lock()

    def copy_one(region: str) -> None:
        ec2 = aws.new_client("ec2", region)
        params: dict[str, Any] = {"SourceImageId": source_ami, "SourceRegion": source_region, "Name": name,
                                  "Description": description, "ClientToken": f"{client_token}-{region}"[:64]}
        if encrypted:
            params["Encrypted"] = True
            if kms_key_ids.get(region):
                params["KmsKeyId"] = kms_key_ids[region]
        ami = call(ec2, "copy_image", **params)["ImageId"]
        with lock:
            on_created(region, ami)
        log.info(f"copy: {source_ami} ({source_region}) -> {ami} ({region})")
        tag(ec2, [ami], tags)
        image = wait_for_image(ec2, ami, timeout=timeout, interval=interval, log=log, sleep=cancel.sleep)
        with lock:
            results[region] = image

    def guarded(region: str) -> None:
        try:
            copy_one(region)
        except BaseException as exc:  # noqa: BLE001 - reported together below
            with lock:
                errors[region] = exc

    with ThreadPoolExecutor(max_workers=min(8, max(1, len(regions))), thread_name_prefix="goldsmith-copy") as pool:
        list(pool.map(guarded, regions))
    if errors:
        detail = "; ".join(f"{region}: {exc}" for region, exc in sorted(errors.items()))
        raise GoldsmithError(f"copying {source_ami} failed in {len(errors)} of {len(regions)} region(s): {detail}")
    return results


def complete_tags(image: dict[str, Any]) -> bool:
    return tags_of(image).get("goldsmith:state") == COMPLETE
