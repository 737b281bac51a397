"""The bad-spec e2e program: one image resource whose props (kind + spec) the test writes to case.json,
taken from the bad-input corpus (tests/unit/bad_specs.yaml). `pulumi preview` must fail in check."""

import json
from pathlib import Path

import goldsmith as gs

case = json.loads((Path(__file__).parent / "case.json").read_text())
kind = {"qemu": gs.QemuImage, "docker": gs.DockerImage, "aws": gs.AmiImage}[case["kind"]]
image = kind("bad", case["props"])
