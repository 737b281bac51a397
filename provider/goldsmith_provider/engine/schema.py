"""One declarative settings table per spec: frozen dataclasses whose fields carry their default,
their doc and how they take part in the build's identity. Parsing, validation (every problem at
once, each with its property path), identity extraction and docs all come from that one table.

Field kinds understood by :func:`parse`: ``str``, ``int``, ``float``, ``bool``, ``X | None``,
``list[X]``, ``dict[str, X]``, ``Literal[...]``, nested spec dataclasses, and unions of spec
dataclasses told apart by their ``TYPE`` class variable (the ``type`` key of the input). A lone
dataclass with a ``TYPE`` is a union of one (a list that will take more kinds later): its input
carries the same ``type`` key.
"""

from __future__ import annotations

import dataclasses
import difflib
import math
import types
import typing
from dataclasses import MISSING, dataclass, field
from pathlib import Path
from typing import Any, Callable, Literal, Union

from .errors import Problem, ValidationError

REQUIRED: Any = MISSING


def setting(
    default: Any = REQUIRED,
    *,
    doc: str,
    identity: bool = True,
    secret: bool = False,
    local_path: bool | Literal["file"] = False,
    minimum: float | None = None,
    maximum: float | None = None,
    check: Callable[[Any], str | None] | None = None,
) -> Any:
    """Declare one spec field.

    identity: the field's value is part of the fingerprint (a change means rebuild).
    secret: never in the fingerprint, masked in every log line, never echoed into outputs. A secret
        field may also hold *references* (spec dataclasses such as a Vault secret's path and key,
        resolved at build time): a reference is not secret, and its identity fields are part of the
        fingerprint (the reference is identity; the value it points to is not).
    local_path: a file or directory on the machine running Pulumi, resolved against the project
        directory; its *content digest* (not its path) is part of the identity. ``"file"``: it must
        be a regular file (a disk image, a tarball, a script), not a directory.
    check: a validator of the field's own value, returning why it is wrong or None; it runs even
        when sibling fields have problems, so every error is reported at once.
    """
    meta = {"doc": doc, "identity": identity and not secret, "secret": secret, "local_path": local_path,
            "minimum": minimum, "maximum": maximum, "check": check}
    if isinstance(default, (list, dict, set)):
        value = default
        return field(default_factory=lambda: type(value)(value), metadata=meta)
    if default is REQUIRED:
        return field(metadata=meta)
    return field(default=default, metadata=meta)


@dataclass
class Context:
    """What parsing needs besides the data: where relative local paths are resolved from."""

    base_dir: Path = field(default_factory=Path.cwd)
    problems: list[Problem] = field(default_factory=list)

    def error(self, path: str, message: str) -> None:
        self.problems.append(Problem(path, message))

    def resolve(self, value: str) -> Path:
        p = Path(value).expanduser()
        return p if p.is_absolute() else (self.base_dir / p)


def _join(path: str, key: str | int) -> str:
    if isinstance(key, int):
        return f"{path}[{key}]"
    return f"{path}.{key}" if path else key


def _type_name(tp: Any) -> str:
    origin = typing.get_origin(tp)
    if tp is str:
        return "a string"
    if tp is bool:
        return "a boolean"
    if tp is int:
        return "an integer"
    if tp is float:
        return "a number"
    if origin is list:
        return "a list"
    if origin is dict:
        return "a map"
    if dataclasses.is_dataclass(tp):
        return "an object"
    return str(tp)


def _got(value: Any) -> str:
    """What the input holds, in the user's terms (the engine sends every number as a float). Never the
    value itself: the field may be a secret."""
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, (int, float)):
        return "a number"
    for kind, name in ((str, "a string"), ((list, tuple), "a list"), (dict, "a map")):
        if isinstance(value, kind):
            return name
    return "nothing" if value is None else type(value).__name__


def _is_union(tp: Any) -> bool:
    return typing.get_origin(tp) in (Union, types.UnionType)


_hints_cache: dict[type, dict[str, Any]] = {}


def hints(cls: type) -> dict[str, Any]:
    if cls not in _hints_cache:
        _hints_cache[cls] = typing.get_type_hints(cls)
    return _hints_cache[cls]


def parse(cls: type, data: Any, ctx: Context, path: str = "") -> Any:
    """Parse ``data`` into ``cls``; problems go to ``ctx.problems``; returns None if unusable."""
    return _parse_value(cls, data, ctx, path, meta={})


