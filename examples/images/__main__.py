"""One template, many platforms: a hardened core image and a web workload layered on it.

Each GoldenImage builds one image per target in parallel (each in its own provider process); the web
image's targets start from the core's image for the same target. A consistency report compares the
images of each template across platforms (packages and the digests of the declared paths).

Config (all optional):
  targets        comma-separated target keys to build (default: qemu,docker; add aws with `aws` set)
  workload       false: build only the core
  bootTest       false: skip the QEMU boot-test gate (CI speed)
  rootfs         a root filesystem tarball for the Docker target (default: a debootstrap rootfs)
  buildNetwork   network of the Docker build containers ('' = the engine's bridge, 'host')
  failOnDrift    false: report drift without failing the update (default true)
  aws            an object enabling the AWS target: {"region", "sourceAmi", "cidrs", "endpointUrl", "user", "host"}
"""

import pulumi

import goldsmith as gs

config = pulumi.Config()
rootfs = config.get("rootfs")
boot_test = gs.BootTest(enabled=config.get_bool("bootTest") is not False, commands=["jq --version"])
network = config.get("buildNetwork") or ""
aws = config.get_object("aws")
wanted = [k.strip() for k in (config.get("targets") or "").split(",") if k.strip()] or None


def aws_target(source=None):
    """The AWS target; the workload's has no source: it starts from the core's AMI."""
    return gs.AmiTarget(
        source=source,
        aws=gs.AwsConnection(region=aws["region"], endpoint_url=aws.get("endpointUrl", "")),
        communicator=gs.AwsSshSettings(user=aws.get("user", "admin"), cidrs=aws["cidrs"], host=aws.get("host", "")),
    )


def core_targets() -> dict:
    targets = {
        "qemu": gs.QemuTarget(source=gs.DebootstrapSource(suite="bookworm"), boot_test=boot_test,
                              output=gs.OutputSettings(directory="images", formats=["qcow2", "vmdk"])),
        "docker": gs.DockerTarget(source=gs.RootfsSource(path=rootfs) if rootfs else gs.DebootstrapRootfsSource(suite="bookworm"),
                                  network_mode=network),
    }
    if aws:
        targets["aws"] = aws_target(gs.AmiById(id=aws["sourceAmi"]))
    return targets


def workload_targets(core: gs.GoldenImage) -> dict:
    targets = {
        "qemu": gs.QemuTarget(boot_test=boot_test, output=gs.OutputSettings(directory="images", formats=["qcow2"])),
        "docker": gs.DockerTarget(network_mode=network, config=gs.ImageConfig(
            cmd=["sh", "-c", "cat /etc/goldsmith/layers"], workdir="/srv/site")),
    }
    if aws:
        targets["aws"] = aws_target()
    return {k: v for k, v in targets.items() if k in core.images}


consistency = gs.Consistency(paths=["/etc/motd", "/etc/goldsmith", "/usr/bin/jq"],
                             fail_on_drift=config.get_bool("failOnDrift") is not False)

core = gs.GoldenImage("core", gs.GoldenImageArgs(
    name="core",
    provisioners=[
        gs.File(source="files/motd", destination="/etc/motd", mode="0644"),
        gs.Packages(install=["jq"]),
        gs.Shell(scripts=["scripts/core.sh"]),
    ],
    variables={"TIER": "core"},
    targets=core_targets(),
    only=wanted,
    consistency=consistency,
))
pulumi.export("core", core.artifacts)
pulumi.export("core_fingerprints", core.fingerprints)
pulumi.export("core_report", core.report)

if config.get_bool("workload") is not False:
    web = gs.GoldenImage("web", gs.GoldenImageArgs(
        name="web",
        parent=core,  # each target starts from the core's image for that target
        provisioners=[gs.Shell(scripts=["scripts/web.sh"])],
        variables={"TIER": "web"},
        targets=workload_targets(core),
        consistency=consistency,
    ))
    pulumi.export("web", web.artifacts)
    pulumi.export("web_fingerprints", web.fingerprints)
    pulumi.export("web_report", web.report)
