"""The proof that secrets stay secret, through the real `pulumi` CLI, a real dockerd and registry, and a Vault
KV v2 peer: a Pulumi secret (`pulumi config set --secret`) and Vault values reach the provisioners (env and a
secret file) and are used there; then every place they could leak to is searched for each value, plain and
base64-encoded: the console output of preview and up, every build log file, `pulumi stack export`, the stack
outputs, and the produced image (`docker save`, every layer unpacked): zero hits."""

from __future__ import annotations

import base64
import gzip
import hashlib
import io
import json
import secrets
import tarfile
from pathlib import Path

import pytest

from goldsmith_provider.engine.paths import cache_root

from .conftest import HERE

pytestmark = pytest.mark.e2e

SECRET_SIG = "4dabf18193072939515e22adb298388d"  # Pulumi's marker of a secret value in state


def encodings(value: str) -> list[bytes]:
    """The value's bytes and its base64 at each of the three alignments it can have inside a longer
    base64 stream (the stable core of each)."""
    raw = value.encode()
    found = [raw, base64.b64encode(raw)]
    for pad in (1, 2):
        encoded = base64.b64encode(b"\0" * pad + raw)
        found.append(encoded[4:-4])  # drop the chars that mix in the padding bytes or the end
    return found


def hits(data: bytes, needles: dict[str, list[bytes]]) -> list[str]:
    return [name for name, forms in needles.items() if any(form in data for form in forms)]


def scan_archive(data: bytes, needles: dict[str, list[bytes]], where: str, found: list[str], names: list[str]) -> None:
    """Search an archive's bytes, then every member recursively (tars in tars, gzip layers)."""
    found += [f"{where}: {n}" for n in hits(data, needles)]
    if data[:2] == b"\x1f\x8b":
        scan_archive(gzip.decompress(data), needles, where + "(gunzip)", found, names)
        return
    try:
        tar = tarfile.open(fileobj=io.BytesIO(data))
    except tarfile.TarError:
        return
    with tar:
        for member in tar.getmembers():
            names.append(f"{where}/{member.name}")
            found += [f"{where}/{member.name} (name): {n}" for n in hits(member.name.encode(), needles)]
            if member.isfile():
                content = tar.extractfile(member).read()  # type: ignore[union-attr]
                scan_archive(content, needles, f"{where}/{member.name}", found, names)


def secret_paths(node, path: str = "") -> list[str]:
    """Property paths of the values Pulumi stores as secrets (encrypted) in a state document."""
    if isinstance(node, dict):
        if node.get(SECRET_SIG) == "1b47061264138c4ac30d75fd1eb44270":
            return [path]
        return [p for k, v in node.items() for p in secret_paths(v, f"{path}.{k}" if path else k)]
    if isinstance(node, list):
        return [p for i, v in enumerate(node) for p in secret_paths(v, f"{path}[{i}]")]
    return []


