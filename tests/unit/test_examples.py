"""Every example program (and the root stack) runs under pulumi's mocks and registers what it should."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PROGRAMS = sorted([p.parent for p in (ROOT / "examples").glob("*/__main__.py")] + [ROOT / "stack"])


def registered(program: Path) -> list[dict]:
    out = subprocess.run([sys.executable, str(Path(__file__).with_name("run_with_mocks.py")), str(program)],
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-4000:]
    line = [l for l in out.stdout.splitlines() if l.startswith("RESOURCES=")][-1]
    return json.loads(line[len("RESOURCES="):])


@pytest.mark.parametrize("program", PROGRAMS, ids=[p.name for p in PROGRAMS])
def test_program_runs_under_mocks(program):
    resources = registered(program)
    assert resources, "the program registers at least one resource"
    assert all(r["type"] for r in resources)


def test_root_stack_is_a_qemu_golden_image():
    resources = registered(ROOT / "stack")
    (image,) = [r for r in resources if r["type"].endswith("goldsmith:QemuImage")]
    types = [p["type"] for p in image["inputs"]["provisioners"]]
    assert types == ["file", "file", "packages", "shell", "updates"]
    assert image["inputs"]["base_dir"] == str(ROOT)


def test_layered_example_feeds_the_core_into_the_workload():
    resources = {r["name"]: r for r in registered(ROOT / "examples" / "qemu-layered")}
    assert resources["web"]["inputs"]["source"] == {"type": "disk", "path": "/mock/core.qcow2", "format": "qcow2",
                                                     "cloud_init": False, "checksum": "sha256:" + "0" * 64}