def _parse_value(tp: Any, value: Any, ctx: Context, path: str, meta: dict[str, Any]) -> Any:
    origin = typing.get_origin(tp)
    if _is_union(tp):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        if value is None:
            if type(None) in typing.get_args(tp):
                return None
            ctx.error(path, "is required")
            return None
        if len(args) == 1:
            return _parse_value(args[0], value, ctx, path, meta)
        if all(dataclasses.is_dataclass(a) for a in args):
            return _parse_tagged(args, value, ctx, path)
        classes = [a for a in args if dataclasses.is_dataclass(a)]
        if classes and isinstance(value, dict):  # a scalar or an object (e.g. a string or a secret reference)
            if len(classes) == 1 and not hasattr(classes[0], "TYPE"):
                return _parse_dataclass(classes[0], value, ctx, path)
            return _parse_tagged(classes, value, ctx, path)
        for a in (a for a in args if not dataclasses.is_dataclass(a)):  # scalar unions: first that fits
            probe = Context(ctx.base_dir)
            parsed = _parse_value(a, value, probe, path, meta)
            if not probe.problems:
                return parsed
        ctx.error(path, f"must be one of: {', '.join(_type_name(a) for a in args)}; got {_got(value)}")
        return None
    if origin is Literal:
        choices = typing.get_args(tp)
        if value not in choices:
            ctx.error(path, f"must be one of {', '.join(repr(c) for c in choices)}, got {value!r}")
            return None
        return value
    if origin in (list, tuple):
        if not isinstance(value, (list, tuple)):
            ctx.error(path, f"must be a list, got {_got(value)}")
            return None
        (item_tp, *_rest) = typing.get_args(tp) or (Any,)
        items = [_parse_value(item_tp, v, ctx, _join(path, i), meta) for i, v in enumerate(value)]
        return tuple(items) if origin is tuple else items
    if origin is dict:
        if not isinstance(value, dict):
            ctx.error(path, f"must be a map, got {_got(value)}")
            return None
        _, val_tp = typing.get_args(tp) or (str, Any)
        out = {}
        for k, v in value.items():
            if not isinstance(k, str) or not k:
                ctx.error(path, f"keys must be non-empty strings, got {k!r}")
                continue
            out[k] = _parse_value(val_tp, v, ctx, _join(path, k), meta)
        return out
    if dataclasses.is_dataclass(tp):
        if hasattr(tp, "TYPE"):
            return _parse_tagged([tp], value, ctx, path)
        return _parse_dataclass(tp, value, ctx, path)
    if tp is Any:
        return value
    if tp is bool:
        if not isinstance(value, bool):
            ctx.error(path, f"must be a boolean, got {_got(value)}")
            return None
        return value
    if tp in (int, float):
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            ctx.error(path, f"must be {_type_name(tp)}, got {_got(value)}")
            return None
        if isinstance(value, float) and not math.isfinite(value):
            ctx.error(path, f"must be a finite number, got {value}")
            return None
        if tp is int:
            if isinstance(value, float) and not value.is_integer():
                ctx.error(path, f"must be an integer, got {value}")
                return None
            value = int(value)
        lo, hi = meta.get("minimum"), meta.get("maximum")
        if lo is not None and value < lo:
            ctx.error(path, f"must be at least {lo:g}, got {value}")
        if hi is not None and value > hi:
            ctx.error(path, f"must be at most {hi:g}, got {value}")
        return value
    if tp is str:
        if not isinstance(value, str):
            ctx.error(path, f"must be a string, got {_got(value)}")
            return None
        return value
    raise TypeError(f"schema: unsupported field type {tp!r} at {path}")  # a programming error


def _parse_tagged(classes: list[type], value: Any, ctx: Context, path: str) -> Any:
    by_tag = {c.TYPE: c for c in classes}  # type: ignore[attr-defined]
    if not isinstance(value, dict):
        ctx.error(path, f"must be an object with a 'type' of {', '.join(map(repr, by_tag))}")
        return None
    tag = value.get("type")
    if tag not in by_tag:
        hint = difflib.get_close_matches(str(tag), by_tag, n=1)
        suffix = f" (did you mean {hint[0]!r}?)" if hint else ""
        ctx.error(_join(path, "type"), f"must be one of {', '.join(map(repr, by_tag))}, got {tag!r}{suffix}")
        return None
    return _parse_dataclass(by_tag[tag], {k: v for k, v in value.items() if k != "type"}, ctx, path)


