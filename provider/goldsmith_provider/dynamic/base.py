"""The Pulumi layer, kept thin: parse props, call the builder, dump the result.

Every image resource shares this provider; a builder module supplies ``prepare``, ``identify``,
``build``, ``read``, ``update_metadata`` and ``delete``. The provider object holds only the
builder's module *name*, so dill pickles it by reference and the state stays small; nothing is
shared between the provider process's worker threads.
"""

from __future__ import annotations

import importlib
import sys
import time
from pathlib import Path
from typing import Any

from pulumi.dynamic import CheckFailure, CheckResult, CreateResult, DiffResult, ReadResult, ResourceProvider, UpdateResult

from ..engine import cancel
from ..engine.errors import GoldsmithError
from ..engine.log import BuildLog, Masker
from ..engine.schema import secret_values
from ..golden.fleet import Fleet

# Keys the provider adds to the user's spec; everything else in the props is the spec itself.
META_KEYS = ("base_dir", "fingerprint", "input_digests", "rebuild_reasons", "resolved", "fleet", "__provider")
# Spec fields that change in place (no rebuild): recorded in the manifest and the outputs.
METADATA_FIELDS = ("labels", "description", "retention", "keep_on_error")

try:  # the engine's marker for values not known during a preview
    from pulumi.runtime.rpc import UNKNOWN
except ImportError:  # pragma: no cover
    UNKNOWN = "04da6b54-80e4-46f7-96ec-b56ff0331ba9"
try:  # what the SDK's deserializer hands a provider for an unknown value (the marker string in older SDKs)
    from pulumi.output import Unknown as _UnknownValue
except ImportError:  # pragma: no cover
    _UnknownValue = ()  # type: ignore[assignment,misc]


def is_unknown(value: Any) -> bool:
    return isinstance(value, _UnknownValue) or (isinstance(value, str) and value == UNKNOWN)


class ImageBuildError(Exception):
    """What the Pulumi console shows: the goldsmith error text, without a provider traceback."""


def contains_unknown(value: Any) -> bool:
    if is_unknown(value):
        return True
    if isinstance(value, dict):
        return any(contains_unknown(v) for v in value.values())
    if isinstance(value, (list, tuple)):
        return any(contains_unknown(v) for v in value)
    return False


def unknown_paths(value: Any, path: str = "") -> list[str]:
    """The property paths whose values are not known yet (outputs of resources being changed)."""
    if is_unknown(value):
        return [path or "(the whole spec)"]
    if isinstance(value, dict):
        return [p for k, v in value.items() for p in unknown_paths(v, f"{path}.{k}" if path else str(k))]
    if isinstance(value, (list, tuple)):
        return [p for i, v in enumerate(value) for p in unknown_paths(v, f"{path}[{i}]")]
    return []


def spec_props(props: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in props.items() if k not in META_KEYS}


