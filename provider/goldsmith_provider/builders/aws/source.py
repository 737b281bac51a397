"""Resolve the source AMI at check time: by id, by DescribeImages filters, or by SSM parameter.

The result (the AMI id and the region) is part of the fingerprint, so a newer base AMI behind the
same filter or parameter shows up in `pulumi preview` as a rebuild reason. A search that finds
nothing is a check failure naming the property path and what was searched.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ...engine.errors import GoldsmithError
from .client import AwsError, call
from .config import AmiFilterSource, AmiIdSource, AmiSource, SsmParameterSource


class SourceNotFound(GoldsmithError):
    """No usable AMI: ``path`` is the spec property to fix."""

    def __init__(self, path: str, message: str) -> None:
        self.path = path
        super().__init__(message)


@dataclass(frozen=True)
class ResolvedSource:
    id: str
    name: str
    owner_id: str
    creation_date: str
    architecture: str
    root_device_name: str
    region: str
    found_by: str  # how: "id", "filter: ...", "ssm: /aws/service/..."

    def as_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


def describe_filters(source: AmiFilterSource) -> list[dict[str, Any]]:
    filters = [
        {"Name": "architecture", "Values": [source.architecture]},
        {"Name": "virtualization-type", "Values": [source.virtualization_type]},
        {"Name": "root-device-type", "Values": [source.root_device_type]},
        {"Name": "state", "Values": ["available"]},
        {"Name": "image-type", "Values": ["machine"]},
    ]
    if source.name:
        filters.append({"Name": "name", "Values": [source.name]})
    filters += [{"Name": k, "Values": list(v)} for k, v in sorted(source.filters.items())]
    return filters


def _search_text(source: AmiFilterSource) -> str:
    parts = [f"owners={','.join(source.owners)}"]
    if source.name:
        parts.append(f"name={source.name!r}")
    parts += [f"architecture={source.architecture}", f"virtualization_type={source.virtualization_type}"]
    parts += [f"{k}={','.join(v)}" for k, v in sorted(source.filters.items())]
    return " ".join(parts)


def _resolved(image: dict[str, Any], region: str, found_by: str) -> ResolvedSource:
    return ResolvedSource(id=image["ImageId"], name=image.get("Name") or "", owner_id=image.get("OwnerId") or "",
                          creation_date=image.get("CreationDate") or "", architecture=image.get("Architecture") or "",
                          root_device_name=image.get("RootDeviceName") or "", region=region, found_by=found_by)


def _image_by_id(ec2: Any, ami_id: str, region: str, path: str, found_by: str) -> ResolvedSource:
    try:
        images = call(ec2, "describe_images", ImageIds=[ami_id])["Images"]
    except AwsError as exc:
        if exc.code in ("InvalidAMIID.NotFound", "InvalidAMIID.Malformed", "InvalidAMIID.Unavailable"):
            images = []
        else:
            raise
    if not images:
        raise SourceNotFound(path, f"AMI {ami_id} does not exist in {region} (or is not visible to this account)")
    image = images[0]
    if image.get("State") != "available":
        raise SourceNotFound(path, f"AMI {ami_id} in {region} is {image.get('State')}, not available")
    if image.get("RootDeviceType", "ebs") != "ebs":
        raise SourceNotFound(path, f"AMI {ami_id} has a {image.get('RootDeviceType')} root device; the builder needs EBS")
    return _resolved(image, region, found_by)


def resolve_source(source: AmiSource, *, ec2: Any, ssm_client, region: str, path: str = "source") -> ResolvedSource:
    """Find the source AMI in ``region``; raises :class:`SourceNotFound` with the property path."""
    if isinstance(source, AmiIdSource):
        return _image_by_id(ec2, source.id, region, f"{path}.id", "id")
    if isinstance(source, SsmParameterSource):
        try:
            value = call(ssm_client(), "get_parameter", Name=source.parameter)["Parameter"]["Value"]
        except AwsError as exc:
            if exc.code == "ParameterNotFound":
                raise SourceNotFound(f"{path}.parameter", f"SSM parameter {source.parameter} does not exist in {region}") from None
            raise
        value = value.strip()
        if not value.startswith("ami-"):
            raise SourceNotFound(f"{path}.parameter", f"SSM parameter {source.parameter} holds {value[:40]!r}, not an AMI id")
        return _image_by_id(ec2, value, region, f"{path}.parameter", f"ssm: {source.parameter}")
    if isinstance(source, AmiFilterSource):
        params: dict[str, Any] = {"Owners": list(source.owners), "Filters": describe_filters(source)}
        if source.include_deprecated:
            params["IncludeDeprecated"] = True
        images: list[dict[str, Any]] = []
        while True:
            page = call(ec2, "describe_images", **params)
            images += page.get("Images", [])
            if not page.get("NextToken"):
                break
            params["NextToken"] = page["NextToken"]
        if not images:
            raise SourceNotFound(path, f"no AMI in {region} matches {_search_text(source)}")
        images.sort(key=lambda i: (i.get("CreationDate") or "", i["ImageId"]), reverse=True)
        if len(images) > 1 and not source.most_recent:
            ids = ", ".join(i["ImageId"] for i in images[:5])
            raise SourceNotFound(f"{path}.most_recent", f"{len(images)} AMIs match ({ids}{', ...' if len(images) > 5 else ''}): "
                                 "narrow the filters or set most_recent = true")
        return _resolved(images[0], region, f"filter: {_search_text(source)}")
    raise TypeError(f"unknown source {source!r}")
