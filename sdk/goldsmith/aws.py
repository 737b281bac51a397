"""The AmiImage resource: a golden AMI built on an EC2 instance (the amazon-ebs flow), copied,
shared and deprecated across regions."""

from __future__ import annotations

from typing import Any, Optional

import pulumi
from goldsmith_provider.builders.aws.config import AmiImageSpec
from goldsmith_provider.dynamic.aws import AwsImageProvider

from ._props import ImageResource, resource_props


def _stack_defaults(props: dict[str, Any], resource_name: str) -> None:
    """Ownership tags and the AWS settings a pulumi-aws program already has in its stack config."""
    for key, value in (("stack", pulumi.get_stack), ("project", pulumi.get_project)):
        if not props.get(key):
            props[key] = value()
    props["resource"] = props.get("resource") or resource_name
    aws = dict(props.get("aws") or {})
    config = pulumi.Config("aws")
    if not aws.get("region") and config.get("region"):
        aws["region"] = config.get("region")
    if not aws.get("profile") and config.get("profile"):
        aws["profile"] = config.get("profile")
    if aws:
        props["aws"] = aws


class AmiImage(ImageResource, module="goldsmith", name="AmiImage"):
    """Builds when its fingerprint changes (provisioners, files, or a newer source AMI);
    ``pulumi preview --diff`` shows ``rebuild_reasons``. Tags, description, copy regions, sharing and
    deprecation update in place."""

    ami_id: pulumi.Output[str]
    ami_ids: pulumi.Output[dict]
    ami_name: pulumi.Output[str]
    region: pulumi.Output[str]
    snapshot_ids: pulumi.Output[dict]
    source_ami_id: pulumi.Output[str]
    source_ami: pulumi.Output[dict]
    resolved: pulumi.Output[dict]
    api_retries: pulumi.Output[dict]  # botocore's retries of the build's AWS calls: totals, by error code
    aws: pulumi.Output[dict]  # the connection settings (an input, kept: refresh and delete use them)

    def __init__(self, resource_name: str, args: AmiImageSpec | dict[str, Any],
                 opts: Optional[pulumi.ResourceOptions] = None) -> None:
        props = resource_props(args, self.output_names())  # dataclass args or a dict, copied either way
        _stack_defaults(props, resource_name)
        super().__init__(AwsImageProvider(), resource_name, props, opts)
