"""Turning typed args into the property bag a dynamic resource sends to its provider."""

from __future__ import annotations

import dataclasses
import os
from typing import Any

import pulumi
import pulumi.dynamic


def to_props(value: Any, *, secret: bool = False) -> Any:
    """Dataclass args -> plain dicts (with ``type`` tags for unions); secret fields become secret Outputs."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        out: dict[str, Any] = {}
        if hasattr(value, "TYPE"):
            out["type"] = value.TYPE
        for f in dataclasses.fields(value):
            v = getattr(value, f.name)
            out[f.name] = to_props(v, secret=f.metadata.get("secret", False))
        return out
    if isinstance(value, dict):
        return {k: to_props(v, secret=secret) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [to_props(v, secret=secret) for v in value]
    if secret and value is not None and value != "":
        return pulumi.Output.secret(value)
    return value


def project_dir() -> str:
    """Relative paths in image specs resolve against the project root (where Pulumi.yaml is)."""
    try:
        root = pulumi.get_root_directory()
    except Exception:  # noqa: BLE001 - outside a Pulumi program (mocks, plain scripts)
        root = None
    if not root or not os.path.isabs(root) or not os.path.isdir(root):  # mocks give a placeholder
        root = os.getcwd()
    return os.path.abspath(root)


def resource_props(args: Any, outputs: tuple[str, ...]) -> dict[str, Any]:
    props = to_props(args) if dataclasses.is_dataclass(args) and not isinstance(args, type) else dict(args)
    props["base_dir"] = project_dir()
    for name in outputs:
        props.setdefault(name, None)
    return props


class ImageResource(pulumi.dynamic.Resource):
    """The outputs every golden image has, whatever the builder; a builder's resource declares its
    own beside them. The annotations are the list of outputs: each is sent as a property (unknown
    until the build), so a preview can already reference it."""

    image_id: pulumi.Output[str]
    fingerprint: pulumi.Output[str]
    input_digests: pulumi.Output[dict]
    rebuild_reasons: pulumi.Output[list]
    packages: pulumi.Output[list]
    package_count: pulumi.Output[int]
    path_digests: pulumi.Output[dict]
    provenance: pulumi.Output[dict]
    timings: pulumi.Output[dict]
    adopted: pulumi.Output[bool]
    build_log: pulumi.Output[str]

    @classmethod
    def output_names(cls) -> tuple[str, ...]:
        names: dict[str, None] = {}
        for klass in reversed(cls.__mro__):
            if issubclass(klass, ImageResource):
                names.update(dict.fromkeys(vars(klass).get("__annotations__", {})))
        return tuple(names)
