"""examples/pipelines: the GitHub Actions workflow and the CodeBuild buildspecs validated against
their schemas (SchemaStore's github-workflows schema vendored by check-jsonschema, actionlint built
from the Go module proxy, and a buildspec 0.2 schema written from the CodeBuild reference); the
pulumi-aws CodePipeline program run under pulumi's mocks, its wiring and IAM policies asserted."""

import json
import shutil
import subprocess
import sys
from functools import lru_cache
from pathlib import Path

import pytest
import yaml

import pulumi_aws  # noqa: F401,E402 - the test extra installs it; a missing plugin package must fail, not skip

ROOT = Path(__file__).resolve().parents[2]
PIPELINES = ROOT / "examples" / "pipelines"
WORKFLOW = PIPELINES / "github-actions" / ".github" / "workflows" / "images.yml"
CODEPIPELINE = PIPELINES / "aws-codepipeline"
BUILDSPECS = [CODEPIPELINE / "buildspec.yml", CODEPIPELINE / "buildspec-preview.yml"]
BUILDSPEC_SCHEMA = Path(__file__).with_name("schemas") / "codebuild-buildspec-0.2.schema.json"
BIN = Path(sys.executable).parent


def tool(name: str) -> str:
    found = shutil.which(name, path=str(BIN))
    assert found, f"{name} is missing: scripts/setup.sh installs it"
    return found


