"""The Docker spec: `check` reports every problem with its property path, before any side effect; the
fingerprint follows the content (files, scripts, image config, source), never the place (tags, registry,
credentials, engine address)."""

import copy

import pytest

from goldsmith_provider.builders.docker import builder
from goldsmith_provider.builders.docker.config import registry_host
from goldsmith_provider.builders.docker.steps import split_reference
from goldsmith_provider.dynamic.docker import DockerImageProvider

GOOD = {
    "name": "app",
    "source": {"type": "image", "ref": "debian:bookworm"},
    "provisioners": [{"type": "shell", "inline": ["true"]}],
}
DIGEST = "sha256:" + "a" * 64

ACCEPT = [
    lambda p: None,
    lambda p: p.update(source={"type": "image", "ref": f"127.0.0.1:5000/team/base@{DIGEST}"}),
    lambda p: p.update(source={"type": "image", "ref": DIGEST, "pull": "never"}),
    lambda p: p.update(source={"type": "image", "ref": "localhost/base:1.0", "pull": "always"}),
    lambda p: p.update(source={"type": "rootfs", "path": "rootfs.tar"}),
    lambda p: p.update(source={"type": "debootstrap", "suite": "trixie", "include": ["ca-certificates"]}),
    lambda p: p.update(config={"cmd": ["nginx", "-g", "daemon off;"], "entrypoint": None, "env": {"A_B": "1"},
                               "workdir": "/srv", "user": "1000:1000", "expose": ["80", "53/udp"],
                               "labels": {"org.opencontainers.image.title": "app"}}),
    lambda p: p.update(config={"entrypoint": ["/entry"], "cmd": []}),
    lambda p: p.update(repository="127.0.0.1:5000/team/app", tags=["v1", "latest"],
                       registry={"username": "u", "password": "p"}),
    lambda p: p.update(repository="registry.example.com:443/a/b", registry={}),
    lambda p: p.update(network_mode="host", docker_host="unix:///tmp/x/docker.sock"),
    lambda p: p.update(provisioners=[{"type": "updates", "reboot": "always"}, {"type": "packages", "install": ["jq"]},
                                     {"type": "file", "source": "rootfs.tar", "destination": "/x"}]),
]