def _parse_dataclass(cls: type, value: Any, ctx: Context, path: str) -> Any:
    if not isinstance(value, dict):
        ctx.error(path, f"must be an object, got {_got(value)}")
        return None
    fields = {f.name: f for f in dataclasses.fields(cls)}
    for key in value:
        if key not in fields:
            hint = difflib.get_close_matches(str(key), fields, n=1)
            suffix = f" (did you mean {hint[0]!r}?)" if hint else ""
            ctx.error(_join(path, key), f"unknown property{suffix}")
    kwargs: dict[str, Any] = {}
    before = len(ctx.problems)
    tps = hints(cls)
    local_paths: list[tuple[Any, str]] = []
    for name, f in fields.items():
        sub = _join(path, name)
        if name not in value or value[name] is None and not _optional(tps[name]):
            if f.default is MISSING and f.default_factory is MISSING:  # type: ignore[misc]
                ctx.error(sub, "is required")
            continue
        field_before = len(ctx.problems)
        parsed = _parse_value(tps[name], value[name], ctx, sub, dict(f.metadata))
        # The field's own check sees only a value that parsed whole (a map with one bad value holds a None).
        if parsed is not None and f.metadata.get("check") is not None and len(ctx.problems) == field_before:
            if (problem := f.metadata["check"](parsed)) is not None:
                ctx.error(sub, problem)
        if f.metadata.get("local_path") and parsed is not None:
            required = f.default is MISSING and f.default_factory is MISSING  # type: ignore[misc]
            local_paths.append((parsed, sub, f.metadata["local_path"], required))
        kwargs[name] = parsed
    if len(ctx.problems) > before:
        return None
    for parsed, sub, kind, required in local_paths:  # a missing file does not stop the semantic checks below
        _check_local_paths(parsed, ctx, sub, kind=kind, required=required)
    try:
        obj = cls(**kwargs)
    except (TypeError, ValueError) as exc:  # a dataclass __post_init__ may refuse a combination
        ctx.error(path, str(exc))
        return None
    validate = getattr(obj, "validate", None)
    if validate is not None:
        validate(ctx, path)
    return obj


def _optional(tp: Any) -> bool:
    return _is_union(tp) and type(None) in typing.get_args(tp)


def _check_local_paths(value: Any, ctx: Context, path: str, *, kind: Any = True, required: bool = False) -> None:
    """Local paths must exist (read-only checks: stat, never a write). An empty string is "unset" for
    an optional field (its validate() decides) and an error for a required one or in a list."""
    if isinstance(value, str):
        if "://" in value:
            return  # a URL; the field's own validate() decides whether URLs are allowed
        if not value.strip():
            if required:
                ctx.error(path, "must not be empty")
            return
        resolved = ctx.resolve(value)
        if not resolved.exists():
            ctx.error(path, f"file not found: {value} (resolved against {ctx.base_dir})")
        elif kind == "file" and not resolved.is_file():
            ctx.error(path, f"must be a file, but {value} is a {'directory' if resolved.is_dir() else 'special file'}")
    elif isinstance(value, (list, tuple)):
        for i, v in enumerate(value):
            _check_local_paths(v, ctx, _join(path, i), kind=kind, required=True)


def prepare(cls: type, data: Any, base_dir: Path) -> tuple[Any, list[Problem]]:
    """Parse and validate a whole spec: every problem at once, each with its property path; no side effects."""
    ctx = Context(base_dir=base_dir)
    return parse(cls, data, ctx), ctx.problems


def parse_or_raise(cls: type, data: Any, base_dir: Path) -> Any:
    obj, problems = prepare(cls, data, base_dir)
    if problems:
        raise ValidationError(problems)
    return obj


# --- walking a parsed spec -------------------------------------------------------------------------


def walk_fields(obj: Any, path: str = "") -> typing.Iterator[tuple[str, dataclasses.Field[Any], Any]]:
    """Yield (path, field, value) for every field of a parsed spec, depth first."""
    if not dataclasses.is_dataclass(obj):
        return
    for f in dataclasses.fields(obj):
        value = getattr(obj, f.name)
        sub = _join(path, f.name)
        yield sub, f, value
        for child_path, child in _children(value, sub):
            yield from walk_fields(child, child_path)


def _children(value: Any, path: str) -> typing.Iterator[tuple[str, Any]]:
    if dataclasses.is_dataclass(value):
        yield path, value
    elif isinstance(value, (list, tuple)):
        for i, v in enumerate(value):
            yield from _children(v, _join(path, i))
    elif isinstance(value, dict):
        for k, v in value.items():
            yield from _children(v, _join(path, k))