def check_jsonschema(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([tool("check-jsonschema"), *args], capture_output=True, text=True, timeout=120)


# --- GitHub Actions -------------------------------------------------------------------------------


def test_the_workflow_matches_the_github_workflows_schema(tmp_path):
    ok = check_jsonschema("--builtin-schema", "vendor.github-workflows", str(WORKFLOW))
    assert ok.returncode == 0, ok.stdout + ok.stderr
    # The schema really checks: a misspelt key and a job without runs-on are refused.
    broken = yaml.safe_load(WORKFLOW.read_text())
    broken["jobs"]["up"]["stepz"] = broken["jobs"]["up"].pop("steps")
    bad = tmp_path / "bad.yml"
    bad.write_text(yaml.safe_dump(broken))
    refused = check_jsonschema("--builtin-schema", "vendor.github-workflows", str(bad))
    assert refused.returncode != 0 and "jobs.up" in refused.stdout + refused.stderr


def test_actionlint_accepts_the_workflow(tmp_path):
    lint = subprocess.run([tool("actionlint"), "-no-color", str(WORKFLOW)], capture_output=True, text=True, timeout=120)
    assert lint.returncode == 0, lint.stdout + lint.stderr
    # actionlint checks expressions and contexts, which the schema cannot: an unknown context is refused.
    bad = tmp_path / "bad.yml"
    bad.write_text(WORKFLOW.read_text().replace("${{ vars.PULUMI_BACKEND_URL }}", "${{ settings.PULUMI_BACKEND_URL }}"))
    refused = subprocess.run([tool("actionlint"), "-no-color", str(bad)], capture_output=True, text=True, timeout=120)
    assert refused.returncode != 0 and "settings" in refused.stdout


def step_scripts(job: dict) -> str:
    return "\n".join(step.get("run", "") for step in job["steps"])


def test_the_workflow_previews_pull_requests_and_builds_main():
    wf = yaml.safe_load(WORKFLOW.read_text())
    on = wf[True] if True in wf else wf["on"]  # YAML 1.1 reads the bare key `on` as true
    assert on["pull_request"]["branches"] == ["main"] and on["push"]["branches"] == ["main"]
    assert wf["env"]["PULUMI_BACKEND_URL"] == "${{ vars.PULUMI_BACKEND_URL }}"
    assert wf["env"]["PULUMI_CONFIG_PASSPHRASE"] == "${{ secrets.PULUMI_CONFIG_PASSPHRASE }}"
    assert wf["permissions"] == {"contents": "read", "id-token": "write"}
    preview, up = wf["jobs"]["preview"], wf["jobs"]["up"]
    assert "github.event_name == 'pull_request'" in preview["if"]
    assert "refs/heads/main" in up["if"] and "github.event_name != 'pull_request'" in up["if"]
    assert "pulumi preview --diff" in step_scripts(preview) and "pulumi up" not in step_scripts(preview)
    assert "pulumi up --yes" in step_scripts(up)
    for job in (preview, up):
        assert "$GITHUB_STEP_SUMMARY" in step_scripts(job)
        uses = {step.get("uses", "").split("@")[0]: step for step in job["steps"]}
        assert uses["actions/cache"]["with"]["path"] == "~/.cache/goldsmith"
        assert uses["pulumi/actions"]["with"]["pulumi-version"] == "${{ env.PULUMI_VERSION }}"
        assert "pip install -r" in step_scripts(job)
    assert "' rebuild ('" in step_scripts(preview), "the summary lists the rebuild reasons"
    assert wf["concurrency"]["cancel-in-progress"] == "${{ github.event_name == 'pull_request' }}", "never cancel an up"


# --- CodeBuild buildspecs -------------------------------------------------------------------------


@pytest.mark.parametrize("path", BUILDSPECS, ids=[p.name for p in BUILDSPECS])
def test_the_buildspecs_match_the_buildspec_schema(path):
    ok = check_jsonschema("--schemafile", str(BUILDSPEC_SCHEMA), str(path))
    assert ok.returncode == 0, ok.stdout + ok.stderr


@pytest.mark.parametrize("mutate,where", [
    (lambda b: b.update(phase=b.pop("phases")), "phase"),
    (lambda b: b.update(version=0.3), "version"),
    (lambda b: b["phases"]["build"].update(command=b["phases"]["build"].pop("commands")), "command"),
    (lambda b: b["env"].update(shell="zsh"), "shell"),
], ids=["phases-typo", "version", "commands-typo", "shell"])
def test_the_buildspec_schema_refuses_mistakes(tmp_path, mutate, where):
    spec = yaml.safe_load(BUILDSPECS[0].read_text())
    mutate(spec)
    bad = tmp_path / "buildspec.yml"
    bad.write_text(yaml.safe_dump(spec))
    refused = check_jsonschema("--schemafile", str(BUILDSPEC_SCHEMA), str(bad))
    assert refused.returncode != 0 and where in refused.stdout + refused.stderr


def test_the_buildspecs_run_up_and_preview():
    up, preview = (yaml.safe_load(p.read_text()) for p in BUILDSPECS)
    up_cmds = "\n".join(up["phases"]["build"]["commands"])
    assert "pulumi up --yes" in up_cmds and "pipefail" in up_cmds
    preview_cmds = "\n".join(preview["phases"]["build"]["commands"])
    assert "pulumi preview --diff" in preview_cmds and "pulumi up" not in preview_cmds
    assert "--create" not in preview_cmds, "the preview role cannot create stacks"
    comment = "\n".join(preview["phases"]["build"]["finally"])
    assert "post-comment-for-pull-request" in comment and "$PULL_REQUEST_ID" in comment
    assert any(p.startswith("/root/.cache/goldsmith") for p in up["cache"]["paths"])


# --- the CodePipeline program under mocks ---------------------------------------------------------


@lru_cache(maxsize=None)
def resources() -> tuple:
    config = {"aws:region": "eu-west-1", "golden-images-pipeline:pulumiPassphrase": "pass-phrase-under-test"}
    out = subprocess.run([sys.executable, str(Path(__file__).with_name("pipeline_example_mocks.py")), json.dumps(config)],
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-4000:]
    line = [l for l in out.stdout.splitlines() if l.startswith("RESOURCES=")][-1]
    return tuple(json.loads(line[len("RESOURCES="):]))


def one(typ: str, name: str | None = None) -> dict:
    found = [r for r in resources() if r["type"] == typ and (name is None or r["name"] == name)]
    assert len(found) == 1, (typ, name, [r["name"] for r in found])
    return found[0]


def policies() -> dict[str, dict]:
    return {r["name"]: json.loads(r["inputs"]["policy"]) for r in resources() if r["type"] == "aws:iam/rolePolicy:RolePolicy"}


def test_the_pipeline_is_source_codecommit_main_then_codebuild_up():
    repo = one("aws:codecommit/repository:Repository")
    up = one("aws:codebuild/project:Project", "up")
    pipeline = one("aws:codepipeline/pipeline:Pipeline")["inputs"]
    assert [s["name"] for s in pipeline["stages"]] == ["Source", "Build"]
    (source,), (build,) = (s["actions"] for s in pipeline["stages"])
    assert (source["provider"], source["category"]) == ("CodeCommit", "Source")
    assert source["configuration"]["RepositoryName"] == repo["inputs"]["repositoryName"] == "golden-images"
    assert source["configuration"]["BranchName"] == "main" and source["configuration"]["PollForSourceChanges"] == "false"
    assert (build["provider"], build["category"]) == ("CodeBuild", "Build")
    assert build["configuration"]["ProjectName"] == up["inputs"]["name"]
    assert build["inputArtifacts"] == source["outputArtifacts"]
    store = pipeline["artifactStores"][0]
    artifacts = one("aws:s3/bucket:Bucket", "artifacts")
    assert store["location"] == artifacts["outputs"]["bucket"]
    assert store["encryptionKey"] == {"id": one("aws:kms/key:Key")["outputs"]["arn"], "type": "KMS"}
    # A push to main starts it (no polling).
    push = json.loads(one("aws:cloudwatch/eventRule:EventRule", "push")["inputs"]["eventPattern"])
    assert push["detail"]["referenceName"] == ["main"] and push["resources"] == [repo["outputs"]["arn"]]
    assert one("aws:cloudwatch/eventTarget:EventTarget", "push")["inputs"]["arn"] == \
        one("aws:codepipeline/pipeline:Pipeline")["outputs"]["arn"]


def test_the_codebuild_projects_use_the_buildspecs_and_the_state_backend():
    up = one("aws:codebuild/project:Project", "up")["inputs"]
    preview = one("aws:codebuild/project:Project", "preview")["inputs"]
    repo = one("aws:codecommit/repository:Repository")
    assert up["source"] == {"type": "CODEPIPELINE", "buildspec": "buildspec.yml"}
    assert preview["source"]["type"] == "CODECOMMIT" and preview["source"]["buildspec"] == "buildspec-preview.yml"
    assert preview["source"]["location"] == repo["outputs"]["cloneUrlHttp"]
    assert all((CODEPIPELINE / p["source"]["buildspec"]).is_file() for p in (up, preview))
    state = one("aws:s3/bucket:Bucket", "state")["outputs"]["bucket"]
    parameter = one("aws:ssm/parameter:Parameter")
    for project in (up, preview):
        env = {v["name"]: v for v in project["environment"]["environmentVariables"]}
        assert env["PULUMI_BACKEND_URL"]["value"] == f"s3://{state}/images?region=eu-west-1"
        assert env["PULUMI_CONFIG_PASSPHRASE"] == {"name": "PULUMI_CONFIG_PASSPHRASE", "type": "PARAMETER_STORE",
                                                   "value": parameter["inputs"]["name"]}
        assert project["encryptionKey"] == one("aws:kms/key:Key")["outputs"]["arn"]
    assert parameter["inputs"]["type"] == "SecureString" and parameter["inputs"]["keyId"] == one("aws:kms/key:Key")["outputs"]["arn"]
    assert not any("pass-phrase-under-test" in json.dumps(r["inputs"]) for r in resources() if r["type"] != "aws:ssm/parameter:Parameter")


def test_the_state_bucket_is_versioned_encrypted_and_private():
    for name in ("state", "artifacts"):
        sse = one("aws:s3/bucketServerSideEncryptionConfiguration:BucketServerSideEncryptionConfiguration", name)["inputs"]
        rule = sse["rules"][0]["applyServerSideEncryptionByDefault"]
        assert rule == {"sseAlgorithm": "aws:kms", "kmsMasterKeyId": one("aws:kms/key:Key")["outputs"]["arn"]}
        block = one("aws:s3/bucketPublicAccessBlock:BucketPublicAccessBlock", name)["inputs"]
        assert all(block[k] is True for k in ("blockPublicAcls", "blockPublicPolicy", "ignorePublicAcls", "restrictPublicBuckets"))
        tls = json.loads(one("aws:s3/bucketPolicy:BucketPolicy", name)["inputs"]["policy"])["Statement"][0]
        assert tls["Effect"] == "Deny" and tls["Condition"] == {"Bool": {"aws:SecureTransport": "false"}}
    versioning = one("aws:s3/bucketVersioning:BucketVersioning", "state")["inputs"]
    assert versioning["versioningConfiguration"] == {"status": "Enabled"}
    assert one("aws:kms/key:Key")["inputs"]["enableKeyRotation"] is True


def test_pull_requests_start_the_preview_build():
    repo = one("aws:codecommit/repository:Repository")
    rule = json.loads(one("aws:cloudwatch/eventRule:EventRule", "pull-requests")["inputs"]["eventPattern"])
    assert rule["source"] == ["aws.codecommit"] and rule["detail-type"] == ["CodeCommit Pull Request State Change"]
    assert rule["detail"]["event"] == ["pullRequestCreated", "pullRequestSourceBranchUpdated"]
    assert rule["detail"]["destinationReference"] == ["refs/heads/main"]
    assert rule["resources"] == [repo["outputs"]["arn"]]
    target = one("aws:cloudwatch/eventTarget:EventTarget", "pull-requests")["inputs"]
    assert target["arn"] == one("aws:codebuild/project:Project", "preview")["outputs"]["arn"]
    transformer = target["inputTransformer"]
    assert transformer["inputPaths"]["pr"] == "$.detail.pullRequestId"
    template = json.loads(transformer["inputTemplate"])  # valid JSON with the placeholders inside quotes
    assert template["sourceVersion"] == "<source>"
    assert {v["name"] for v in template["environmentVariablesOverride"]} == {
        "PULL_REQUEST_ID", "SOURCE_COMMIT", "DESTINATION_COMMIT", "REPOSITORY_NAME"}


def test_every_role_policy_names_its_actions():
    docs = policies()
    assert set(docs) == {"build", "preview", "pipeline", "events"}
    for name, doc in docs.items():
        for st in doc["Statement"]:
            actions = st["Action"] if isinstance(st["Action"], list) else [st["Action"]]
            assert st["Effect"] == "Allow"
            for action in actions:
                assert action != "*" and not action.endswith(":*") and "*" not in action, (name, action)
            if st["Resource"] == "*":  # only EC2 calls without resource-level permissions, fenced by region
                assert all(a.startswith("ec2:") for a in actions), (name, st)
                assert st["Condition"] == {"StringEquals": {"aws:RequestedRegion": ["eu-west-1"]}}
    preview_actions = {a for st in docs["preview"]["Statement"] for a in st["Action"]}
    assert not preview_actions & {"s3:PutObject", "s3:DeleteObject", "kms:Encrypt", "kms:GenerateDataKey"}, \
        "a preview reads the state and takes no lock"
    assert not any(a.startswith("ec2:") and not a.startswith("ec2:Describe")
                   for st in docs["preview"]["Statement"] for a in st["Action"]), "a preview changes nothing"
    events = {a: st["Resource"] for st in docs["events"]["Statement"] for a in st["Action"]}
    assert events == {"codebuild:StartBuild": one("aws:codebuild/project:Project", "preview")["outputs"]["arn"],
                      "codepipeline:StartPipelineExecution": one("aws:codepipeline/pipeline:Pipeline")["outputs"]["arn"]}
    for role in resources():
        if role["type"] == "aws:iam/role:Role":
            trust = json.loads(role["inputs"]["assumeRolePolicy"])["Statement"][0]
            assert trust["Condition"] == {"StringEquals": {"aws:SourceAccount": "123456789012"}}
