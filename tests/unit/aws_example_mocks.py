"""Run examples/aws-ami under pulumi.runtime.set_mocks with the AMI's outputs filled in, and print
every registered resource (type, name, inputs) as JSON: the consumption side (a pulumi-aws launch
template) is checked without the pulumi-aws plugin, which cannot be downloaded here.

Usage: python aws_example_mocks.py CONFIG_JSON
"""

import asyncio
import json
import os
import runpy
import sys
from pathlib import Path

import pulumi

PROGRAM = Path(__file__).resolve().parents[2] / "examples" / "aws-ami"
AMI_ID = "ami-0123456789abcdef0"
registered = []


class Mocks(pulumi.runtime.Mocks):
    def new_resource(self, args: pulumi.runtime.MockResourceArgs):
        inputs = {k: v for k, v in args.inputs.items() if k != "__provider"}
        registered.append({"type": args.typ, "name": args.name, "inputs": inputs})
        outputs = dict(args.inputs)
        if args.typ.endswith("goldsmith:AmiImage"):
            outputs.update(ami_id=AMI_ID, image_id=AMI_ID, ami_name="golden-base-0123456789ab",
                           ami_ids={"eu-central-1": AMI_ID}, fingerprint="0" * 64)
        return [outputs.get("image_id") or f"{args.name}-id", outputs]

    def call(self, args: pulumi.runtime.MockCallArgs):
        return {}


def main() -> None:
    os.chdir(PROGRAM)
    pulumi.runtime.set_mocks(Mocks(), project="goldsmith-aws-ami", stack="test", preview=False)
    pulumi.runtime.set_all_config(json.loads(sys.argv[1]))
    runpy.run_path(str(PROGRAM / "__main__.py"), run_name="__main__")
    loop = asyncio.get_event_loop()
    loop.run_until_complete(asyncio.sleep(1.0))
    print("RESOURCES=" + json.dumps(registered, default=str))


if __name__ == "__main__":
    main()
