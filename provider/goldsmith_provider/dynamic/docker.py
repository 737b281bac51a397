"""Dynamic provider for Docker/OCI container images.

The shared ImageProvider does check/create/read; what differs for containers is where an image *lives*: a
changed fingerprint, repository or engine replaces the image, while tags, registry settings, labels and
description change in place (new tags are pushed, dropped ones untagged). Replacing on a tag change would
have the old image's delete remove the very tags and manifests the new one had just taken over.
"""

from __future__ import annotations

from typing import Any

from pulumi.dynamic import UpdateResult

from ..engine.errors import GoldsmithError
from .base import ImageBuildError, ImageProvider

# Inputs echoed into the outputs: read, update and delete get only the outputs.
ECHOED = ("name", "base_dir", "labels", "description", "keep_on_error", "tags", "registry", "docker_host", "network_mode")
IN_PLACE = ("name", "labels", "description", "keep_on_error", "tags", "registry", "network_mode")


def repository_of(props: dict[str, Any]) -> str:
    return props.get("repository") or f"goldsmith/{props.get('name')}"


class DockerImageProvider(ImageProvider):
    builder_module = "goldsmith_provider.builders.docker.builder"

    metadata_fields = IN_PLACE  # the name is a label here: it changes in place

    def replacing(self, olds: dict[str, Any], news: dict[str, Any]) -> list[str]:
        return [k for k, old, new in (("fingerprint", olds.get("fingerprint"), news.get("fingerprint")),
                                      ("repository", repository_of(olds), repository_of(news)),
                                      ("docker_host", olds.get("docker_host") or "", news.get("docker_host") or ""))
                if old != new]

    def update(self, _id: str, olds: dict[str, Any], news: dict[str, Any]) -> UpdateResult:
        spec, problems, _base_dir = self._parse(news)
        if problems:
            raise ImageBuildError("invalid image spec:\n" + "\n".join(f"  - {p}" for p in problems))
        outs = dict(olds)
        if self.builder.needs_retag(olds, spec):
            with self._log(spec, olds) as log:
                try:
                    outs.update(self.builder.update_tags(olds, spec, log=log))
                except GoldsmithError as exc:
                    raise ImageBuildError(log.masker.mask(f"{spec.name}: {exc}\n(full log: {log.path})")) from None
        outs.update({k: news.get(k) for k in ECHOED})
        return UpdateResult(outs)

    def delete(self, _id: str, props: dict[str, Any]) -> None:
        from ..engine.log import BuildLog, Masker

        secret = (props.get("registry") or {}).get("password") or ""
        log = BuildLog(props.get("name", "image"), masker=Masker([secret]))
        try:
            self.builder.delete(props, log=log)
        except GoldsmithError as exc:
            raise ImageBuildError(log.masker.mask(f"{props.get('name')}: {exc}")) from None

    @staticmethod
    def _outputs(props: dict[str, Any], spec: Any, ident: Any, results: dict[str, Any], *_: Any) -> dict[str, Any]:
        """The echoed inputs (registry credentials included: the SDK marks them a secret output), the
        identity, and what the build produced."""
        outs = {k: props.get(k) for k in ECHOED}
        outs["fingerprint"] = ident.fingerprint
        outs["input_digests"] = ident.digests
        outs["rebuild_reasons"] = props.get("rebuild_reasons")
        outs.update(results)
        return outs
