"""File provisioner: lay local files, directories or checksummed artifacts over the image."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import ClassVar

from ..artifacts.fetch import checksum_problem, fetch, local_url_problem, url_problem
from ..engine.schema import Context, setting
from ..vault.refs import VaultSecret
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
    secret: str | VaultSecret | None = setting(
        None, doc="Instead of `source`/`url`: the file's content is a secret, a value (e.g. a Pulumi secret) or a "
                  "Vault reference (`VaultSecret(path=..., key=...)`, read at build time). The file exists for the "
                  "provisioners after this one and is overwritten and removed before the snapshot: never in the "
                  "image, the state or the fingerprint (a reference is). Mode 0600 unless `mode` is set.", secret=True)
    mode: str = setting("", doc="Octal mode such as '0644' (files) or '0755' (a directory).")
    owner: str = setting("", doc="Owner user in the guest.")
    group: str = setting("", doc="Owner group in the guest.")

    def validate(self, ctx: Context, path: str) -> None:
        if sum((bool(self.source), bool(self.url), self.secret is not None)) != 1:
            ctx.error(path, "set exactly one of `source` (a local path), `url` (an artifact) or `secret` (secret content)")
        if self.secret == "":
            ctx.error(f"{path}.secret", "is empty")
        if self.secret is not None and self.destination.endswith("/"):
            ctx.error(f"{path}.destination", "a secret is one file: give its path, not a directory")
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
        return f"file: {self.source or self.url or self._secret_label()} -> {self.destination}"

    def _secret_label(self) -> str:
        return f"secret from Vault {self.secret.describe()}" if isinstance(self.secret, VaultSecret) else "secret"

    def provision(self, comm, pctx: ProvisionContext) -> None:
        if self.secret is not None:
            data = pctx.secrets.reveal(self.secret, f"{pctx.path}.secret").encode()
            pctx.secrets.track_file(self.destination)  # before it exists: a failed install is removed too
            pctx.log.info(f"file: {self._secret_label()} -> {self.destination} (removed before the snapshot)")
            comm.put_secret_file(data, self.destination, log=pctx.log, mode=self.mode or "0600",
                                 owner=self.owner or None, group=self.group or None)
            return
        local = fetch(self.url, self.checksum, pctx.cache_root, log=pctx.log) if self.url else pctx.resolve(self.source)
        pctx.log.info(f"file: {self.source or self.url} -> {self.destination}")
        comm.upload_tree(local, self.destination, log=pctx.log, mode=self.mode or None,
                         owner=self.owner or None, group=self.group or None)
