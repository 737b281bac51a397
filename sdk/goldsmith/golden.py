"""GoldenImage: one template, one image per platform, built in parallel; layering; a consistency report.

    core = gs.GoldenImage("core", gs.GoldenImageArgs(
        name="core",
        provisioners=[gs.Packages(install=["jq"]), gs.Shell(scripts=["scripts/harden.sh"])],
        variables={"TIER": "core"},
        targets={
            "qemu": gs.QemuTarget(source=gs.DebootstrapSource(), output=gs.OutputSettings(formats=["qcow2", "vmdk"])),
            "docker": gs.DockerTarget(source=gs.DebootstrapRootfsSource()),
        },
        consistency=gs.Consistency(paths=["/etc/motd"], fail_on_drift=True),
    ))
    web = gs.GoldenImage("web", gs.GoldenImageArgs(
        name="web", parent=core,                      # each target starts from core's image for that platform
        provisioners=[gs.Shell(inline=["..."])],
        targets={"qemu": gs.QemuTarget(), "docker": gs.DockerTarget()},
    ))
    pulumi.export("images", web.artifacts)            # {"qemu": {...path, sha256...}, "docker": {...image_ref...}}

Every target image gets a provider process of its own (a ``BuildProcess``): the engine serves at
most 4 calls at once per provider process, and a build holds its call for its whole length, so a
fleet of images sharing the default provider would build 4 at a time.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, Optional, Union

import pulumi
import pulumi.dynamic
from goldsmith_provider.dynamic.report import ConsistencyReportProvider
from goldsmith_provider.golden.template import (
    AmiTarget,
    Consistency,
    DockerTarget,
    QemuTarget,
    expand,
    raise_if_problems,
    required_packages,
    template_problems,
)

from ._props import project_dir, to_props
from .aws import AmiImage
from .docker import DockerImage
from .qemu import QemuImage

Target = Union[QemuTarget, DockerTarget, AmiTarget]  # type: ignore[valid-type]
RESOURCES = {"qemu": QemuImage, "docker": DockerImage, "aws": AmiImage}


class BuildProcess(pulumi.ProviderResource):
    """A provider process of its own for the images that name it in ``opts.provider``.

    One process serves 4 calls at once; give each image of a big fleet its own (GoldenImage does)
    so all of them build in parallel. Costs one Python process per image during an update."""

    def __init__(self, name: str, opts: Optional[pulumi.ResourceOptions] = None) -> None:
        super().__init__("pulumi-python", name, {}, opts)


@dataclass
class GoldenImageArgs:
    name: str
    """The image name on every platform (a target's ``name`` overrides it)."""
    targets: dict[str, Any]
    """Target key (e.g. "qemu", "vsphere", "docker", "aws") -> QemuTarget, DockerTarget or AmiTarget."""
    provisioners: list[Any] = field(default_factory=list)
    """Run on every platform, in order, before a target's ``extra_provisioners``."""
    variables: dict[str, Any] = field(default_factory=dict)
    """Environment of every shell provisioner (plus GOLDSMITH_PLATFORM and GOLDSMITH_BUILDER)."""
    parent: Optional["GoldenImage"] = None
    """Layering: a target without a ``source`` starts from the parent's image for the same target key."""
    only: Optional[list[str]] = None
    """Build only these targets (the config key ``goldsmith:only``, comma-separated, overrides it)."""
    fail_fast: bool = True
    """One target's failure stops the others' builds (they clean up); False lets them finish."""
    consistency: Consistency = field(default_factory=Consistency)
    """Compare the images across platforms after they are built."""


def _source_from(parent: "GoldenImage", key: str, kind: str, target: Any) -> Any:
    image = parent.images[key]
    if kind == "qemu":
        return pulumi.Output.all(image.path, image.sha256).apply(
            lambda v: {"type": "disk", "path": v[0], "checksum": v[1], "format": "qcow2", "cloud_init": False})
    if kind == "docker":
        return image.image_id.apply(lambda ref: {"type": "image", "ref": ref, "pull": "never"})
    region = getattr(getattr(target, "aws", None), "region", "") or ""

    def ami(v: list[Any]) -> dict[str, Any]:
        ami_ids, primary = v[0] or {}, v[1]
        return {"type": "ami", "id": ami_ids.get(region, primary) if region else primary}
    return pulumi.Output.all(image.ami_ids, image.ami_id).apply(ami)


def _artifact(kind: str, image: Any) -> pulumi.Output:
    keys = {"qemu": ("image_id", "path", "sha256", "artifacts", "fingerprint", "package_count"),
            "docker": ("image_id", "image_ref", "repository", "repo_digests", "fingerprint", "package_count"),
            "aws": ("image_id", "ami_id", "ami_ids", "region", "fingerprint", "package_count")}[kind]
    return pulumi.Output.all(*(getattr(image, k) for k in keys)).apply(
        lambda values: {"builder": kind, **dict(zip(keys, values))})


class GoldenImage(pulumi.ComponentResource):
    """One image per target, built in parallel by the engine, each in its own provider process."""

    images: dict[str, pulumi.dynamic.Resource]
    artifacts: pulumi.Output[dict]
    fingerprints: pulumi.Output[dict]
    report: Optional[pulumi.Output[dict]]

    def __init__(self, resource_name: str, args: GoldenImageArgs, opts: Optional[pulumi.ResourceOptions] = None) -> None:
        super().__init__("goldsmith:index:GoldenImage", resource_name, None, opts)
        only = args.only
        configured = pulumi.Config("goldsmith").get("only")
        if configured:
            only = [k.strip() for k in configured.split(",") if k.strip()]
        parent_keys = sorted(args.parent.images) if args.parent is not None else None
        raise_if_problems(template_problems(args.name, args.targets, only, parent_keys))
        self.targets = {k: t for k, t in args.targets.items() if only is None or k in only}
        shared = to_props(list(args.provisioners))
        fleet_id = f"{pulumi.get_project()}/{pulumi.get_stack()}/{resource_name}"
        self.images = {}
        for key, target in self.targets.items():
            kind = target.TYPE
            source = _source_from(args.parent, key, kind, target) if target.source is None else None
            props = expand(key, to_props(target), name=args.name, provisioners=shared, variables=dict(args.variables),
                           digest_paths=list(args.consistency.paths), parent_source=source)
            props["fleet"] = {"id": fleet_id, "member": key, "fail_fast": args.fail_fast}
            process = BuildProcess(f"{resource_name}-{key}-builder", pulumi.ResourceOptions(parent=self))
            self.images[key] = RESOURCES[kind](f"{resource_name}-{key}", props,
                                               pulumi.ResourceOptions(parent=self, provider=process))
        kinds = {k: t.TYPE for k, t in self.targets.items()}
        self.artifacts = pulumi.Output.all(*(_artifact(kinds[k], img) for k, img in self.images.items())).apply(
            lambda values: dict(zip(self.images, values)))
        self.fingerprints = pulumi.Output.all(*(img.fingerprint for img in self.images.values())).apply(
            lambda values: dict(zip(self.images, values)))
        self.report = None
        if args.consistency.enabled and self.images:
            self.consistency = ConsistencyReport(f"{resource_name}-consistency", args.name, self.images, args.consistency,
                                                 required_packages(shared), pulumi.ResourceOptions(parent=self))
            self.report = self.consistency.report
        outputs: dict[str, Any] = {"artifacts": self.artifacts, "fingerprints": self.fingerprints}
        if self.report is not None:
            outputs["report"] = self.report
        self.register_outputs(outputs)


class ConsistencyReport(pulumi.dynamic.Resource, module="goldsmith", name="ConsistencyReport"):
    report: pulumi.Output[dict]
    path: pulumi.Output[str]
    drift: pulumi.Output[bool]
    summary: pulumi.Output[str]

    def __init__(self, resource_name: str, template: str, images: dict[str, Any], settings: Consistency,
                 required: list[str], opts: Optional[pulumi.ResourceOptions] = None) -> None:
        props = {
            "template": template,
            "images": {k: {"packages": img.packages, "path_digests": img.path_digests, "fingerprint": img.fingerprint}
                       for k, img in images.items()},
            "settings": {k: v for k, v in dataclasses.asdict(settings).items() if k != "enabled"},
            "required_packages": required,
            "base_dir": project_dir(),
            "report": None, "path": None, "drift": None, "summary": None,
        }
        super().__init__(ConsistencyReportProvider(), resource_name, props, opts)
