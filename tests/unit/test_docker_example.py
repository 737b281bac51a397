"""examples/docker-image under pulumi.runtime.set_mocks: the golden image feeds pulumi_docker.Container by its
pinned digest, and the VM image takes the very same provisioner list. (The docker provider plugin cannot be
downloaded here, so this is the way its part is tested; the DockerImage itself is tested for real in
tests/integration and tests/e2e.)"""

import runpy
import sys
from pathlib import Path

import pulumi
import pytest

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "docker-image"
DIGEST = "sha256:" + "d" * 64
IMAGE_TYPE = "pulumi-python:dynamic/goldsmith:DockerImage"
CONTAINER_TYPE = "docker:index/container:Container"


class Mocks(pulumi.runtime.Mocks):
    def __init__(self) -> None:
        self.resources: dict[str, list[dict]] = {}  # type -> the inputs of each resource of that type

    def new_resource(self, args: pulumi.runtime.MockResourceArgs):
        self.resources.setdefault(args.typ, []).append(dict(args.inputs))
        outputs = dict(args.inputs)
        if args.typ == IMAGE_TYPE:
            repository = args.inputs.get("repository") or "goldsmith/web"
            outputs.update(image_id="sha256:" + "e" * 64, image_ref=f"{repository}@{DIGEST}",
                           repo_digests={f"{repository}:latest": f"{repository}@{DIGEST}"},
                           fingerprint="f" * 64, package_count=120)
        return f"{args.name}-id", outputs

    def call(self, args: pulumi.runtime.MockCallArgs):
        return {}


def run_example(config: dict[str, str]) -> tuple[Mocks, dict]:
    mocks = Mocks()
    pulumi.runtime.set_mocks(mocks, project="goldsmith-docker-image", stack="dev", preview=False)
    pulumi.runtime.set_all_config({f"goldsmith-docker-image:{k}": v for k, v in config.items()})
    sys.path.insert(0, str(EXAMPLE))
    try:
        sys.modules.pop("template", None)
        namespace = runpy.run_path(str(EXAMPLE / "__main__.py"), run_name="example")
    finally:
        sys.path.remove(str(EXAMPLE))
    return mocks, namespace


def resolved(output: pulumi.Output):
    """The value of an Output under mocks (the mock monitor resolves everything on the loop)."""
    box: dict = {}

    @pulumi.runtime.test
    def wait():
        return output.apply(lambda v: box.setdefault("value", v))

    wait()
    return box["value"]


@pytest.fixture(autouse=True)
def restore_pulumi_settings():
    yield
    pulumi.runtime.set_all_config({})


def test_container_runs_the_pushed_image_by_digest():
    mocks, ns = run_example({"registry": "127.0.0.1:5000", "registryUser": "ci", "registryPassword": "pw"})
    assert resolved(ns["web"].image) == f"127.0.0.1:5000/goldsmith/web@{DIGEST}"
    [image], [container] = mocks.resources[IMAGE_TYPE], mocks.resources[CONTAINER_TYPE]
    assert image["repository"] == "127.0.0.1:5000/goldsmith/web" and image["tags"] == ["latest", "dev"]
    assert [p["type"] for p in image["provisioners"]] == ["file", "file", "packages", "shell", "updates"]
    assert image["source"]["type"] == "debootstrap"
    assert image["config"]["cmd"][:2] == ["busybox", "httpd"] and image["config"]["expose"] == ["8080"]
    assert container["image"] == f"127.0.0.1:5000/goldsmith/web@{DIGEST}"
    assert {k: container["ports"][0][k] for k in ("internal", "external", "ip")} == {"internal": 8080, "external": 8080, "ip": "127.0.0.1"}
    assert container["labels"][0]["value"] == "f" * 64


def test_local_image_and_the_same_template_for_a_vm():
    mocks, ns = run_example({"vm": "true", "baseImage": "debian:bookworm-slim"})
    assert resolved(ns["web"].image) == f"goldsmith/web@{DIGEST}"  # also waits for every registration
    [image], [vm] = mocks.resources[IMAGE_TYPE], mocks.resources["pulumi-python:dynamic/goldsmith:QemuImage"]
    assert image["source"] == {"type": "image", "ref": "debian:bookworm-slim", "pull": "missing"}
    assert image.get("registry") is None and image["repository"] == ""  # local only: no push
    assert vm["provisioners"] == image["provisioners"]  # one template, two platforms
