"""The AWS part of `goldsmith gc`: builder instances, key pairs, security groups and half-built AMIs
(``goldsmith:state=building``) whose build died, across the configured regions.

Everything a build creates carries ``goldsmith:build-id``, ``goldsmith:owner-host``,
``goldsmith:owner-pid`` and ``goldsmith:created-at``. A resource is an orphan when its owner process
on this host is gone, or (with ``older_than``) when it is older than that, wherever its owner ran.
Resources whose owner ran on another host are left alone unless ``older_than`` says otherwise.

Nothing is asked of AWS unless regions are configured (``--aws-region`` or GOLDSMITH_AWS_REGIONS):
`goldsmith gc` must not reach for the network on a machine that never built an AMI.
"""

from __future__ import annotations

import os
import socket
from datetime import datetime, timezone
from typing import Any, Callable

from ...engine.log import BuildLog
from ...gc import _pid_alive  # the owner test every reaper uses
from .client import Aws, AwsError, call, call_retrying, tags_of, wait_for_instance
from .config import AwsConnection

REGIONS_ENV = "GOLDSMITH_AWS_REGIONS"
TAG = "goldsmith:build-id"


def orphan_reason(tags: dict[str, str], older_than: float | None, *, host: str | None = None,
                  now: datetime | None = None) -> str | None:
    """Why a tagged resource is an orphan, or None if its build may still be running."""
    host = host or socket.gethostname()
    now = now or datetime.now(timezone.utc)
    created = tags.get("goldsmith:created-at", "")
    age = None
    try:
        age = (now - datetime.fromisoformat(created.replace("Z", "+00:00"))).total_seconds()
    except ValueError:
        pass
    if older_than is not None and age is not None and age > older_than:
        return f"older than {older_than:.0f}s"
    if tags.get("goldsmith:owner-host") == host:
        pid = tags.get("goldsmith:owner-pid", "")
        if not pid.isdigit() or not _pid_alive(int(pid)):
            return f"owner pid {pid or '?'} is gone"
    return None


def regions_from_env() -> list[str]:
    return [r.strip() for r in os.environ.get(REGIONS_ENV, "").split(",") if r.strip()]


def aws_orphans(*, older_than: float | None, regions: list[str] | None = None, conn: AwsConnection | None = None,
                make_orphan: Callable[..., Any]) -> list[Any]:
    regions = list(regions or regions_from_env())
    if not regions:
        return []
    aws = Aws(conn or AwsConnection())
    log = BuildLog("gc", console=open(os.devnull, "w"))
    found: list[Any] = []
    for region in regions:
        ec2 = aws.ec2(region)
        tag_filter = [{"Name": "tag-key", "Values": [TAG]}]

        def detail(resource_tags: dict[str, str], why: str, region: str = region) -> str:
            return (f"{region} build {resource_tags.get(TAG, '?')} of {resource_tags.get('goldsmith:name', '?')} "
                    f"(stack {resource_tags.get('goldsmith:stack') or '?'}): {why}")

        # Order matters: instances first (they hold the security group), then AMIs, groups, key pairs.
        reservations = call(ec2, "describe_instances", Filters=tag_filter + [
            {"Name": "instance-state-name", "Values": ["pending", "running", "stopping", "stopped"]}])["Reservations"]
        for instance in [i for r in reservations for i in r["Instances"]]:
            tags = tags_of(instance)
            if why := orphan_reason(tags, older_than):
                iid = instance["InstanceId"]
                found.append(make_orphan("aws-instance", iid, detail(tags, why),
                                         lambda ec2=ec2, iid=iid: _terminate(ec2, iid, log)))
        images = call(ec2, "describe_images", Owners=["self"],
                      Filters=[{"Name": "tag:goldsmith:state", "Values": ["building"]}])["Images"]
        for image in images:
            tags = tags_of(image)
            if why := orphan_reason(tags, older_than):
                from .images import remove_image

                ami = image["ImageId"]
                found.append(make_orphan("aws-image", ami, detail(tags, f"incomplete AMI, {why}"),
                                         lambda ec2=ec2, ami=ami: remove_image(ec2, ami, log)))
        for group in call(ec2, "describe_security_groups", Filters=tag_filter)["SecurityGroups"]:
            tags = tags_of(group)
            if why := orphan_reason(tags, older_than):
                gid = group["GroupId"]
                found.append(make_orphan("aws-security-group", gid, detail(tags, why), lambda ec2=ec2, gid=gid: call_retrying(
                    ec2, "delete_security_group", codes={"DependencyViolation"}, timeout=300, interval=5, GroupId=gid)))
        for pair in call(ec2, "describe_key_pairs", Filters=tag_filter)["KeyPairs"]:
            tags = tags_of(pair)
            if why := orphan_reason(tags, older_than):
                name = pair["KeyName"]
                found.append(make_orphan("aws-key-pair", name, detail(tags, why),
                                         lambda ec2=ec2, name=name: call(ec2, "delete_key_pair", KeyName=name)))
    return found


def _terminate(ec2: Any, instance_id: str, log: BuildLog) -> None:
    try:
        call(ec2, "terminate_instances", InstanceIds=[instance_id])
    except AwsError as exc:
        if exc.code != "InvalidInstanceID.NotFound":
            raise
    wait_for_instance(ec2, instance_id, {"terminated"}, timeout=600, interval=5, log=log, gone_ok=True)
