"""The registry's HTTP API (distribution v2 / OCI), for what the engine API cannot do: tell whether a pushed
manifest still exists, list a repository's tags, and delete a manifest by digest.

Credentials come from the spec, else from the docker config (``$DOCKER_CONFIG/config.json``, credential
helpers included, read with the docker SDK's own resolver), else none. Basic and Bearer-token challenges are
both answered. Loopback registries (127.0.0.0/8, localhost, ::1) speak plain http, as the engine assumes.
"""

from __future__ import annotations

import base64
import ipaddress
import json
import re
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass

from ...engine.errors import GoldsmithError
from .config import registry_host

MANIFEST_TYPES = ", ".join([
    "application/vnd.docker.distribution.manifest.v2+json",
    "application/vnd.docker.distribution.manifest.list.v2+json",
    "application/vnd.oci.image.manifest.v1+json",
    "application/vnd.oci.image.index.v1+json",
])
TIMEOUT_S = 30


@dataclass(frozen=True)
class Credentials:
    username: str
    password: str

    def auth_config(self) -> dict[str, str]:
        """What the docker SDK's push/pull take."""
        return {"username": self.username, "password": self.password}


class RegistryError(GoldsmithError):
    """The registry refused or failed a request."""


def is_loopback(host: str) -> bool:
    name = host.rsplit(":", 1)[0].strip("[]") if not host.startswith("[") else host[1:].split("]")[0]
    if name == "localhost":
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


def resolve_credentials(host: str, username: str = "", password: str = "") -> Credentials | None:
    """The spec's credentials, else the docker config's entry for ``host``, else None (anonymous)."""
    if username:
        return Credentials(username, password)
    from docker import auth  # lazy: the docker SDK

    entry = auth.resolve_authconfig(auth.load_config(), host) or {}
    user = entry.get("username") or entry.get("Username") or ""
    secret = entry.get("password") or entry.get("Password") or entry.get("IdentityToken") or ""
    return Credentials(user, secret) if user or secret else None


def split_repository(repository: str) -> tuple[str, str]:
    """'127.0.0.1:5000/team/app' -> ('127.0.0.1:5000', 'team/app')."""
    host = registry_host(repository)
    if host is None:
        raise RegistryError(f"{repository!r} names no registry host")
    return host, repository[len(host) + 1:]


class RegistryClient:
    def __init__(self, host: str, credentials: Credentials | None = None, *, insecure: bool = False) -> None:
        self.host = host
        self.credentials = credentials
        self.base = f"{'http' if insecure or is_loopback(host) else 'https'}://{host}"
        handlers = [urllib.request.ProxyHandler({})] if is_loopback(host) else []
        self._opener = urllib.request.build_opener(*handlers)
        self._token: str | None = None

    # -- the few calls goldsmith needs ------------------------------------------------------------------

    def manifest_digest(self, name: str, reference: str) -> str | None:
        """The digest a tag (or digest) resolves to, None if the registry has no such manifest."""
        status, headers, _ = self._request("HEAD", f"/v2/{name}/manifests/{reference}", accept=MANIFEST_TYPES,
                                           ok=(200, 404))
        if status != 200:
            return None
        return headers.get("Docker-Content-Digest") or (reference if reference.startswith("sha256:") else None)

    def tags(self, name: str) -> list[str]:
        tags: list[str] = []
        path: str | None = f"/v2/{name}/tags/list?n=1000"
        while path:
            status, headers, body = self._request("GET", path, ok=(200, 404))
            if status == 404:
                return tags
            tags += json.loads(body or b"{}").get("tags") or []
            link = re.match(r'<([^>]+)>;\s*rel="next"', headers.get("Link", ""))
            path = link.group(1) if link else None
        return tags

    def delete_manifest(self, name: str, digest: str) -> bool:
        """DELETE by digest (deletes every tag of it in ``name``); False if it was already gone."""
        status, _, _ = self._request("DELETE", f"/v2/{name}/manifests/{digest}", accept=MANIFEST_TYPES,
                                     ok=(202, 200, 404, 405))
        if status == 405:
            raise RegistryError(f"{self.host} refuses to delete manifests (405)",
                                hint="run the registry with storage.delete.enabled=true "
                                     "(REGISTRY_STORAGE_DELETE_ENABLED=true)")
        return status != 404

    # -- plumbing ------------------------------------------------------------------------------------------

    def _request(self, method: str, path: str, *, accept: str | None = None,
                 ok: tuple[int, ...] = (200,)) -> tuple[int, dict[str, str], bytes]:
        for attempt in range(2):
            headers = {"Accept": accept} if accept else {}
            if self._token:
                headers["Authorization"] = self._token
            request = urllib.request.Request(self.base + path, method=method, headers=headers)
            try:
                with self._opener.open(request, timeout=TIMEOUT_S) as resp:
                    return resp.status, dict(resp.headers), resp.read()
            except urllib.error.HTTPError as exc:
                body = exc.read()
                if exc.code == 401 and attempt == 0 and self._authorize(exc.headers.get("WWW-Authenticate", "")):
                    continue
                if exc.code in ok:
                    return exc.code, dict(exc.headers), body
                raise RegistryError(f"{method} {self.base}{path}: HTTP {exc.code} {_error_text(body)}",
                                    hint="check the registry credentials" if exc.code in (401, 403) else None) from None
            except (urllib.error.URLError, OSError) as exc:
                raise RegistryError(f"{method} {self.base}{path}: {getattr(exc, 'reason', exc)}",
                                    hint="is the registry running and reachable?") from None
        raise RegistryError(f"{method} {self.base}{path}: HTTP 401 (credentials refused)", hint="check the registry credentials")

    def _authorize(self, challenge: str) -> bool:
        """Answer a Basic or Bearer challenge; False when there is nothing (more) to try."""
        scheme, _, params = challenge.partition(" ")
        creds = self.credentials
        if scheme.lower() == "basic":
            if creds is None or self._token:
                return False
            self._token = "Basic " + base64.b64encode(f"{creds.username}:{creds.password}".encode()).decode()
            return True
        if scheme.lower() == "bearer":
            fields = dict(re.findall(r'(\w+)="([^"]*)"', params))
            query = {k: v for k, v in fields.items() if k in ("service", "scope")}
            url = fields.get("realm", "") + ("?" + urllib.parse.urlencode(query) if query else "")
            headers = {}
            if creds is not None:
                headers["Authorization"] = "Basic " + base64.b64encode(f"{creds.username}:{creds.password}".encode()).decode()
            try:
                with self._opener.open(urllib.request.Request(url, headers=headers), timeout=TIMEOUT_S) as resp:
                    doc = json.loads(resp.read())
            except (urllib.error.URLError, OSError, ValueError) as exc:
                raise RegistryError(f"token request to {url} failed: {exc}", hint="check the registry credentials") from None
            token = doc.get("token") or doc.get("access_token")
            if not token:
                return False
            self._token = f"Bearer {token}"
            return True
        return False


def _error_text(body: bytes) -> str:
    try:
        errors = json.loads(body).get("errors") or []
        return "; ".join(f"{e.get('code')}: {e.get('message')}" for e in errors)
    except (ValueError, AttributeError):
        return body[:200].decode(errors="replace")