def test_secrets_reach_the_provisioners_and_leak_nowhere(pulumi_project, docker_engine, docker_registry,
                                                         debian_rootfs, vault_kv):
    client = docker_engine.client()
    api_token = "pulumi-secret-" + secrets.token_hex(12)
    db_password = "vault-db-" + secrets.token_hex(12)
    key_body = secrets.token_hex(24)
    tls_key = f"-----BEGIN TEST KEY-----\n{key_body}\n-----END TEST KEY-----\n"
    vault_token = vault_kv.add_token("hvs.e2e-" + secrets.token_hex(10), paths=["secret/e2e/"])
    vault_kv.client().secrets.kv.v2.create_or_update_secret(
        path="e2e/app", secret={"db_password": db_password, "tls_key": tls_key}, mount_point="secret")

    p = pulumi_project(HERE / "secrets_project", name="goldsmith-e2e-secrets")
    p.run("config", "set", "registry", docker_registry.address)
    p.run("config", "set", "registryUser", docker_registry.username)
    p.run("config", "set", "--secret", "registryPassword", docker_registry.password)
    p.run("config", "set", "--secret", "apiToken", api_token)
    p.run("config", "set", "vaultAddress", vault_kv.address)
    p.run("config", "set", "--secret", "vaultToken", vault_token)
    p.run("config", "set", "rootfs", str(debian_rootfs))
    needles = {name: encodings(value) for name, value in {
        "api token (pulumi secret)": api_token, "db password (vault, env)": db_password,
        "tls key (vault, file)": tls_key, "tls key body": key_body, "vault token": vault_token,
        "registry password": docker_registry.password}.items()}
    stored_nowhere = {k: v for k, v in needles.items() if k.startswith(("db password", "tls key"))}

    # preview reads no Vault value; up reads the secret once, for the file and the env.
    preview = p.run("preview", "--diff")
    assert vault_kv.reads("e2e/app") == 0
    up = p.run("up", "--yes", "--skip-preview")
    assert vault_kv.reads("e2e/app") == 1
    out = p.outputs()

    # the provisioners got every value: the image holds their hashes (and nothing else of them).
    receipt = client.containers.run(out["image_id"], remove=True, network_mode="none").decode()
    assert receipt.splitlines() == [
        f"api_token={hashlib.sha256(api_token.encode()).hexdigest()}",
        f"db_password={hashlib.sha256(db_password.encode()).hexdigest()}",
        f"tls_key={hashlib.sha256(tls_key.encode()).hexdigest()}",
        "tls_key_mode=400",
    ]
    # the echoed values are masked on the console; the secret file was removed before the commit.
    assert "[e2e-secrets] api token: ********" in up.text and "[e2e-secrets] db password: ********" in up.text
    assert "removed 1 secret file(s) before the snapshot: /etc/app/tls.key" in up.text

    # 1. the console of preview and up.
    for name, proc in (("preview", preview), ("up", up)):
        assert hits(proc.text.encode(), needles) == [], name

    # 2. every build log file of this image.
    logs = sorted((cache_root() / "logs" / "e2e-secrets").glob("*.log"))
    assert Path(out["build_log"]) in logs
    assert "api token: ********" in Path(out["build_log"]).read_text()
    for log in logs:
        assert hits(log.read_bytes(), needles) == [], log

    # 3. the state: encrypted secrets only, and the Vault values not even encrypted (never stored at all).
    exported = p.run("stack", "export").stdout
    assert hits(exported.encode(), needles) == []
    decrypted = p.run("stack", "export", "--show-secrets").stdout
    assert hits(decrypted.encode(), stored_nowhere) == []
    resource = next(r for r in json.loads(exported)["deployment"]["resources"] if r["type"].endswith("goldsmith:DockerImage"))
    assert "registry" in secret_paths(resource["outputs"])
    secret_inputs = secret_paths(resource["inputs"])  # the engine may encrypt a whole enclosing value
    for path in ("provisioners[1].secret_env.API_TOKEN", "vault.token", "registry.password"):
        assert any(path == s or path.startswith((s + ".", s + "[")) for s in secret_inputs), (path, secret_inputs)
    # a Vault reference is stored as what it is, a path and a key (no value).
    reference = json.loads(decrypted)["deployment"]["resources"]
    reference = next(r for r in reference if r["type"].endswith("goldsmith:DockerImage"))["inputs"]
    provisioners = reference["provisioners"]
    if isinstance(provisioners, dict) and SECRET_SIG in provisioners:  # --show-secrets: {sig, "plaintext": json}
        provisioners = json.loads(provisioners["plaintext"])
    assert provisioners[1]["secret_env"]["DB_PASSWORD"] == {
        "type": "vault", "path": "e2e/app", "key": "db_password", "mount": "", "version": 0}

    # 4. the stack outputs (the manifest of a container image is its config, scanned with the image below).
    assert hits(p.run("stack", "output", "--json").stdout.encode(), needles) == []
    assert hits(json.dumps(out).encode(), stored_nowhere) == []

    # 5. the image: `docker save`, every layer unpacked; no secret, no secret file, no secret env.
    image = client.images.get(out["image_id"])
    saved = b"".join(image.save(named=False))
    found: list[str] = []
    members: list[str] = []
    scan_archive(saved, needles, "image.tar", found, members)
    assert found == []
    assert any(m.endswith("etc/secret-receipt") for m in members)  # the layers really were unpacked
    assert not any(m.endswith(("etc/app/tls.key", ".wh.tls.key")) for m in members)
    env = image.attrs["Config"]["Env"] or []
    assert not any(e.startswith(("API_TOKEN=", "DB_PASSWORD=")) for e in env) and "APP_MODE=e2e" in env
    assert client.containers.run(out["image_id"], ["sh", "-c", "test ! -e /etc/app/tls.key && echo gone"],
                                 remove=True, network_mode="none").decode().strip() == "gone"

    # a new value in Vault (or in the Pulumi secret) is not a rebuild: values are not identity.
    vault_kv.client().secrets.kv.v2.create_or_update_secret(
        path="e2e/app", secret={"db_password": db_password + "-rotated", "tls_key": tls_key}, mount_point="secret")
    again = p.run("preview", "--diff")
    assert "replace" not in again.text and vault_kv.reads("e2e/app") == 1

    p.run("destroy", "--yes", "--skip-preview")
