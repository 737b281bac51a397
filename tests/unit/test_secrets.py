"""Secrets in the spec: Vault references (shape checked at check time, identity by reference, never by
value), Pulumi secret values (never identity), the secret file option, the outputs' redaction and the
order of the secret steps in every builder."""

import copy

import pytest

from goldsmith_provider.builders.aws import builder as aws_builder
from goldsmith_provider.builders.docker import builder as docker_builder
from goldsmith_provider.builders.qemu import builder as qemu_builder
from goldsmith_provider.dynamic.base import redact_secrets
from goldsmith_provider.dynamic.docker import DockerImageProvider
from goldsmith_provider.engine import schema
from goldsmith_provider.engine.log import MASK, Masker
from goldsmith_provider.engine.secretstore import SecretStore
from goldsmith_provider.vault.refs import VaultSecret, reference_problems

REF = {"type": "vault", "path": "app/db", "key": "password"}
GOOD = {
    "name": "app",
    "source": {"type": "image", "ref": "debian:bookworm"},
    "vault": {"address": "https://vault.example.com:8200", "token": "hvs.tok"},
    "provisioners": [
        {"type": "file", "secret": REF, "destination": "/run/secrets/db", "mode": "0400"},
        {"type": "shell", "inline": ["true"], "secret_env": {"DB": REF, "TOKEN": "pulumi-secret"}},
    ],
}

ACCEPT = [
    lambda p: None,
    lambda p: p["provisioners"][1]["secret_env"].update(X={**REF, "mount": "team/kv", "version": 3}),
    lambda p: p["provisioners"][0].update(secret="a literal secret from pulumi config"),
    lambda p: p.update(vault={"role_id": "r", "secret_id": "s", "approle_mount": "ci", "namespace": "team-a",
                              "address": "http://127.0.0.1:8200", "mount": "kv", "tls_verify": False}),
]

REJECT = [
    (lambda p: p["provisioners"][1]["secret_env"].update(DB={**REF, "path": "/app/db"}), "provisioners[1].secret_env.DB.path", "must be a secret path"),
    (lambda p: p["provisioners"][1]["secret_env"].update(DB={**REF, "path": "app//db"}), "provisioners[1].secret_env.DB.path", "must be a secret path"),
    (lambda p: p["provisioners"][1]["secret_env"].update(DB={**REF, "path": "app/../db"}), "provisioners[1].secret_env.DB.path", "must be a secret path"),
    (lambda p: p["provisioners"][1]["secret_env"].update(DB={**REF, "path": ""}), "provisioners[1].secret_env.DB.path", "must be a secret path"),
    (lambda p: p["provisioners"][1]["secret_env"].update(DB={**REF, "key": ""}), "provisioners[1].secret_env.DB.key", "must be a key"),
    (lambda p: p["provisioners"][1]["secret_env"].update(DB={**REF, "version": -1}), "provisioners[1].secret_env.DB.version", "at least 0"),
    (lambda p: p["provisioners"][1]["secret_env"].update(DB={**REF, "mount": "a b"}), "provisioners[1].secret_env.DB.mount", "is not a mount"),
    (lambda p: p["provisioners"][1]["secret_env"].update(DB={**REF, "pth": "x"}), "provisioners[1].secret_env.DB.pth", "did you mean 'path'"),
    (lambda p: p["provisioners"][1]["secret_env"].update(DB={"type": "vualt", "path": "a", "key": "b"}), "provisioners[1].secret_env.DB.type", "did you mean 'vault'"),
    (lambda p: p["provisioners"][1]["secret_env"].update(DB={"path": "a"}), "provisioners[1].secret_env.DB.type", "must be one of 'vault'"),
    (lambda p: p["provisioners"][1]["secret_env"].update(DB=42), "provisioners[1].secret_env.DB", "must be one of: a string, an object"),
    (lambda p: p["provisioners"][1]["secret_env"].update({"1BAD": "x"}), "provisioners[1].secret_env.1BAD", "not a valid environment variable"),
    (lambda p: p["provisioners"][0].update(source="x"), "provisioners[0]", "set exactly one of"),
    (lambda p: p["provisioners"][0].update(secret=""), "provisioners[0].secret", "is empty"),
    (lambda p: p["provisioners"][0].update(destination="/run/secrets/"), "provisioners[0].destination", "not a directory"),
    (lambda p: p.update(vault={"address": "vault:8200"}), "vault.address", "must be an http(s) URL"),
    (lambda p: p.update(vault={"address": "http://v:1", "role_id": "r"}), "vault", "set both `role_id` and `secret_id`"),
    (lambda p: p.update(vault={"address": "http://v:1", "token": "t", "role_id": "r", "secret_id": "s"}), "vault", "either `token`"),
    (lambda p: p.update(vault={"address": "http://v:1", "attempts": 0}), "vault.attempts", "at least 1"),
    (lambda p: p.pop("vault"), "provisioners[0].secret", "needs a Vault: set `vault.address`"),
]


