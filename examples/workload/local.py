"""Two small local consumers, so the workload stack deploys something real without cloud providers:
a job run in a container of the golden Docker image, and a VM disk (a qcow2 overlay backed by the golden
qcow2, what libvirt or a `qemu-system` command line boots). Cloud consumers use pulumi-aws and
pulumi-docker in __main__.py."""

from __future__ import annotations

import os
import subprocess
from typing import Any

import pulumi
import pulumi.dynamic as dyn


class _ContainerProvider(dyn.ResourceProvider):
    def _client(self):
        import docker

        return docker.from_env()

    def create(self, props: dict[str, Any]) -> dyn.CreateResult:
        client = self._client()
        # A run-once job (its container is removed when it exits, so it never pins an image the images
        # stack may replace): the output is what it printed.
        container = client.containers.run(props["image"], name=props["name"], detach=True,
                                          network_mode="none", labels={"goldsmith.workload": props["name"]})
        try:
            status = container.wait(timeout=120)
            output = container.logs().decode()
        finally:
            container.remove(force=True)
        if status.get("StatusCode") != 0:
            raise RuntimeError(f"container {props['name']} exited {status.get('StatusCode')}: {output[-500:]}")
        return dyn.CreateResult(container.id, {**props, "container_id": container.id, "output": output})

    def diff(self, _id: str, olds: dict[str, Any], news: dict[str, Any]) -> dyn.DiffResult:
        replaces = [k for k in ("image", "name") if olds.get(k) != news.get(k)]
        return dyn.DiffResult(changes=bool(replaces), replaces=replaces, delete_before_replace=True)

    def delete(self, id_: str, props: dict[str, Any]) -> None:
        import docker.errors

        try:
            self._client().containers.get(id_).remove(force=True)
        except docker.errors.NotFound:
            pass


class LocalContainer(dyn.Resource, module="workload", name="LocalContainer"):
    """A job: runs the image's command once (it must exit 0) and keeps its output; a new image runs it again."""

    container_id: pulumi.Output[str]
    output: pulumi.Output[str]

    def __init__(self, name: str, image: pulumi.Input[str], opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__(_ContainerProvider(), name, {"image": image, "name": name, "container_id": None, "output": None}, opts)


class _VmDiskProvider(dyn.ResourceProvider):
    def create(self, props: dict[str, Any]) -> dyn.CreateResult:
        path = os.path.abspath(props["path"])
        os.makedirs(os.path.dirname(path), exist_ok=True)
        subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", "-F", "qcow2", "-b", props["base"], path],
                       check=True, capture_output=True, text=True)
        return dyn.CreateResult(path, {**props, "disk": path})

    def diff(self, _id: str, olds: dict[str, Any], news: dict[str, Any]) -> dyn.DiffResult:
        replaces = [k for k in ("base", "path") if olds.get(k) != news.get(k)]
        return dyn.DiffResult(changes=bool(replaces), replaces=replaces, delete_before_replace=True)

    def delete(self, id_: str, props: dict[str, Any]) -> None:
        try:
            os.unlink(id_)
        except FileNotFoundError:
            pass


class LocalVmDisk(dyn.Resource, module="workload", name="LocalVmDisk"):
    """A copy-on-write disk for one VM, backed by the golden qcow2 (which it never modifies)."""

    disk: pulumi.Output[str]

    def __init__(self, name: str, base: pulumi.Input[str], path: str, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__(_VmDiskProvider(), name, {"base": base, "path": path, "disk": None}, opts)