# (mutation, expected property path, a fragment of the reason)
REJECT = [
    (lambda p: p.pop("name"), "name", "is required"),
    (lambda p: p.update(name="Bad Name!"), "name", "must be 1-63 characters"),
    (lambda p: p.update(nmae="x"), "nmae", "did you mean 'name'"),
    (lambda p: p.pop("source"), "source", "is required"),
    (lambda p: p.update(source={"type": "oci"}), "source.type", "must be one of"),
    (lambda p: p.update(source={"type": "imgae", "ref": "x"}), "source.type", "did you mean 'image'"),
    (lambda p: p.update(source={"type": "image"}), "source.ref", "is required"),
    (lambda p: p.update(source={"type": "image", "ref": "Debian:Bookworm"}), "source.ref", "is not an image reference"),
    (lambda p: p.update(source={"type": "image", "ref": "debian@sha256:12"}), "source.ref", "is not an image reference"),
    (lambda p: p.update(source={"type": "image", "ref": "debian", "pull": "sometimes"}), "source.pull", "must be one of"),
    (lambda p: p.update(source={"type": "rootfs"}), "source.path", "is required"),
    (lambda p: p.update(source={"type": "rootfs", "path": "missing.tar"}), "source.path", "file not found"),
    (lambda p: p.update(source={"type": "debootstrap", "mirror": "nowhere"}), "source.mirror", "unsupported URL scheme"),
    (lambda p: p.update(source={"type": "debootstrap", "mirror": "file:///srv/mirror"}), "source.mirror", "http(s)"),
    (lambda p: p.update(source={"type": "debootstrap", "suite": "Bookworm"}), "source.suite", "not a Debian suite"),
    (lambda p: p.update(source={"type": "debootstrap", "variant": "fakechroot"}), "source.variant", "must be one of"),
    (lambda p: p.update(source={"type": "debootstrap", "include": ["-x"]}), "source.include[0]", "not a Debian package"),
    (lambda p: p.update(provisioners=[{"type": "shel", "inline": ["x"]}]), "provisioners[0].type", "did you mean 'shell'"),
    (lambda p: p.update(provisioners=[{"type": "shell"}]), "provisioners[0]", "needs `inline` commands or `scripts`"),
    (lambda p: p.update(provisioners=[{"type": "shell", "scripts": ["nope.sh"]}]), "provisioners[0].scripts[0]", "file not found"),
    (lambda p: p.update(provisioners=[{"type": "file", "source": "rootfs.tar", "destination": "rel"}]), "provisioners[0].destination", "absolute path"),
    (lambda p: p.update(provisioners=[{"type": "updates", "reboot": "sometimes"}]), "provisioners[0].reboot", "must be one of"),
    (lambda p: p.update(config={"cmd": "nginx"}), "config.cmd", "must be a list"),
    (lambda p: p.update(config={"cmd": []}), "config.cmd", "needs an `entrypoint`"),
    (lambda p: p.update(config={"entrypoint": [1]}), "config.entrypoint[0]", "must be a string"),
    (lambda p: p.update(config={"env": {"BAD-NAME": "1"}}), "config.env.BAD-NAME", "not a valid environment variable"),
    (lambda p: p.update(config={"env": {"A": 1}}), "config.env.A", "must be a string"),
    (lambda p: p.update(config={"workdir": "srv"}), "config.workdir", "absolute path"),
    (lambda p: p.update(config={"user": "a b"}), "config.user", "must be 'user'"),
    (lambda p: p.update(config={"expose": ["http"]}), "config.expose[0]", "must be a port"),
    (lambda p: p.update(config={"expose": ["70000"]}), "config.expose[0]", "must be a port"),
    (lambda p: p.update(config={"expose": ["80/icmp"]}), "config.expose[0]", "must be a port"),
    (lambda p: p.update(config={"labels": {"goldsmith.fingerprint": "x"}}), "config.labels.goldsmith.fingerprint", "set by goldsmith"),
    (lambda p: p.update(config={"cmdd": ["x"]}), "config.cmdd", "did you mean 'cmd'"),
    (lambda p: p.update(repository="Team/App"), "repository", "is not a repository name"),
    (lambda p: p.update(repository="team/app:v1"), "repository", "is not a repository name"),
    (lambda p: p.update(repository="team/app", registry={}), "repository", "must start with the registry host"),
    (lambda p: p.update(tags=[]), "tags", "needs at least one tag"),
    (lambda p: p.update(tags=["v1", "v1"]), "tags", "lists a tag twice"),
    (lambda p: p.update(tags=["-bad"]), "tags[0]", "is not a tag"),
    (lambda p: p.update(tags="latest"), "tags", "must be a list"),
    (lambda p: p.update(repository="127.0.0.1:5000/a", registry={"username": "u"}), "registry", "set both"),
    (lambda p: p.update(repository="127.0.0.1:5000/a", registry={"password": 5}), "registry.password", "must be a string"),
    (lambda p: p.update(repository="127.0.0.1:5000/a", registry={"insecure": "yes"}), "registry.insecure", "must be a boolean"),
    (lambda p: p.update(network_mode="bad mode"), "network_mode", "must be"),
    (lambda p: p.update(docker_host="/var/run/docker.sock"), "docker_host", "unix://"),
    (lambda p: p.update(generalize="no"), "generalize", "must be a boolean"),
]


@pytest.fixture
def project(tmp_path):
    (tmp_path / "rootfs.tar").write_bytes(b"not really a tarball")
    return tmp_path


def check(project, props, olds=None):
    return DockerImageProvider().check(olds or {}, dict(props, base_dir=str(project)))


