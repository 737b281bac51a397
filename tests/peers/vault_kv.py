"""A local HashiCorp Vault peer: the KV v2 secrets engine, token and AppRole auth, and sys/health, over
HTTP on 127.0.0.1 with Vault's own wire shapes (so the real ``hvac`` client drives it unchanged).

No Vault binary can be built here (the module proxy refuses ``go install github.com/hashicorp/vault@v…``:
its go.mod has replace directives), so this is a faithful fake of the endpoints goldsmith uses:

- ``GET  /v1/sys/health`` -> 200 ``{"initialized": true, "sealed": false, "standby": false, ...}``
- ``POST /v1/auth/<mount>/login`` ``{"role_id", "secret_id"}`` -> ``{"auth": {"client_token": ...}}``,
  400 ``{"errors": ["invalid role or secret ID"]}``
- ``GET  /v1/<mount>/data/<path>[?version=N]`` -> ``{"data": {"data": {...}, "metadata": {"version": N, ...}}}``,
  404 ``{"errors": []}`` when there is no such secret or version, 404 with the metadata of a deleted version
- ``POST|PUT /v1/<mount>/data/<path>`` ``{"data": {...}}`` -> ``{"data": {"version": N, ...}}``
- ``DELETE /v1/<mount>/data/<path>`` -> 204 (soft-deletes the latest version)
- ``X-Vault-Token`` on everything but health and login: unknown token or a path outside its policy ->
  403 ``{"errors": ["permission denied"]}``; a path under no mount -> 404 ``no handler for route``.

``fail_next(n, status)`` makes the next n API requests answer ``status`` (transient-error tests);
``requests`` records (method, path, namespace) of every request; ``stop()``/``start()`` take it down and up
on the same port (unreachable-Vault tests).
"""

from __future__ import annotations

import http.server
import json
import secrets
import threading
import time
import uuid
from dataclasses import dataclass, field
from urllib.parse import parse_qs, urlsplit

import pytest

ROOT_TOKEN = "hvs.goldsmith-fake-root-token"


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S.000000000Z", time.gmtime())


@dataclass
class _Version:
    data: dict
    created_time: str = field(default_factory=_now)
    deletion_time: str = ""
    destroyed: bool = False

    def metadata(self, number: int) -> dict:
        return {"created_time": self.created_time, "custom_metadata": None, "deletion_time": self.deletion_time,
                "destroyed": self.destroyed, "version": number}


