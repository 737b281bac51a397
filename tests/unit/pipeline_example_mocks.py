"""Run examples/pipelines/aws-codepipeline under pulumi.runtime.set_mocks and print every
registered resource (type, name, resolved inputs, mocked outputs) as JSON. The pulumi-aws plugin
cannot be downloaded here, so the program's wiring is checked this way.

Usage: python pipeline_example_mocks.py CONFIG_JSON
"""

import asyncio
import json
import os
import runpy
import sys
from pathlib import Path

import pulumi

PROGRAM = Path(__file__).resolve().parents[2] / "examples" / "pipelines" / "aws-codepipeline"
ACCOUNT, REGION = "123456789012", "eu-west-1"
registered = []


class Mocks(pulumi.runtime.Mocks):
    def new_resource(self, args: pulumi.runtime.MockResourceArgs):
        inputs = {k: v for k, v in args.inputs.items() if k != "__provider"}
        service = args.typ.split(":")[1].split("/")[0]
        name = inputs.get("name") or inputs.get("repositoryName") or f"{args.name}-{service}"
        outputs = dict(inputs, name=name, arn=f"arn:aws:{service}:{REGION}:{ACCOUNT}:{args.typ.rsplit(':', 1)[1].lower()}/{name}")
        if args.typ == "aws:s3/bucket:Bucket":
            outputs.update(bucket=f"{args.name}-bucket-1a2b3c", arn=f"arn:aws:s3:::{args.name}-bucket-1a2b3c")
        if args.typ == "aws:codecommit/repository:Repository":
            outputs["cloneUrlHttp"] = f"https://git-codecommit.{REGION}.amazonaws.com/v1/repos/{name}"
        if args.typ == "aws:kms/key:Key":
            outputs["keyId"] = "0000aaaa-1111-2222-3333-444455556666"
        registered.append({"type": args.typ, "name": args.name, "inputs": inputs, "outputs": outputs})
        return [f"{args.name}-id", outputs]

    def call(self, args: pulumi.runtime.MockCallArgs):
        if args.token == "aws:index/getCallerIdentity:getCallerIdentity":
            return {"accountId": ACCOUNT, "arn": f"arn:aws:iam::{ACCOUNT}:user/ci", "userId": "AIDA", "id": ACCOUNT}
        return {}


def main() -> None:
    os.chdir(PROGRAM)
    pulumi.runtime.set_mocks(Mocks(), project="golden-images-pipeline", stack="prod", preview=False)
    pulumi.runtime.set_all_config(json.loads(sys.argv[1]), secret_keys=["golden-images-pipeline:pulumiPassphrase"])
    runpy.run_path(str(PROGRAM / "__main__.py"), run_name="__main__")
    loop = asyncio.get_event_loop()
    loop.run_until_complete(asyncio.sleep(1.5))
    print("RESOURCES=" + json.dumps(registered, default=str))


if __name__ == "__main__":
    main()
