"""One template, many platforms: the settings of a GoldenImage and its expansion into per-platform specs.

A template holds what every platform shares (name, provisioners, variables, the paths to compare);
a *target* holds one platform's settings. Target types are derived from the builders' own settings
tables (every field but ``name`` and ``provisioners``; ``source`` becomes optional because a parent
image can supply it), so a new builder setting is a target setting at once, with the same doc,
validation and identity.

Expansion works on property bags (plain dicts whose leaves may be Pulumi Outputs): the component
calls it at program time and each expanded spec is then checked by its builder's provider like any
other image, so a bad setting is reported with its property path before anything is built.
"""

from __future__ import annotations

import copy
import dataclasses
import re
from dataclasses import dataclass
from typing import Any, Optional

from ..builders.aws.config import AmiImageSpec
from ..builders.docker.config import DockerImageSpec
from ..builders.qemu.config import QemuImageSpec
from ..engine.errors import Problem, ValidationError
from ..engine.schema import hints, setting
from ..provisioners import Provisioner

KEY_RE = re.compile(r"^[a-z0-9][a-z0-9-]{0,30}$")
SHARED = ("name", "provisioners")


def _target_type(spec_cls: type, type_name: str, title: str) -> type:
    tps = hints(spec_cls)
    fields: list[tuple[str, Any, Any]] = [
        ("name", str, setting("", doc="This platform's image name (default: the template's name).", identity=False)),
        ("extra_provisioners", list[Provisioner],  # type: ignore[valid-type]
         setting([], doc="Provisioners run on this platform only, after the template's.")),
    ]
    for f in dataclasses.fields(spec_cls):
        if f.name in SHARED:
            continue
        tp = tps[f.name]
        if f.name == "source":
            fields.append((f.name, Optional[tp], dataclasses.field(default=None, metadata={
                **f.metadata, "doc": f.metadata.get("doc", "") + " Default: the parent image's artifact for this platform."})))
        elif f.default is not dataclasses.MISSING:
            fields.append((f.name, tp, dataclasses.field(default=f.default, metadata=f.metadata)))
        else:
            fields.append((f.name, tp, dataclasses.field(default_factory=f.default_factory, metadata=f.metadata)))  # type: ignore[arg-type]
    cls = dataclasses.make_dataclass(title, fields, frozen=True, namespace={
        "TYPE": type_name, "SPEC": spec_cls,
        "__doc__": f"The {type_name} target of a GoldenImage: {spec_cls.__name__}'s settings but the shared ones."})
    cls.__module__ = __name__
    return cls


QemuTarget = _target_type(QemuImageSpec, "qemu", "QemuTarget")
DockerTarget = _target_type(DockerImageSpec, "docker", "DockerTarget")
AmiTarget = _target_type(AmiImageSpec, "aws", "AmiTarget")
TARGET_TYPES = {t.TYPE: t for t in (QemuTarget, DockerTarget, AmiTarget)}


@dataclass(frozen=True)
class Consistency:
    """How the images of one template are compared across platforms after a fan-out."""

    paths: list[str] = setting([], doc="Files or directories whose digests must be equal on every platform "
                               "(recorded by each builder before generalization).")
    ignore_packages: list[str] = setting([], doc="Package name patterns left out of the comparison (fnmatch).")
    allowed_drift: list[str] = setting([], doc="Package name patterns allowed to differ in version.")
    strict_packages: bool = setting(False, doc="Also count a package found on only some platforms as drift.")
    fail_on_drift: bool = setting(False, doc="Fail the update when the report finds unexpected drift.")
    report_file: str = setting("", doc="Where the JSON report is written (relative to the project); "
                               "default: reports/<name>-consistency.json.")
    enabled: bool = setting(True, doc="Make the report at all.")


def template_problems(name: str, targets: dict[str, Any], only: list[str] | None, parent_keys: list[str] | None) -> list[Problem]:
    """What is wrong with a template as a whole (each target's own settings are checked by its builder)."""
    problems = []
    if not targets:
        problems.append(Problem("targets", "needs at least one target"))
    for key, target in targets.items():
        if not KEY_RE.match(key):
            problems.append(Problem(f"targets.{key}", "target keys are 1-31 characters of a-z, 0-9 and '-'"))
        if type(target) not in TARGET_TYPES.values():
            problems.append(Problem(f"targets.{key}", f"must be one of QemuTarget, DockerTarget, AmiTarget; got {type(target).__name__}"))
            continue
        if target.source is None and (parent_keys is None or key not in parent_keys):
            problems.append(Problem(f"targets.{key}.source", "is required: no parent image" if parent_keys is None
                                    else f"is required: the parent image has no {key!r} target (it has {', '.join(parent_keys) or 'none'})"))
    for i, key in enumerate(only or []):
        if key not in targets:
            problems.append(Problem(f"only[{i}]", f"names no target: {key!r} (targets: {', '.join(targets)})"))
    return problems


def raise_if_problems(problems: list[Problem]) -> None:
    if problems:
        raise ValidationError(problems)


def expand(target_key: str, target_props: dict[str, Any], *, name: str, provisioners: list[dict[str, Any]],
           variables: dict[str, Any], digest_paths: list[str], parent_source: dict[str, Any] | None) -> dict[str, Any]:
    """The spec properties of one platform's image: the target's settings plus the template's.

    ``variables`` reach every shell provisioner as environment variables (a provisioner's own ``env``
    wins), with ``GOLDSMITH_PLATFORM`` (the target key) and ``GOLDSMITH_BUILDER`` (qemu, docker, aws)."""
    props = {k: v for k, v in target_props.items() if k not in ("type", "extra_provisioners", "name")}
    props["name"] = target_props.get("name") or name
    builder = target_props.get("type", "")
    env = {**{str(k): v for k, v in variables.items()}, "GOLDSMITH_PLATFORM": target_key, "GOLDSMITH_BUILDER": builder}
    steps = []
    for p in [*provisioners, *(target_props.get("extra_provisioners") or [])]:
        p = copy.copy(p)
        if isinstance(p, dict) and p.get("type") == "shell":
            p["env"] = {**env, **(p.get("env") or {})}
        steps.append(p)
    props["provisioners"] = steps
    if props.get("source") is None:
        props["source"] = parent_source
    paths = list(dict.fromkeys([*(target_props.get("digest_paths") or []), *digest_paths]))
    props["digest_paths"] = paths
    return props


def required_packages(provisioners: list[dict[str, Any]]) -> list[str]:
    """The packages the template installs explicitly: each must be on every platform."""
    names: list[str] = []
    for p in provisioners:
        if isinstance(p, dict) and p.get("type") == "packages":
            names += [re.split(r"[=<>]", str(n))[0] for n in p.get("install") or []]
    return names
