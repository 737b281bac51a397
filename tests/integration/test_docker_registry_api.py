"""The registry API client against a local HTTP peer speaking the Bearer-token flow that hosted registries use
(the distribution registry in the other tests answers Basic challenges), and the docker config as the source
of credentials."""

import base64
import http.server
import json
import threading

import pytest

from goldsmith_provider.builders.docker.registry import RegistryClient, RegistryError, resolve_credentials

pytestmark = pytest.mark.integration

DIGEST = "sha256:" + "c" * 64


class TokenRegistry(http.server.BaseHTTPRequestHandler):
    """/token hands out a token for user:pass; /v2/... wants it; one manifest, deletable once."""

    manifests = {"app": {"v1": DIGEST}}
    log: list = []

    def log_message(self, *args):
        pass

    def _challenge(self):
        self.send_response(401)
        host = self.headers["Host"]
        self.send_header("WWW-Authenticate", f'Bearer realm="http://{host}/token",service="test",scope="repository:app:pull,push,delete"')
        self.end_headers()

    def _authorized(self) -> bool:
        return self.headers.get("Authorization") == "Bearer tok-123"

    def do_GET(self):
        self.log.append(("GET", self.path, self.headers.get("Authorization")))
        if self.path.startswith("/token"):
            if self.headers.get("Authorization") != "Basic " + base64.b64encode(b"ci:pw").decode():
                self.send_response(401)
                self.end_headers()
                return
            body = json.dumps({"token": "tok-123"}).encode()
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
            return
        if not self._authorized():
            return self._challenge()
        body = json.dumps({"name": "app", "tags": sorted(self.manifests["app"])}).encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_HEAD(self):
        self.log.append(("HEAD", self.path, self.headers.get("Authorization")))
        if not self._authorized():
            return self._challenge()
        ref = self.path.rsplit("/", 1)[1]
        digest = self.manifests["app"].get(ref) or (ref if ref in self.manifests["app"].values() else None)
        self.send_response(200 if digest else 404)
        if digest:
            self.send_header("Docker-Content-Digest", digest)
        self.end_headers()

    def do_DELETE(self):
        if not self._authorized():
            return self._challenge()
        ref = self.path.rsplit("/", 1)[1]
        gone = [t for t, d in self.manifests["app"].items() if d == ref]
        for t in gone:
            del self.manifests["app"][t]
        self.send_response(202 if gone else 404)
        self.end_headers()


@pytest.fixture
def token_registry():
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), TokenRegistry)
    TokenRegistry.manifests = {"app": {"v1": DIGEST}}
    TokenRegistry.log = []
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_bearer_token_flow(token_registry):
    registry = RegistryClient(token_registry, resolve_credentials(token_registry, "ci", "pw"))
    assert registry.manifest_digest("app", "v1") == DIGEST
    assert registry.manifest_digest("app", "v2") is None
    assert registry.tags("app") == ["v1"]
    assert registry.delete_manifest("app", DIGEST) is True
    assert registry.delete_manifest("app", DIGEST) is False  # already gone
    tokens = [auth for _, path, auth in TokenRegistry.log if path.startswith("/token")]
    assert len(tokens) == 1, "one token, reused for every later call"


def test_wrong_credentials_say_so(token_registry):
    registry = RegistryClient(token_registry, resolve_credentials(token_registry, "ci", "wrong"))
    with pytest.raises(RegistryError, match="token request"):
        registry.manifest_digest("app", "v1")
    anonymous = RegistryClient(token_registry, None)
    with pytest.raises(RegistryError) as info:
        anonymous.manifest_digest("app", "v1")
    assert "401" in str(info.value) or "credentials" in str(info.value)


def test_credentials_from_the_docker_config(tmp_path, monkeypatch, token_registry):
    (tmp_path / "config.json").write_text(json.dumps(
        {"auths": {token_registry: {"auth": base64.b64encode(b"ci:pw").decode()}}}))
    monkeypatch.setenv("DOCKER_CONFIG", str(tmp_path))
    creds = resolve_credentials(token_registry)
    assert (creds.username, creds.password) == ("ci", "pw")
    assert RegistryClient(token_registry, creds).manifest_digest("app", "v1") == DIGEST
    assert resolve_credentials("other.example:5000") is None