def identity(obj: Any, digest_of: Callable[[str, str], str]) -> Any:
    """The identity document of a parsed spec: identity fields only, local paths replaced by the
    digest of their content (``digest_of(property_path, value)``), secrets left out."""
    return _identity(obj, "", digest_of, local=False)


def _identity(value: Any, path: str, digest_of: Callable[[str, str], str], *, local: bool) -> Any:
    if dataclasses.is_dataclass(value):
        doc: dict[str, Any] = {}
        if hasattr(value, "TYPE"):
            doc["type"] = value.TYPE  # type: ignore[attr-defined]
        override = value.identity_override() if hasattr(value, "identity_override") else {}
        for f in dataclasses.fields(value):
            if f.metadata.get("secret"):
                refs = _reference_identity(getattr(value, f.name), _join(path, f.name), digest_of)
                if refs is not None:  # only a field holding references; plain secret values never
                    doc[f.name] = refs
                continue
            if not f.metadata.get("identity", True):
                continue
            if f.name in override:  # e.g. a declared checksum standing for a local file's content
                doc[f.name] = override[f.name]
                continue
            doc[f.name] = _identity(getattr(value, f.name), _join(path, f.name), digest_of,
                                    local=f.metadata.get("local_path", False))
        return doc
    if isinstance(value, (list, tuple)):
        return [_identity(v, _join(path, i), digest_of, local=local) for i, v in enumerate(value)]
    if isinstance(value, dict):
        return {k: _identity(v, _join(path, k), digest_of, local=local) for k, v in value.items()}
    if local and isinstance(value, str):
        return digest_of(path, value)
    return value


def _reference_identity(value: Any, path: str, digest_of: Callable[[str, str], str]) -> Any:
    """The identity of the references held in a secret field (None when it holds none): a reference
    dataclass by its identity fields; in a map or list, the references only, by key or index."""
    if dataclasses.is_dataclass(value):
        return _identity(value, path, digest_of, local=False)
    if isinstance(value, dict):
        refs = {k: r for k, v in value.items()
                if (r := _reference_identity(v, _join(path, k), digest_of)) is not None}
        return refs or None
    if isinstance(value, (list, tuple)):
        items = {str(i): r for i, v in enumerate(value)
                 if (r := _reference_identity(v, _join(path, i), digest_of)) is not None}
        return items or None
    return None


def references(obj: Any, kind: type) -> list[tuple[str, Any]]:
    """(property path, reference) for every ``kind`` instance held anywhere in a parsed spec."""
    found: list[tuple[str, Any]] = []

    def visit(value: Any, path: str) -> None:
        if isinstance(value, kind):
            found.append((path, value))
        elif isinstance(value, dict):
            for k, v in value.items():
                if not dataclasses.is_dataclass(v) or isinstance(v, kind):
                    visit(v, _join(path, k))
        elif isinstance(value, (list, tuple)):
            for i, v in enumerate(value):
                if not dataclasses.is_dataclass(v) or isinstance(v, kind):
                    visit(v, _join(path, i))

    for path, _f, value in walk_fields(obj):
        visit(value, path)
    return found


def secret_values(obj: Any) -> list[str]:
    """Every string held in a secret field, for the log masker."""
    found: list[str] = []
    for _path, f, value in walk_fields(obj):
        if f.metadata.get("secret"):
            found.extend(_strings(value))
    return found


def _strings(value: Any) -> list[str]:
    if isinstance(value, str):
        return [value]
    if isinstance(value, (list, tuple)):
        return [s for v in value for s in _strings(v)]
    if isinstance(value, dict):
        return [s for v in value.values() for s in _strings(v)]
    return []


def docs_table(cls: type, prefix: str = "") -> list[tuple[str, str, str, str]]:
    """(property, type, default, doc) rows for the docs, from the same table the parser reads."""
    rows = []
    tps = hints(cls)
    for f in dataclasses.fields(cls):
        tp = tps[f.name]
        if f.default is not MISSING:
            default = repr(f.default)
        elif f.default_factory is not MISSING:  # type: ignore[misc]
            default = repr(f.default_factory())  # type: ignore[misc]
        else:
            default = "required"
        rows.append((prefix + f.name, getattr(tp, "__name__", str(tp)), default, f.metadata.get("doc", "")))
    return rows
