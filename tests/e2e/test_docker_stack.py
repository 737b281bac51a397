"""The Docker image lifecycle through the real `pulumi` CLI on a file backend, with a real dockerd and registry:
preview, up, a no-op up, tags changed in place, a replace on a changed script, destroy."""

import time

import pytest

from goldsmith_provider.builders.docker import engine as labels

from .conftest import HERE

pytestmark = pytest.mark.e2e

TOKEN = "e2e-token-value-42"


def build_containers_created(client, since: float) -> list[str]:
    events = client.events(since=int(since), until=int(time.time()) + 1, decode=True,
                           filters={"type": "container", "event": "create"})
    names = [ev.get("Actor", {}).get("Attributes", {}).get("name", "") for ev in events]
    return [n for n in names if n.startswith(labels.CONTAINER_PREFIX)]


def run(client, image: str) -> str:
    return client.containers.run(image, remove=True, network_mode="none").decode().strip()


def test_preview_up_noop_retag_replace_destroy(pulumi_project, docker_engine, docker_registry, debian_rootfs):
    client = docker_engine.client()
    p = pulumi_project(HERE / "docker_project", name="goldsmith-e2e-docker")
    p.run("config", "set", "registry", docker_registry.address)
    p.run("config", "set", "registryUser", docker_registry.username)
    p.run("config", "set", "--secret", "registryPassword", docker_registry.password)
    p.run("config", "set", "--secret", "token", TOKEN)
    p.run("config", "set", "rootfs", str(debian_rootfs))
    name = "goldsmith/e2e-app"

    # preview: shows the create and why, builds nothing.
    since = time.time()
    preview = p.run("preview", "--diff")
    assert "goldsmith:DockerImage: (create)" in preview.text and "fingerprint" in preview.text
    assert build_containers_created(client, since) == []

    # up: builds, pushes; the build output is streamed with the image name; the secrets stay secret.
    up = p.run("up", "--yes", "--skip-preview")
    out = p.outputs()
    assert "[e2e-app]" in up.text and "provisioning v1 (token: ********)" in up.text and TOKEN not in up.text
    digest = out["image_ref"].split("@")[1]
    assert docker_registry.has_manifest(name, digest) and docker_registry.tags(name) == ["latest"]
    assert run(client, out["image_ref"]) == "v1"
    assert out["package_count"] > 50 and out["adopted"] is False
    exported = p.run("stack", "export").stdout  # secrets encrypted, as the state file holds them
    assert '"registry"' in exported
    assert docker_registry.password not in exported and TOKEN not in exported

    # a second up changes nothing and creates no container.
    since = time.time()
    again = p.run("up", "--yes")
    assert "unchanged" in again.text
    assert build_containers_created(client, since) == []
    assert p.outputs()["image_id"] == out["image_id"]

    # a new tag is an in-place update: tagged and pushed, nothing rebuilt.
    p.run("config", "set", "--path", "tags[0]", "latest")
    p.run("config", "set", "--path", "tags[1]", "v1")
    since = time.time()
    retag = p.run("up", "--yes", "--skip-preview")
    assert "updated" in retag.text and "replaced" not in retag.text
    assert build_containers_created(client, since) == []
    assert sorted(docker_registry.tags(name)) == ["latest", "v1"]
    assert p.outputs()["image_id"] == out["image_id"]

    # edit the provisioning script: preview shows a replace and which input changed.
    script = p.dir / "scripts" / "provision.sh"
    script.write_text(script.read_text().replace("v1", "v2"))
    since = time.time()
    preview = p.run("preview", "--diff")
    assert "+-" in preview.text and "replace" in preview.text
    assert "provisioners[1].scripts[0]" in preview.text
    assert build_containers_created(client, since) == []

    # up rebuilds; the old image is deleted (locally and in the registry) after the new one exists.
    p.run("up", "--yes", "--skip-preview")
    out2 = p.outputs()
    digest2 = out2["image_ref"].split("@")[1]
    assert out2["fingerprint"] != out["fingerprint"] and out2["image_id"] != out["image_id"]
    assert run(client, out2["image_ref"]) == "v2"
    assert docker_registry.has_manifest(name, digest2) and not docker_registry.has_manifest(name, digest)
    assert client.images.list(filters={"label": f"{labels.FINGERPRINT}={out['fingerprint']}"}) == []

    # destroy removes the image and its manifests.
    p.run("destroy", "--yes", "--skip-preview")
    assert client.images.list(filters={"label": f"{labels.FINGERPRINT}={out2['fingerprint']}"}) == []
    assert not docker_registry.has_manifest(name, digest2) and docker_registry.tags(name) == []
    assert client.containers.list(all=True, filters={"label": labels.BUILD_ID}) == []