def check(props, monkeypatch, env=None):
    monkeypatch.delenv("VAULT_ADDR", raising=False)
    for k, v in (env or {}).items():
        monkeypatch.setenv(k, v)
    return DockerImageProvider().check({}, {**props, "base_dir": "/nonexistent"})


@pytest.mark.parametrize("mutate", ACCEPT)
def test_accepted(mutate, monkeypatch):
    props = copy.deepcopy(GOOD)
    mutate(props)
    result = check(props, monkeypatch)
    assert result.failures == [], [(f.property, f.reason) for f in result.failures]


@pytest.mark.parametrize("mutate,path,fragment", REJECT)
def test_rejected_with_the_property_path(mutate, path, fragment, monkeypatch):
    props = copy.deepcopy(GOOD)
    mutate(props)
    failures = [(f.property, f.reason) for f in check(props, monkeypatch).failures]
    assert any(p == path and fragment in r for p, r in failures), failures


def test_vault_addr_from_the_environment_satisfies_the_references(monkeypatch):
    props = copy.deepcopy(GOOD)
    props.pop("vault")
    assert check(props, monkeypatch, env={"VAULT_ADDR": "http://127.0.0.1:8200"}).failures == []
    spec, _ = docker_builder.prepare(props, "/nonexistent")
    problems = reference_problems(spec, env={})
    assert [p.path for p in problems] == ["provisioners[0].secret", "provisioners[1].secret_env.DB"]


def fingerprint(props):
    spec, problems = docker_builder.prepare(props, "/nonexistent")
    assert problems == []
    return docker_builder.identify(spec, "/nonexistent")


def test_references_are_identity_values_are_not():
    base = fingerprint(GOOD)
    same = copy.deepcopy(GOOD)
    same["provisioners"][1]["secret_env"]["TOKEN"] = "another-pulumi-secret"
    same["provisioners"][0]["mode"] = "0400"
    same["vault"] = {"address": "https://other-vault:8200", "role_id": "r", "secret_id": "s"}
    assert fingerprint(same).fingerprint == base.fingerprint  # values, the Vault address and auth: not identity
    for mutate in (lambda p: p["provisioners"][1]["secret_env"]["DB"].update(key="user"),
                   lambda p: p["provisioners"][1]["secret_env"]["DB"].update(version=2),
                   lambda p: p["provisioners"][1]["secret_env"]["DB"].update(mount="kv2"),
                   lambda p: p["provisioners"][0]["secret"].update(path="app/other"),
                   lambda p: p["provisioners"][1]["secret_env"].pop("DB")):
        changed = copy.deepcopy(GOOD)
        mutate(changed)
        assert fingerprint(changed).fingerprint != base.fingerprint