@pytest.mark.parametrize("mutate", ACCEPT)
def test_check_accepts(project, mutate):
    props = copy.deepcopy(GOOD)
    mutate(props)
    result = check(project, props)
    assert result.failures == [], [(f.property, f.reason) for f in result.failures]
    assert len(result.inputs["fingerprint"]) == 64


@pytest.mark.parametrize("mutate,path,reason", REJECT, ids=[r[1] + ":" + r[2][:20] for r in REJECT])
def test_check_rejects_with_property_path(project, mutate, path, reason):
    props = copy.deepcopy(GOOD)
    mutate(props)
    result = check(project, props)
    found = [(f.property, f.reason) for f in result.failures]
    assert any(p == path and reason in r for p, r in found), found
    assert "fingerprint" not in result.inputs  # nothing computed from a bad spec


def test_check_reports_every_problem_at_once(project):
    props = {"name": "X", "source": {"type": "rootfs", "path": "nope.tar"},
             "provisioners": [{"type": "shell"}, {"type": "file", "source": "also-missing", "destination": "rel"}],
             "config": {"expose": ["x"], "workdir": "rel"}, "bogus": 1}
    failures = {f.property for f in check(project, props).failures}
    assert {"name", "source.path", "provisioners[0]", "provisioners[1].source", "provisioners[1].destination",
            "config.expose[0]", "config.workdir", "bogus"} <= failures


def fingerprint(project, props):
    return check(project, props).inputs["fingerprint"]


CONTENT_CHANGES = [
    lambda p: p.update(source={"type": "image", "ref": "debian:trixie"}),
    lambda p: p.update(source={"type": "image", "ref": f"debian@{DIGEST}"}),
    lambda p: p.update(source={"type": "rootfs", "path": "rootfs.tar"}),
    lambda p: p.update(source={"type": "debootstrap"}),
    lambda p: p["provisioners"][0].update(inline=["false"]),
    lambda p: p["provisioners"][0].update(env={"A": "1"}),
    lambda p: p["provisioners"].append({"type": "packages", "install": ["jq"]}),
    lambda p: p.update(config={"cmd": ["/bin/bash"]}),
    lambda p: p.update(config={"env": {"MODE": "prod"}}),
    lambda p: p.update(config={"expose": ["8080"]}),
    lambda p: p.update(config={"user": "nobody"}),
    lambda p: p.update(config={"labels": {"team": "a"}}),
    lambda p: p.update(generalize=False),
]

PLACE_CHANGES = [
    lambda p: p.update(name="other"),
    lambda p: p.update(repository="127.0.0.1:5000/x/y", registry={"username": "u", "password": "p"}),
    lambda p: p.update(repository="127.0.0.1:5000/x/y", registry={"username": "u", "password": "other-secret"}),
    lambda p: p.update(tags=["v2"]),
    lambda p: p.update(docker_host="tcp://127.0.0.1:2375", network_mode="none"),
    lambda p: p.update(labels={"a": "b"}, description="d", keep_on_error=True),
    lambda p: p["provisioners"][0].update(secret_env={"TOKEN": "s3cret"}, timeout_s=5, name="label"),
    lambda p: p.update(source={"type": "image", "ref": "debian:bookworm", "pull": "always"}),
]


@pytest.mark.parametrize("mutate", CONTENT_CHANGES)
def test_fingerprint_follows_the_content(project, mutate):
    props = copy.deepcopy(GOOD)
    mutate(props)
    assert fingerprint(project, props) != fingerprint(project, GOOD)


@pytest.mark.parametrize("mutate", PLACE_CHANGES)
def test_fingerprint_ignores_place_secrets_and_metadata(project, mutate):
    props = copy.deepcopy(GOOD)
    mutate(props)
    assert fingerprint(project, props) == fingerprint(project, GOOD)


