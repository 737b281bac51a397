"""Vault settings tables: the connection (spec level) and a reference to one key of a KV v2 secret.

A reference is identity (its mount, path, key and version are in the fingerprint); the value it
points to is not: it is read at build time, in the provider process only, and never stored. No hvac
here: parsing and fingerprinting a spec must not need a Vault.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from typing import Any, ClassVar, Mapping

from ..engine.errors import Problem
from ..engine.schema import Context, references, setting

MOUNT_RE = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]*(?:/[A-Za-z0-9_][A-Za-z0-9_.-]*)*$")
SEGMENT_RE = re.compile(r"^[^\s/?#%]+$")


def _url_problem(value: str) -> str | None:
    if value and not re.match(r"^https?://[^/\s]+(?:/.*)?$", value):
        return f"must be an http(s) URL such as 'https://vault.example.com:8200', got {value!r}"
    return None


@dataclass(frozen=True)
class VaultSettings:
    """How the provider reaches Vault (read at build time only). Every field falls back to the
    environment the Vault CLI reads: VAULT_ADDR, VAULT_TOKEN (or ~/.vault-token), VAULT_NAMESPACE."""

    address: str = setting("", doc="Vault address ('https://vault.example.com:8200'); default $VAULT_ADDR.",
                           identity=False, check=_url_problem)
    token: str = setting("", doc="Vault token; default: AppRole login when `role_id` is set, else $VAULT_TOKEN, "
                                 "else ~/.vault-token.", secret=True)
    role_id: str = setting("", doc="AppRole role id (with `secret_id`): log in instead of using a token.", secret=True)
    secret_id: str = setting("", doc="AppRole secret id.", secret=True)
    approle_mount: str = setting("approle", doc="Mount of the AppRole auth method.", identity=False)
    namespace: str = setting("", doc="Vault Enterprise namespace; default $VAULT_NAMESPACE.", identity=False)
    mount: str = setting("secret", doc="KV v2 mount used by references that name none.", identity=False)
    ca_cert: str = setting("", doc="CA bundle (PEM) to verify Vault's TLS certificate; default the system's.",
                           identity=False)
    tls_verify: bool = setting(True, doc="Verify Vault's TLS certificate.", identity=False)
    timeout_s: int = setting(10, doc="Time limit of one request.", minimum=1, maximum=600, identity=False)
    attempts: int = setting(4, doc="Tries per request on transient errors (unreachable, 429, 5xx), with backoff.",
                            minimum=1, maximum=20, identity=False)

    def validate(self, ctx: Context, path: str) -> None:
        if bool(self.role_id) != bool(self.secret_id):
            ctx.error(path, "set both `role_id` and `secret_id` (AppRole), or neither")
        if self.token and self.role_id:
            ctx.error(path, "set either `token` or `role_id` + `secret_id`, not both")
        for key in ("mount", "approle_mount"):
            if not MOUNT_RE.match(getattr(self, key)):
                ctx.error(f"{path}.{key}", f"is not a mount path such as 'secret': {getattr(self, key)!r}")

    def resolved_address(self, env: Mapping[str, str] = os.environ) -> str:
        return (self.address or env.get("VAULT_ADDR", "")).rstrip("/")


@dataclass(frozen=True)
class VaultSecret:
    """One key of a KV v2 secret, e.g. ``VaultSecret(path="app/db", key="password")``: usable wherever a
    secret value is (a shell provisioner's `secret_env`, a file provisioner's `secret`), like Packer's
    ``vault()`` template function."""

    TYPE: ClassVar[str] = "vault"

    path: str = setting(doc="Secret path under the mount, e.g. 'app/db' (the API path is <mount>/data/<path>).")
    key: str = setting(doc="Key in the secret's data, e.g. 'password'.")
    mount: str = setting("", doc="KV v2 mount; '' uses `vault.mount` (default 'secret').")
    version: int = setting(0, doc="Secret version; 0 reads the latest.", minimum=0)

    def validate(self, ctx: Context, path: str) -> None:
        segments = self.path.split("/")
        if not self.path or any(not SEGMENT_RE.match(s) or s in (".", "..") for s in segments):
            ctx.error(f"{path}.path", f"must be a secret path such as 'app/db' (no leading, trailing or double "
                                      f"'/', no spaces, '.', '..', '?', '#' or '%'), got {self.path!r}")
        if not self.key or any(c in self.key for c in "\n\r\t"):
            ctx.error(f"{path}.key", f"must be a key of the secret's data, got {self.key!r}")
        if self.mount and not MOUNT_RE.match(self.mount):
            ctx.error(f"{path}.mount", f"is not a mount path such as 'secret': {self.mount!r}")

    def describe(self, default_mount: str = "secret") -> str:
        """Where the value lives, for messages (never the value): 'secret/app/db#password (v2)'."""
        version = f" (v{self.version})" if self.version else ""
        return f"{self.mount or default_mount}/{self.path}#{self.key}{version}"


def reference_problems(spec: Any, env: Mapping[str, str] = os.environ) -> list[Problem]:
    """Check-time problems of a parsed spec's Vault references that the settings table alone cannot see:
    a reference needs a Vault address (``vault.address`` or $VAULT_ADDR)."""
    refs = references(spec, VaultSecret)
    if not refs:
        return []
    settings = getattr(spec, "vault", None) or VaultSettings()
    import importlib.util

    if importlib.util.find_spec("hvac") is None:
        return [Problem(refs[0][0], "Vault references need the hvac package where Pulumi runs: "
                                    "pip install 'goldsmith[vault]'")]
    if settings.resolved_address(env):
        return []
    return [Problem(path, f"a Vault reference ({ref.describe(settings.mount)}) needs a Vault: set `vault.address` "
                          "(or VAULT_ADDR where Pulumi runs)") for path, ref in refs]
