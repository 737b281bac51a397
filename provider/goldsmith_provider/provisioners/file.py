"""File provisioner: lay local files, directories or checksummed artifacts over the image."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import ClassVar

from ..artifacts.fetch import checksum_problem, fetch, local_url_problem, url_problem
from ..engine.schema import Context, setting
from .base import ProvisionContext

MODE_RE = re.compile(r"^0?[0-7]{3,4}$")
NAME_RE = re.compile(r"^[a-z_][a-z0-9_.-]*\$?$|^[0-9]+$")


@dataclass(frozen=True)
class FileProvisioner:
    TYPE: ClassVar[str] = "file"

    destination: str = setting(doc="Absolute path in the guest. A directory source's contents land inside it.")
    source: str = setting("", doc="Local file or directory (relative to the project).", local_path=True)
    url: str = setting("", doc="Artifact URL (http, https, s3, file) instead of a local source; its checksum, not the URL, is its identity.", identity=False)
    checksum: str = setting("", doc="Required with `url`: 'sha256:<hex>'. The artifact's identity.")
    mode: str = setting("", doc="Octal mode such as '0644' (files) or '0755' (a directory).")
    owner: str = setting("", doc="Owner user in the guest.")
    group: str = setting("", doc="Owner group in the guest.")

    def validate(self, ctx: Context, path: str) -> None:
        if bool(self.source) == bool(self.url):
            ctx.error(path, "set exactly one of `source` (a local path) or `url` (an artifact)")
        if self.url:
            if problem := url_problem(self.url) or local_url_problem(self.url):
                ctx.error(f"{path}.url", problem)
            if not self.checksum:
                ctx.error(f"{path}.checksum", "is required with `url` (the artifact's identity)")
            elif problem := checksum_problem(self.checksum):
                ctx.error(f"{path}.checksum", problem)
        elif self.checksum:
            ctx.error(f"{path}.checksum", "only applies to `url` artifacts")
        if not self.destination.startswith("/"):
            ctx.error(f"{path}.destination", f"must be an absolute path in the guest, got {self.destination!r}")
        if self.mode and not MODE_RE.match(self.mode):
            ctx.error(f"{path}.mode", f"must be an octal mode such as '0644', got {self.mode!r}")
        for key in ("owner", "group"):
            value = getattr(self, key)
            if value and not NAME_RE.match(value):
                ctx.error(f"{path}.{key}", f"is not a valid user/group name: {value!r}")

    def describe(self) -> str:
        return f"file: {self.source or self.url} -> {self.destination}"

    def provision(self, comm, pctx: ProvisionContext) -> None:
        local = fetch(self.url, self.checksum, pctx.cache_root, log=pctx.log) if self.url else pctx.resolve(self.source)
        pctx.log.info(f"file: {self.source or self.url} -> {self.destination}")
        comm.upload_tree(local, self.destination, log=pctx.log, mode=self.mode or None,
                         owner=self.owner or None, group=self.group or None)
