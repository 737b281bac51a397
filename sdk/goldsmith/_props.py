"""Turning typed args into the property bag a dynamic resource sends to its provider."""

from __future__ import annotations

import dataclasses
import os
from typing import Any

import pulumi


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
    props = to_props(args) if not isinstance(args, dict) else dict(args)
    props["base_dir"] = project_dir()
    for name in outputs:
        props.setdefault(name, None)
    return props
