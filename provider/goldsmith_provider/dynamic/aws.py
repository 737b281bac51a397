"""Dynamic provider for AWS AMIs.

The one addition to the shared provider: the source AMI is looked up at check time (filters, SSM
parameter or id), stored in the inputs under ``resolved`` and made part of the fingerprint, so a
newer base AMI is a rebuild reason in `pulumi preview` and create builds from exactly the AMI
the preview showed.
"""

from __future__ import annotations

from typing import Any

from pulumi.dynamic import CheckFailure, CheckResult

from .base import ImageProvider, contains_unknown, spec_props

BUILDER_MODULE = "goldsmith_provider.builders.aws.builder"
METADATA_FIELDS = ("tags", "description", "distribution", "retention", "keep_on_error")


class AwsImageProvider(ImageProvider):
    builder_module = BUILDER_MODULE
    metadata_fields = METADATA_FIELDS

    def check(self, olds: dict[str, Any], news: dict[str, Any]) -> CheckResult:
        if contains_unknown(spec_props(news)):
            return super().check(olds, news)
        spec, problems, base_dir = self._parse(news)
        if problems:
            return super().check(olds, news)  # reports them
        resolved, problems = self.builder.resolve(spec, base_dir)
        if problems:
            return CheckResult(dict(news), [CheckFailure(p.path, p.message) for p in problems])
        result = super().check(olds, {**news, "resolved": resolved})
        old = (olds.get("resolved") or {}) if isinstance(olds.get("resolved"), dict) else {}
        reasons = result.inputs.get("rebuild_reasons")
        if isinstance(reasons, list) and old.get("source_ami_id") and old.get("source_ami_id") != resolved["source_ami_id"]:
            source = resolved["source"]
            why = (f"source AMI changed: {old['source_ami_id']} -> {resolved['source_ami_id']} "
                   f"({source.get('name') or '?'}, {source.get('creation_date') or '?'}; {source.get('found_by')})")
            result.inputs["rebuild_reasons"] = [why] + [r for r in reasons if not r.startswith("source ")]
        return result

    def _identify(self, spec: Any, base_dir, props: dict[str, Any]):
        resolved = props.get("resolved")
        return self.builder.identify(spec, base_dir, resolved if isinstance(resolved, dict) else None)
