"""Reading Vault KV v2 values with hvac, at build time, in the provider process only.

Each value is registered with the build's masker the moment it is read, held in memory for the build
and never returned in outputs or written anywhere. Transient failures (Vault unreachable, 429, 5xx,
sealed or standby) are retried with backoff; everything else fails at once with the property path of
the reference that needed the value.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any, Mapping

from ..engine.errors import GoldsmithError
from ..engine.log import BuildLog
from .refs import VaultSecret, VaultSettings


class VaultError(GoldsmithError):
    """A Vault lookup failed; the message starts with the property path of the reference."""


def _hvac() -> Any:
    try:
        import hvac
        import hvac.exceptions  # noqa: F401
    except ImportError as exc:  # pragma: no cover - depends on the installation
        raise VaultError("Vault references need the hvac package", hint="pip install 'goldsmith[vault]'") from exc
    return hvac


def _transient(exc: BaseException) -> bool:
    hvac = _hvac()
    import requests

    errors = hvac.exceptions
    if isinstance(exc, (requests.exceptions.ConnectionError, requests.exceptions.Timeout)):
        return True
    if isinstance(exc, (errors.VaultDown, errors.InternalServerError, errors.BadGateway, errors.RateLimitExceeded)):
        return True
    return isinstance(exc, errors.UnexpectedError) and "504" in str(exc)


class VaultReader:
    """One build's Vault session: logs in once (lazily), reads each secret once."""

    def __init__(self, settings: VaultSettings | None, log: BuildLog, *, env: Mapping[str, str] | None = None,
                 sleep=time.sleep) -> None:
        self.settings = settings or VaultSettings()
        self.log = log
        self.env = dict(os.environ if env is None else env)
        self.sleep = sleep
        self._client: Any = None
        self._secrets: dict[tuple[str, str, int], dict[str, Any]] = {}

    @property
    def address(self) -> str:
        return self.settings.resolved_address(self.env)

    def _retrying(self, what: str, call):
        attempts = self.settings.attempts
        for attempt in range(1, attempts + 1):
            try:
                return call()
            except Exception as exc:  # noqa: BLE001 - sorted into transient or not below
                if attempt == attempts or not _transient(exc):
                    raise
                delay = min(0.5 * 2 ** (attempt - 1), 8.0)
                self.log.info(f"vault: {what}: {type(exc).__name__} (attempt {attempt}/{attempts}); retrying in {delay:.1f}s")
                self.sleep(delay)

    def client(self, prop: str) -> Any:
        if self._client is not None:
            return self._client
        hvac = _hvac()
        s = self.settings
        if not self.address:
            raise VaultError(f"{prop}: no Vault address: set `vault.address` or VAULT_ADDR")
        verify: bool | str = (str(Path(s.ca_cert).expanduser()) if s.ca_cert else True) if s.tls_verify else False
        namespace = s.namespace or self.env.get("VAULT_NAMESPACE") or None
        client = hvac.Client(url=self.address, namespace=namespace, verify=verify, timeout=s.timeout_s)
        if s.role_id:
            try:
                auth = self._retrying("AppRole login", lambda: client.auth.approle.login(
                    role_id=s.role_id, secret_id=s.secret_id, mount_point=s.approle_mount))
            except Exception as exc:  # noqa: BLE001
                raise self._error(prop, f"AppRole login at {self.address} (auth/{s.approle_mount})", exc) from None
            token = (auth or {}).get("auth", {}).get("client_token", "")
            self.log.masker.add(token)
            client.token = token
            how = f"AppRole ({s.approle_mount})"
        else:
            token, how = s.token, "token from the spec"
            if not token and self.env.get("VAULT_TOKEN"):
                token, how = self.env["VAULT_TOKEN"], "VAULT_TOKEN"
            token_file = Path(self.env.get("HOME", "~")).expanduser() / ".vault-token"
            if not token and token_file.is_file():
                token, how = token_file.read_text().strip(), "~/.vault-token"
            if not token:
                raise VaultError(f"{prop}: no Vault token: set `vault.token`, `vault.role_id` + `vault.secret_id`, "
                                 "or VAULT_TOKEN")
            self.log.masker.add(token)
            client.token = token
        self.log.info(f"vault: {self.address}{' namespace ' + namespace if namespace else ''}, auth: {how}")
        self._client = client
        return client

    def read(self, ref: VaultSecret, prop: str) -> str:
        """The value of ``ref`` (a string; other JSON values as compact JSON), masked from now on."""
        mount = ref.mount or self.settings.mount
        where = ref.describe(self.settings.mount)
        cache_key = (mount, ref.path, ref.version)
        if cache_key not in self._secrets:
            client = self.client(prop)
            try:
                response = self._retrying(f"read {mount}/{ref.path}", lambda: client.secrets.kv.v2.read_secret_version(
                    path=ref.path, mount_point=mount, version=ref.version or None, raise_on_deleted_version=True))
            except Exception as exc:  # noqa: BLE001
                raise self._error(prop, f"reading {where}", exc) from None
            data = ((response or {}).get("data") or {}).get("data")
            if not isinstance(data, dict):
                raise VaultError(f"{prop}: {mount}/data/{ref.path} is not a KV v2 secret (no data.data in the response)",
                                 hint=f"is {mount!r} a KV version 2 mount?")
            for value in data.values():
                self.log.masker.add(value if isinstance(value, str) else json.dumps(value, separators=(",", ":")))
            version = ((response.get("data") or {}).get("metadata") or {}).get("version")
            self.log.info(f"vault: read {mount}/{ref.path}" + (f" (version {version})" if version else ""))
            self._secrets[cache_key] = data
        data = self._secrets[cache_key]
        if ref.key not in data:
            keys = ", ".join(sorted(data)) or "none"
            raise VaultError(f"{prop}: the secret {mount}/{ref.path} has no key {ref.key!r} (its keys: {keys})")
        value = data[ref.key]
        return value if isinstance(value, str) else json.dumps(value, separators=(",", ":"))

    def _error(self, prop: str, what: str, exc: BaseException) -> VaultError:
        errors = _hvac().exceptions
        import requests

        if isinstance(exc, errors.InvalidPath):
            return VaultError(f"{prop}: {what}: not found at {self.address} (no such secret, version or mount)")
        if isinstance(exc, (errors.Forbidden, errors.Unauthorized)):
            return VaultError(f"{prop}: {what}: permission denied by {self.address}",
                              hint="check the token's (or role's) policy allows `read` on the secret's data path")
        if isinstance(exc, errors.InvalidRequest):
            return VaultError(f"{prop}: {what}: Vault refused the request: {exc}")
        if isinstance(exc, (requests.exceptions.ConnectionError, requests.exceptions.Timeout)):
            return VaultError(f"{prop}: {what}: cannot reach Vault at {self.address} after "
                              f"{self.settings.attempts} attempt(s): {type(exc).__name__}",
                              hint="is `vault.address` (or VAULT_ADDR) right and Vault up?")
        return VaultError(f"{prop}: {what}: {type(exc).__name__} from {self.address}: {exc}")