class ImageProvider(ResourceProvider):
    serialize_as_secret_always = False
    builder_module = ""  # e.g. "goldsmith_provider.builders.qemu.builder"
    metadata_fields = METADATA_FIELDS  # spec fields that update in place; a builder may add its own

    def __init__(self) -> None:
        super().__init__()

    @property
    def builder(self):
        return importlib.import_module(self.builder_module)

    def _parse(self, props: dict[str, Any]):
        base_dir = Path(props.get("base_dir") or ".")
        spec, problems = self.builder.prepare(spec_props(props), base_dir)
        if spec is not None and not problems:
            from ..vault.refs import reference_problems

            problems = reference_problems(spec)
        return spec, problems, base_dir

    def _identify(self, spec: Any, base_dir: Path, props: dict[str, Any]):
        """The spec's identity; a provider whose identity depends on lookups made at check time
        (stored in the inputs under ``resolved``) overrides this."""
        return self.builder.identify(spec, base_dir)

    def _log(self, spec: Any, props: dict[str, Any]) -> BuildLog:
        from ..engine.paths import cache_root

        masker = Masker(secret_values(spec))
        path = cache_root() / "logs" / spec.name / f"{props.get('fingerprint', 'unknown')[:12]}.log"
        return BuildLog(spec.name, path, masker=masker)

    # -- the ResourceProvider methods ------------------------------------------------------------

    def check(self, olds: dict[str, Any], news: dict[str, Any]) -> CheckResult:
        inputs = dict(news)
        if contains_unknown(spec_props(news)):
            # An input comes from a resource that is itself changing: the identity is known only at apply.
            inputs.update(fingerprint=UNKNOWN, input_digests=UNKNOWN, rebuild_reasons=UNKNOWN)
            return CheckResult(inputs, [])
        spec, problems, base_dir = self._parse(news)
        if problems:
            return CheckResult(inputs, [CheckFailure(p.path, p.message) for p in problems])
        try:
            ident = self._identify(spec, base_dir, news)
        except (OSError, GoldsmithError) as exc:
            return CheckResult(inputs, [CheckFailure("", f"cannot fingerprint the inputs: {exc}")])
        from ..builders.common.identity import describe_changes

        old_digests = olds.get("input_digests") if isinstance(olds.get("input_digests"), dict) else None
        inputs.update(fingerprint=ident.fingerprint, input_digests=ident.digests)
        inputs.pop("rebuild_reasons", None)
        if old_digests is not None and olds.get("fingerprint") != ident.fingerprint:
            # Only when there are old inputs to compare with: the engine re-checks a replacement with none.
            inputs["rebuild_reasons"] = describe_changes(old_digests, ident.digests) or ["builder version changed"]
        return CheckResult(inputs, [])

    def replacing(self, olds: dict[str, Any], news: dict[str, Any]) -> list[str]:
        """The properties whose change replaces the image (a builder may widen or narrow this)."""
        replaces = [k for k in ("fingerprint", "name") if olds.get(k) != news.get(k)]
        if (olds.get("output") or {}).get("directory") != (news.get("output") or {}).get("directory"):
            replaces.append("output")
        return replaces

    def diff(self, _id: str, olds: dict[str, Any], news: dict[str, Any]) -> DiffResult:
        name = news.get("name", olds.get("name"))
        if is_unknown(news.get("fingerprint")):
            pending = ", ".join(unknown_paths(spec_props(news))[:5]) or "an input"
            print(f"[{name}] rebuild: {pending} not known until its producer (a parent image being rebuilt) "
                  f"is updated", file=sys.stderr)
            return DiffResult(changes=True, replaces=["fingerprint"], delete_before_replace=False)
        replaces = self.replacing(olds, news)
        if replaces:
            reasons = (news.get("rebuild_reasons") or []) if "fingerprint" in replaces else []
            reasons = reasons or [f"{k} changed" for k in replaces if k != "fingerprint"] or ["spec changed"]
            print(f"[{name}] rebuild ({', '.join(replaces)} changed): {'; '.join(reasons)}", file=sys.stderr)
            return DiffResult(changes=True, replaces=replaces, delete_before_replace=False)
        changed = [k for k in self.metadata_fields if olds.get(k) != news.get(k)]
        return DiffResult(changes=bool(changed), replaces=[])

    def create(self, props: dict[str, Any]) -> CreateResult:
        spec, problems, base_dir = self._parse(props)
        if problems:
            raise ImageBuildError("invalid image spec:\n" + "\n".join(f"  - {p}" for p in problems))
        ident = self._identify(spec, base_dir, props)
        fleet = Fleet.from_props(props.get("fleet"))
        started = time.time()
        checks = [lambda: fleet.failure_since(started)] if fleet is not None else []
        with self._log(spec, {**props, "fingerprint": ident.fingerprint}) as log, cancel.scope(*checks):
            try:
                results = self.builder.build(spec, ident, base_dir=base_dir, log=log)
            except GoldsmithError as exc:
                text = log.masker.mask(f"{spec.name}: {exc}")
                if fleet is not None and not _cancelled(exc):
                    fleet.mark_failed(text)  # a fail-fast fleet's other builds stop now
                raise ImageBuildError(f"{text}\n(full log: {log.path})") from None
            results["build_log"] = str(log.path)
        return CreateResult(results["image_id"], self._outputs(props, spec, ident, results))

    def read(self, id_: str, props: dict[str, Any]) -> ReadResult:
        fresh = self.builder.read(props)
        if fresh is None:
            print(f"[{props.get('name')}] refresh: image {id_} is gone or damaged", file=sys.stderr)
            return ReadResult(None, {})
        return ReadResult(id_, fresh)

    def update(self, _id: str, olds: dict[str, Any], news: dict[str, Any]) -> UpdateResult:
        spec, problems, base_dir = self._parse(news)
        if problems:
            raise ImageBuildError("invalid image spec:\n" + "\n".join(f"  - {p}" for p in problems))
        fresh = self.builder.update_metadata(olds, spec)
        outs = dict(olds)
        outs.update(fresh or {})  # what changed outside the spec (e.g. the AMI ids after a new copy region)
        outs.update({k: news.get(k) for k in self.metadata_fields if k in news})
        outs["base_dir"] = news.get("base_dir")
        return UpdateResult(outs)

    def delete(self, _id: str, props: dict[str, Any]) -> None:
        from ..engine.log import BuildLog

        keep = (props.get("retention") or {}).get("keep_previous", 0)
        self.builder.delete(props, keep_previous=int(keep or 0), log=BuildLog(props.get("name", "image")))

    # -- helpers ----------------------------------------------------------------------------------

    @staticmethod
    def _outputs(props: dict[str, Any], spec: Any, ident: Any, results: dict[str, Any]) -> dict[str, Any]:
        """Outputs = the inputs (secret values redacted) + identity + what the build produced.

        Echoing the inputs lets `pulumi preview --diff` compare like with like; secret fields are
        replaced by a mask so their values never reach the state's outputs."""
        outs = redact_secrets(spec_props(props), spec)
        outs["base_dir"] = props.get("base_dir")
        outs["fingerprint"] = ident.fingerprint
        outs["input_digests"] = ident.digests
        outs.update(results)
        return outs


def _cancelled(exc: BaseException) -> bool:
    while exc is not None:
        if isinstance(exc, cancel.BuildCancelled):
            return True
        exc = exc.__cause__  # type: ignore[assignment]
    return False


def redact_secrets(props: dict[str, Any], spec: Any) -> dict[str, Any]:
    """A deep copy of ``props`` with the value of every secret field (per the spec's settings table) masked."""
    import copy
    import dataclasses
    import re

    from ..engine.log import MASK
    from ..engine.schema import walk_fields

    out = copy.deepcopy(props)
    for path, f, value in walk_fields(spec):
        if not f.metadata.get("secret") or not value:
            continue
        node: Any = out
        parts = re.findall(r"[^.\[\]]+|\[\d+\]", path)
        for part in parts[:-1]:
            node = node[int(part[1:-1])] if part.startswith("[") else node.get(part)
            if node is None:
                break
        else:
            last = parts[-1]
            if isinstance(value, dict) and isinstance(node.get(last), dict):  # references (not secret) stay
                node[last] = {k: node[last].get(k) if dataclasses.is_dataclass(v) else MASK for k, v in value.items()}
            elif dataclasses.is_dataclass(value):
                continue  # a reference (e.g. a Vault path and key) is not secret
            elif isinstance(node, dict) and last in node:
                node[last] = MASK
    return out
