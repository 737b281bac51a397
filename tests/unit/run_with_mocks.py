"""Run a Pulumi program under pulumi.runtime.set_mocks and print the resources it registered (JSON).

Usage: python run_with_mocks.py PROGRAM_DIR [CONFIG_JSON]. Provider plugins (pulumi-aws, pulumi-docker...) cannot
be downloaded here, so consumption code is checked this way: every resource's type and inputs.
"""

import json
import os
import runpy
import sys

import pulumi

registered = []

# What a stack reference reads: the outputs of examples/images (one image per target, as GoldenImage exports them).
IMAGES_STACK_OUTPUTS = {
    "web": {
        "qemu": {"builder": "qemu", "image_id": "web-0123456789ab", "path": "/mock/images/web-0123.qcow2",
                 "sha256": "sha256:" + "1" * 64, "fingerprint": "1" * 64},
        "docker": {"builder": "docker", "image_id": "sha256:" + "2" * 64, "image_ref": "sha256:" + "2" * 64,
                   "fingerprint": "2" * 64},
        "aws": {"builder": "aws", "image_id": "ami-0123456789abcdef0", "ami_id": "ami-0123456789abcdef0",
                "ami_ids": {"eu-central-1": "ami-0123456789abcdef0"}, "region": "eu-central-1", "fingerprint": "3" * 64},
    },
    "web_fingerprints": {"qemu": "1" * 64, "docker": "2" * 64, "aws": "3" * 64},
}


class Mocks(pulumi.runtime.Mocks):
    def new_resource(self, args: pulumi.runtime.MockResourceArgs):
        registered.append({"type": args.typ, "name": args.name, "provider": args.provider or "",
                           "inputs": {k: v for k, v in args.inputs.items() if k != "__provider"}})
        outputs = dict(args.inputs)
        if args.typ == "pulumi:pulumi:StackReference":
            return [args.name, {"name": args.inputs.get("name", args.name), "outputs": IMAGES_STACK_OUTPUTS,
                                "secretOutputNames": []}]
        outputs.setdefault("path", f"/mock/{args.name}.qcow2")
        outputs.setdefault("image_id", f"mock-{args.name}")
        outputs.setdefault("sha256", "sha256:" + "0" * 64)
        outputs.setdefault("artifacts", {"qcow2": {"path": f"/mock/{args.name}.qcow2"}, "vmdk": {"path": f"/mock/{args.name}.vmdk"}})
        return [f"{args.name}-id", outputs]

    def call(self, args: pulumi.runtime.MockCallArgs):
        return {}


def main() -> None:
    program = os.path.abspath(sys.argv[1])
    project = program
    while not os.path.exists(os.path.join(project, "Pulumi.yaml")) and project != "/":
        project = os.path.dirname(project)
    os.chdir(project)  # like the CLI: relative paths resolve against the project root
    sys.path.insert(0, program)
    pulumi.runtime.set_mocks(Mocks(), project=os.path.basename(program), stack="test", preview=False)
    if len(sys.argv) > 2:
        pulumi.runtime.set_all_config(json.loads(sys.argv[2]))
    runpy.run_path(os.path.join(program, "__main__.py"), run_name="__main__")
    # let the registrations finish
    import asyncio

    loop = asyncio.get_event_loop()
    loop.run_until_complete(pulumi.runtime.sync_await._all_tasks() if hasattr(pulumi.runtime.sync_await, "_all_tasks") else asyncio.sleep(0.5))
    print("RESOURCES=" + json.dumps(registered, default=str))


if __name__ == "__main__":
    main()