def test_the_identity_document_holds_references_never_values():
    spec, _ = docker_builder.prepare(GOOD, "/nonexistent")
    doc = schema.identity(spec, lambda path, value: value)
    text = repr(doc)
    assert "pulumi-secret" not in text and "hvs.tok" not in text and "vault" not in doc
    assert doc["provisioners"][1]["secret_env"] == {"DB": {"type": "vault", "path": "app/db", "key": "password",
                                                           "mount": "", "version": 0}}
    assert doc["provisioners"][0]["secret"]["path"] == "app/db"


def test_a_spec_with_only_literal_secrets_keeps_its_fingerprint():
    """Secret fields holding no reference stay out of the identity document, as before references existed."""
    props = {"name": "app", "source": {"type": "image", "ref": "debian:bookworm"},
             "provisioners": [{"type": "shell", "inline": ["true"], "secret_env": {"TOKEN": "a"}}]}
    spec, _ = docker_builder.prepare(props, "/nonexistent")
    assert "secret_env" not in schema.identity(spec, lambda path, value: value)["provisioners"][0]


def test_outputs_redact_values_and_keep_references():
    spec, _ = docker_builder.prepare(GOOD, "/nonexistent")
    out = redact_secrets(copy.deepcopy(GOOD), spec)
    assert out["provisioners"][1]["secret_env"] == {"DB": REF, "TOKEN": MASK}
    assert out["provisioners"][0]["secret"] == REF
    assert out["vault"]["token"] == MASK and out["vault"]["address"] == GOOD["vault"]["address"]


def test_the_log_masker_gets_the_literal_secrets_and_the_vault_credentials():
    spec, _ = docker_builder.prepare({**GOOD, "vault": {**GOOD["vault"]}}, "/nonexistent")
    values = set(schema.secret_values(spec))
    assert {"pulumi-secret", "hvs.tok"} <= values and "app/db" not in values


def test_secret_store_masks_revealed_values_and_resolves_references():
    masker = Masker()
    seen = []
    store = SecretStore(masker, lambda ref, path: seen.append(path) or "resolved-value")
    assert store.env({"A": "literal-x", "B": VaultSecret(path="a", key="b")}, "provisioners[1].secret_env") == {
        "A": "literal-x", "B": "resolved-value"}
    assert seen == ["provisioners[1].secret_env.B"]
    assert masker.mask("literal-x resolved-value") == f"{MASK} {MASK}"
    with pytest.raises(Exception, match=r"^provisioners\[0\]\.secret: this build cannot resolve"):
        SecretStore().reveal(VaultSecret(path="a", key="b"), "provisioners[0].secret")


SPECS = {
    "docker": lambda: copy.deepcopy(GOOD),
    "qemu": lambda: {"name": "app", "source": {"type": "debootstrap"}, "provisioners": GOOD["provisioners"],
                     "vault": GOOD["vault"]},
    "aws": lambda: {"name": "base", "source": {"type": "ami", "id": "ami-04681a1dbd79675a5"},
                    "provisioners": GOOD["provisioners"], "communicator": {"cidrs": ["203.0.113.7/32"]},
                    "aws": {"region": "us-east-1"}, "vault": GOOD["vault"]},
}


@pytest.mark.parametrize("builder,first", [(docker_builder, "connect-engine"), (qemu_builder, "resolve-source"),
                                           (aws_builder, "check-source")])
def test_every_builder_resolves_secrets_first_and_removes_secret_files_before_the_snapshot(builder, first, tmp_path):
    spec, problems = builder.prepare(SPECS[builder.BUILDER](), tmp_path)
    assert problems == []
    names = [s.name for s in builder.build_steps(spec)]
    assert names[:2] == ["resolve-secrets", first]
    last_provision = max(i for i, n in enumerate(names) if n.startswith("provision["))
    assert names[last_provision + 1] == "remove-secret-files"
    snapshot = min(i for i, n in enumerate(names) if n in ("generalize", "commit", "export-image", "create-image"))
    assert names.index("remove-secret-files") < snapshot
