"""The concurrency e2e test's program: 8 cheap Docker images that each sleep while provisioning and record
when they started and ended. `isolated` (default): one GoldenImage with 8 targets, each built in its own
provider process. `isolated: false`: 8 plain DockerImages sharing the default provider process."""

import pulumi

import goldsmith as gs

config = pulumi.Config()
count = config.get_int("count") or 8
sleep = config.get_int("sleep") or 20
source = gs.RootfsSource(path=config.require("rootfs"))
record = gs.Shell(inline=["date +%s.%N > /etc/fleet-start", f"sleep {sleep}", "date +%s.%N > /etc/fleet-end"])
keys = [f"d{i}" for i in range(count)]

if config.get_bool("isolated") is not False:
    fleet = gs.GoldenImage("fleet", gs.GoldenImageArgs(
        name="fleet",
        provisioners=[record],
        targets={k: gs.DockerTarget(name=f"fleet-{k}", source=source, network_mode="none") for k in keys},
        consistency=gs.Consistency(enabled=False),
    ))
    pulumi.export("images", fleet.artifacts.apply(lambda a: {k: v["image_id"] for k, v in a.items()}))
else:
    images = {k: gs.DockerImage(f"shared-{k}", gs.DockerImageArgs(
        name=f"shared-{k}", source=source, network_mode="none",
        provisioners=[gs.Shell(inline=[f"echo {k} > /etc/fleet-member"]), record])) for k in keys}
    pulumi.export("images", pulumi.Output.all(*(i.image_id for i in images.values())).apply(lambda ids: dict(zip(keys, ids))))