class _Handler(http.server.BaseHTTPRequestHandler):
    server: "_Server"
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):  # keep test output quiet
        pass

    def _send(self, status: int, body: dict | None) -> None:
        raw = b"" if body is None else json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(raw)))
        self.send_header("Cache-Control", "no-store")
        self.end_headers()
        self.wfile.write(raw)

    def _body(self) -> dict:
        length = int(self.headers.get("Content-Length") or 0)
        if not length:
            return {}
        try:
            return json.loads(self.rfile.read(length) or b"{}")
        except json.JSONDecodeError:
            return {"__invalid__": True}

    def _envelope(self, data=None, auth=None) -> dict:
        return {"request_id": str(uuid.uuid4()), "lease_id": "", "renewable": False, "lease_duration": 0,
                "data": data, "wrap_info": None, "warnings": None, "auth": auth, "mount_type": "kv"}

    def _handle(self, method: str) -> None:
        vault: VaultKv = self.server.vault
        url = urlsplit(self.path)
        path = url.path
        body = self._body() if method in ("POST", "PUT") else {}
        with vault.lock:
            vault.requests.append((method, path, self.headers.get("X-Vault-Namespace", "")))
            if path == "/v1/sys/health":
                return self._send(200, {"initialized": True, "sealed": False, "standby": False,
                                        "performance_standby": False, "replication_performance_mode": "disabled",
                                        "replication_dr_mode": "disabled", "server_time_utc": int(time.time()),
                                        "version": "1.15.6", "cluster_name": "vault-cluster-goldsmith-fake",
                                        "cluster_id": vault.cluster_id})
            if vault.failures:
                status = vault.failures.pop(0)
                return self._send(status, {"errors": [{503: "Vault is sealed", 429: "rate limit quota exceeded"}
                                                      .get(status, "internal error")]})
            if not path.startswith("/v1/"):
                return self._send(404, {"errors": []})
            route = path[len("/v1/"):]
            if route.startswith("auth/") and route.endswith("/login") and method in ("POST", "PUT"):
                mount = route[len("auth/"):-len("/login")]
                role = vault.approles.get(mount, {}).get(body.get("role_id", ""))
                if role is None or body.get("secret_id") != role["secret_id"]:
                    return self._send(400, {"errors": ["invalid role or secret ID"]})
                token = "hvs." + secrets.token_urlsafe(18)
                vault.tokens[token] = role["paths"]
                return self._send(200, self._envelope(auth={
                    "client_token": token, "accessor": secrets.token_urlsafe(12), "policies": ["default", mount],
                    "token_policies": ["default", mount], "metadata": {"role_name": role["name"]},
                    "lease_duration": 2764800, "renewable": True, "entity_id": str(uuid.uuid4()),
                    "token_type": "service", "orphan": True, "mfa_requirement": None, "num_uses": 0}))
            token = self.headers.get("X-Vault-Token", "")
            if token not in vault.tokens:
                return self._send(403, {"errors": ["permission denied"]})
            mount = next((m for m in sorted(vault.mounts, key=len, reverse=True) if route.startswith(m + "/")), None)
            if mount is None or not route[len(mount) + 1:].startswith("data/"):
                return self._send(404, {"errors": [f'no handler for route "{route}". route entry not found.']})
            secret_path = route[len(mount) + len("/data/"):]
            allowed = vault.tokens[token]
            if allowed is not None and not any(f"{mount}/{secret_path}".startswith(p) for p in allowed):
                return self._send(403, {"errors": ["permission denied"]})
            versions = vault.mounts[mount].setdefault(secret_path, []) if method in ("POST", "PUT") \
                else vault.mounts[mount].get(secret_path)
            if method == "GET":
                if not versions:
                    return self._send(404, {"errors": []})
                wanted = parse_qs(url.query).get("version", ["0"])[0]
                number = int(wanted) if wanted.isdigit() and int(wanted) > 0 else len(versions)
                if number > len(versions):
                    return self._send(404, {"errors": []})
                version = versions[number - 1]
                if version.deletion_time or version.destroyed:
                    return self._send(404, self._envelope(data={"data": None, "metadata": version.metadata(number)}))
                return self._send(200, self._envelope(data={"data": version.data, "metadata": version.metadata(number)}))
            if method in ("POST", "PUT"):
                if body.get("__invalid__") or not isinstance(body.get("data"), dict):
                    return self._send(400, {"errors": ["no data provided"]})
                versions.append(_Version(dict(body["data"])))
                return self._send(200, self._envelope(data=versions[-1].metadata(len(versions))))
            if method == "DELETE":
                if versions:
                    versions[-1].deletion_time = _now()
                return self._send(204, None)
            return self._send(405, {"errors": [f"unsupported operation {method}"]})

    def do_GET(self):
        self._handle("GET")

    def do_POST(self):
        self._handle("POST")

    def do_PUT(self):
        self._handle("PUT")

    def do_DELETE(self):
        self._handle("DELETE")


class _Server(http.server.ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    vault: "VaultKv"


class VaultKv:
    """The fake Vault; ``address`` is what VAULT_ADDR / ``vault.address`` take."""

    def __init__(self) -> None:
        self.lock = threading.RLock()
        self.cluster_id = str(uuid.uuid4())
        self.mounts: dict[str, dict[str, list[_Version]]] = {"secret": {}}
        self.tokens: dict[str, list[str] | None] = {ROOT_TOKEN: None}  # token -> allowed path prefixes (None: all)
        self.approles: dict[str, dict[str, dict]] = {}
        self.failures: list[int] = []
        self.requests: list[tuple[str, str, str]] = []
        self.port = 0
        self._httpd: _Server | None = None
        self._thread: threading.Thread | None = None

    @property
    def address(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    root_token = ROOT_TOKEN

    def start(self) -> "VaultKv":
        self._httpd = _Server(("127.0.0.1", self.port), _Handler)
        self._httpd.vault = self
        self.port = self._httpd.server_address[1]
        self._thread = threading.Thread(target=self._httpd.serve_forever, daemon=True, name="vault-kv")
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
            self._httpd = None

    # -- test set-up (the tests write secrets through hvac, as a user would) ------------------------------

    def enable_kv(self, mount: str) -> None:
        with self.lock:
            self.mounts.setdefault(mount, {})

    def add_token(self, token: str, paths: list[str] | None = None) -> str:
        with self.lock:
            self.tokens[token] = paths
        return token

    def add_approle(self, role_id: str, secret_id: str, *, mount: str = "approle", paths: list[str] | None = None,
                    name: str = "goldsmith") -> None:
        with self.lock:
            self.approles.setdefault(mount, {})[role_id] = {"secret_id": secret_id, "paths": paths, "name": name}

    def fail_next(self, count: int, status: int = 503) -> None:
        with self.lock:
            self.failures.extend([status] * count)

    def reads(self, secret_path: str, mount: str = "secret") -> int:
        with self.lock:
            return sum(1 for m, p, _ in self.requests if m == "GET" and p == f"/v1/{mount}/data/{secret_path}")

    def client(self, token: str = ROOT_TOKEN):
        import hvac

        return hvac.Client(url=self.address, token=token)


@pytest.fixture(scope="session")
def vault_kv():
    server = VaultKv().start()
    try:
        yield server
    finally:
        server.stop()