def test_fingerprint_follows_rootfs_and_script_content_not_path(project):
    (project / "provision.sh").write_text("echo v1\n")
    props = dict(copy.deepcopy(GOOD), source={"type": "rootfs", "path": "rootfs.tar"},
                 provisioners=[{"type": "shell", "scripts": ["provision.sh"]}])
    first = check(project, props).inputs
    (project / "rootfs.tar").write_bytes(b"another rootfs")
    second = check(project, props, olds=first).inputs
    assert second["fingerprint"] != first["fingerprint"]
    assert any(r.startswith("source") for r in second["rebuild_reasons"]), second["rebuild_reasons"]
    (project / "provision.sh").write_text("echo v2\n")
    third = check(project, props, olds=second).inputs
    assert "provisioners[0].scripts[0] changed" in " ".join(third["rebuild_reasons"])
    moved = project / "moved"
    moved.mkdir()
    for name in ("rootfs.tar", "provision.sh"):
        (moved / name).write_bytes((project / name).read_bytes())
    assert check(moved, props).inputs["fingerprint"] == third["fingerprint"]


def test_secrets_stay_out_of_the_inputs_identity(project):
    props = dict(copy.deepcopy(GOOD), repository="127.0.0.1:5000/a/b", registry={"username": "u", "password": "hunter2-secret"})
    props["provisioners"][0]["secret_env"] = {"TOKEN": "tok-secret"}
    inputs = check(project, props).inputs
    text = repr({k: inputs.get(k) for k in ("fingerprint", "input_digests", "rebuild_reasons")})
    assert "hunter2-secret" not in text and "tok-secret" not in text


def diff(olds, news):
    return DockerImageProvider().diff("id", olds, news)


def test_diff_replaces_on_content_or_repository_and_retags_in_place(project):
    olds = check(project, GOOD).inputs
    olds = dict(olds, repository="goldsmith/app", refs=["goldsmith/app:latest"])  # as the outputs say
    assert diff(olds, dict(olds)).changes is False
    news = check(project, dict(GOOD, tags=["v2"])).inputs
    retag = diff(olds, news)
    assert retag.changes is True and retag.replaces == []
    moved = check(project, dict(GOOD, repository="127.0.0.1:5000/a/b")).inputs
    assert diff(olds, moved).replaces == ["repository"]
    elsewhere = check(project, dict(GOOD, docker_host="tcp://127.0.0.1:2375")).inputs
    assert diff(olds, elsewhere).replaces == ["docker_host"]  # the image lives on the engine
    pushed = check(project, dict(GOOD, repository="goldsmith/app", registry=None)).inputs
    assert diff(olds, pushed).replaces == []
    content = copy.deepcopy(GOOD)
    content["provisioners"][0]["inline"] = ["false"]
    assert "fingerprint" in diff(olds, check(project, content).inputs).replaces
    relabel = diff(olds, dict(olds, labels={"a": "b"}))
    assert relabel.changes is True and relabel.replaces == []


def test_references_and_registry_hosts():
    assert split_reference("debian") == ("debian", None)
    assert split_reference("debian:bookworm") == ("debian", "bookworm")
    assert split_reference("127.0.0.1:5000/a/b:v1") == ("127.0.0.1:5000/a/b", "v1")
    assert split_reference(f"127.0.0.1:5000/a/b@{DIGEST}") == ("127.0.0.1:5000/a/b", DIGEST)
    assert registry_host("127.0.0.1:5000/a/b") == "127.0.0.1:5000"
    assert registry_host("localhost/a") == "localhost"
    assert registry_host("registry.example.com/a") == "registry.example.com"
    assert registry_host("team/app") is None and registry_host("app") is None


def test_prepare_has_no_side_effects_and_needs_no_engine(project, monkeypatch):
    monkeypatch.setenv("DOCKER_HOST", "unix:///nonexistent/docker.sock")
    spec, problems = builder.prepare(dict(GOOD), project)
    assert problems == [] and spec.refs == ["goldsmith/app:latest"]
    assert len(builder.identify(spec, project).fingerprint) == 64
