"""The bad-input corpus through the real pulumi CLI: for the entries marked `e2e` in
tests/unit/bad_specs.yaml, `pulumi preview` fails, the engine prints the property path and the reason,
and nothing was created (no resource in the stack, no file in the project or GOLDSMITH_CACHE)."""

from __future__ import annotations

import json
import os

import pytest

from e2e.conftest import HERE
from unit.test_bad_specs import CORPUS, make_project, props_of

pytestmark = pytest.mark.e2e

E2E = [e for e in CORPUS if e.get("e2e")]


def tree(root):
    out = {}
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = [d for d in dirnames if d != "__pycache__"]
        for name in dirnames + filenames:
            st = os.lstat(os.path.join(dirpath, name))
            out[os.path.relpath(os.path.join(dirpath, name), root)] = (st.st_size, st.st_mtime_ns)
    return out


def test_preview_prints_the_property_path_and_creates_nothing(pulumi_project, tmp_path):
    assert len(E2E) >= 5
    cache = tmp_path / "cache"
    cache.mkdir()
    p = pulumi_project(HERE / "bad_spec_project", name="goldsmith-bad-specs")
    make_project(p.dir)
    p.env.update({"GOLDSMITH_CACHE": str(cache), "AWS_ENDPOINT_URL": "http://127.0.0.1:9",
                  "AWS_ACCESS_KEY_ID": "e2e", "AWS_SECRET_ACCESS_KEY": "e2e", "AWS_EC2_METADATA_DISABLED": "true",
                  "DOCKER_HOST": "unix:///nonexistent/docker.sock"})
    for entry in E2E:
        (p.dir / "case.json").write_text(json.dumps({"kind": entry["kind"], "props": props_of(entry)}))
        before = tree(p.dir)
        proc = p.run("preview", check=False)
        assert proc.returncode != 0, entry["id"]
        # The engine's own report of the check failure: "<path>: <reason>" under the resource.
        assert f"{entry['path']}" in proc.text and entry["message"] in proc.text, (entry["id"], proc.text[-3000:])
        assert "has a problem" in proc.text or "failed" in proc.text.lower()
        assert tree(p.dir) == before, entry["id"]
        assert list(cache.rglob("*")) == [], entry["id"]
    resources = p.export().get("deployment", {}).get("resources") or []
    assert [r for r in resources if r["type"] != "pulumi:pulumi:Stack"] == []
