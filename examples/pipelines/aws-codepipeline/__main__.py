"""Golden images on every commit, all inside AWS: a CodeCommit repository holds the goldsmith
project; a push to main runs CodePipeline (Source: CodeCommit main -> Build: CodeBuild `pulumi up`);
a pull request runs a CodeBuild `pulumi preview --diff` (started by an EventBridge rule on the
CodeCommit pull request events) that posts the rebuild reasons on the pull request.

State lives in a self-managed backend: a versioned, KMS-encrypted S3 bucket (no public access, TLS
only). The stack passphrase is a SecureString SSM parameter encrypted with the same key; CodeBuild
reads it into PULUMI_CONFIG_PASSPHRASE. Every role has its own policy with named actions only.

Config (`pulumi config set ...`):
  aws:region          the region of everything here (and of the AmiImage builds)
  pulumiPassphrase    secret: the passphrase of the images stack (`pulumi config set --secret`)
  repositoryName      CodeCommit repository (default: golden-images)
  branch              the branch that builds (default: main)
  imagesStack         the images project's stack that CodeBuild updates (default: ci)
  buildspec           path of the `pulumi up` buildspec in the repository (default: buildspec.yml)
  previewBuildspec    path of the preview buildspec (default: buildspec-preview.yml)
  buildRegions        JSON list of regions where AmiImage builds may create instances and AMIs
                      (default: [aws:region])
"""

import json

import pulumi
import pulumi_aws as aws

config = pulumi.Config()
region = aws.config.region or "eu-west-1"
repository_name = config.get("repositoryName") or "golden-images"
branch = config.get("branch") or "main"
images_stack = config.get("imagesStack") or "ci"
buildspec = config.get("buildspec") or "buildspec.yml"
preview_buildspec = config.get("previewBuildspec") or "buildspec-preview.yml"
build_regions = config.get_object("buildRegions") or [region]
passphrase = config.require_secret("pulumiPassphrase")
prefix = pulumi.get_stack()
tags = {"app": "golden-images", "managed-by": "pulumi"}

identity = aws.get_caller_identity()
account = identity.account_id


def policy(*statements: dict) -> pulumi.Output[str]:
    """An IAM policy document; statements may hold Outputs (ARNs of resources made here)."""
    return pulumi.Output.json_dumps({"Version": "2012-10-17", "Statement": list(statements)})


def assume_role(service: str) -> str:
    return json.dumps({"Version": "2012-10-17", "Statement": [{
        "Effect": "Allow", "Principal": {"Service": service}, "Action": "sts:AssumeRole",
        "Condition": {"StringEquals": {"aws:SourceAccount": account}}}]})


# --- encryption, state and artifacts ---------------------------------------------------------------

key = aws.kms.Key("images", description="golden images: pipeline artifacts, Pulumi state, passphrase",
                  enable_key_rotation=True, deletion_window_in_days=30, tags=tags)
aws.kms.Alias("images", name=f"alias/{prefix}-golden-images", target_key_id=key.key_id)


def private_bucket(name: str, *, versioned: bool) -> aws.s3.Bucket:
    bucket = aws.s3.Bucket(name, force_destroy=False, tags=tags)
    aws.s3.BucketPublicAccessBlock(name, bucket=bucket.id, block_public_acls=True, block_public_policy=True,
                                   ignore_public_acls=True, restrict_public_buckets=True)
    aws.s3.BucketOwnershipControls(name, bucket=bucket.id, rule={"object_ownership": "BucketOwnerEnforced"})
    aws.s3.BucketServerSideEncryptionConfiguration(name, bucket=bucket.id, rules=[{
        "apply_server_side_encryption_by_default": {"sse_algorithm": "aws:kms", "kms_master_key_id": key.arn},
        "bucket_key_enabled": True}])
    if versioned:
        aws.s3.BucketVersioning(name, bucket=bucket.id, versioning_configuration={"status": "Enabled"})
    aws.s3.BucketPolicy(name, bucket=bucket.id, policy=policy({
        "Sid": "TlsOnly", "Effect": "Deny", "Principal": "*", "Action": "s3:*",
        "Resource": [bucket.arn, pulumi.Output.concat(bucket.arn, "/*")],
        "Condition": {"Bool": {"aws:SecureTransport": "false"}}}))
    return bucket


state_bucket = private_bucket("state", versioned=True)          # Pulumi's self-managed backend
artifacts_bucket = private_bucket("artifacts", versioned=False)  # pipeline artifacts and the build cache
aws.s3.BucketLifecycleConfiguration("artifacts", bucket=artifacts_bucket.id, rules=[{
    "id": "expire-old-artifacts", "status": "Enabled", "filter": {"prefix": ""},
    "expiration": {"days": 30}, "noncurrent_version_expiration": {"noncurrent_days": 7}}])
aws.s3.BucketLifecycleConfiguration("state", bucket=state_bucket.id, rules=[{
    "id": "keep-90-days-of-history", "status": "Enabled", "filter": {"prefix": ""},
    "noncurrent_version_expiration": {"noncurrent_days": 90}}])

backend_url = pulumi.Output.concat("s3://", state_bucket.bucket, f"/images?region={region}")

passphrase_parameter = aws.ssm.Parameter(
    "passphrase", name=f"/{prefix}/golden-images/pulumi-config-passphrase", type="SecureString",
    key_id=key.arn, value=passphrase, description="PULUMI_CONFIG_PASSPHRASE of the images stack", tags=tags)

# --- the repository ---------------------------------------------------------------------------------

repo = aws.codecommit.Repository("images", repository_name=repository_name, default_branch=branch,
                                 description="goldsmith golden images (Pulumi project)", kms_key_id=key.arn, tags=tags)

logs = aws.cloudwatch.LogGroup("builds", name=f"/codebuild/{prefix}-golden-images", retention_in_days=90, tags=tags)

# --- roles: one per principal, named actions only ---------------------------------------------------

STATE_READ = ["s3:GetObject", "s3:GetObjectVersion"]
KMS_USE = ["kms:Decrypt", "kms:Encrypt", "kms:GenerateDataKey", "kms:DescribeKey"]
# What goldsmith's AmiImage does (builder instance, key pair, security group, AMI, copies, sharing,
# tags, deprecation) and its gc; the EC2 API has no resource-level permissions for most of these,
# so they are limited to the build regions instead.
EC2_BUILD = [
    "ec2:DescribeImages", "ec2:DescribeInstances", "ec2:DescribeInstanceStatus", "ec2:DescribeKeyPairs",
    "ec2:DescribeSecurityGroups", "ec2:DescribeSnapshots", "ec2:DescribeSubnets", "ec2:DescribeVpcs",
    "ec2:DescribeImageAttribute", "ec2:DescribeRegions", "ec2:DescribeTags",
    "ec2:ImportKeyPair", "ec2:DeleteKeyPair", "ec2:CreateSecurityGroup", "ec2:DeleteSecurityGroup",
    "ec2:AuthorizeSecurityGroupIngress", "ec2:RunInstances", "ec2:StopInstances", "ec2:TerminateInstances",
    "ec2:CreateImage", "ec2:CopyImage", "ec2:DeregisterImage", "ec2:DeleteSnapshot", "ec2:CreateTags",
    "ec2:ModifyImageAttribute", "ec2:EnableImageDeprecation", "ec2:DisableImageDeprecation",
]
EC2_READ = ["ec2:DescribeImages", "ec2:DescribeRegions"]  # what a preview's check resolves
IN_BUILD_REGIONS = {"StringEquals": {"aws:RequestedRegion": build_regions}}


def log_statement(group: aws.cloudwatch.LogGroup) -> dict:
    return {"Sid": "Logs", "Effect": "Allow", "Action": ["logs:CreateLogStream", "logs:PutLogEvents"],
            "Resource": [group.arn, pulumi.Output.concat(group.arn, ":log-stream:*")]}


def source_ami_parameters() -> dict:
    return {"Sid": "SourceAmiParameters", "Effect": "Allow", "Action": ["ssm:GetParameter", "ssm:GetParameters"],
            "Resource": [f"arn:aws:ssm:{r}::parameter/aws/service/*" for r in build_regions]}


build_role = aws.iam.Role("build", assume_role_policy=assume_role("codebuild.amazonaws.com"),
                          description="CodeBuild: pulumi up of the images stack", tags=tags)
aws.iam.RolePolicy("build", role=build_role.id, policy=policy(
    log_statement(logs),
    {"Sid": "StateList", "Effect": "Allow", "Action": ["s3:ListBucket", "s3:GetBucketLocation", "s3:GetBucketVersioning"],
     "Resource": [state_bucket.arn, artifacts_bucket.arn]},
    {"Sid": "StateWrite", "Effect": "Allow", "Action": [*STATE_READ, "s3:PutObject", "s3:DeleteObject"],
     "Resource": pulumi.Output.concat(state_bucket.arn, "/images/*")},
    {"Sid": "PipelineArtifactsAndCache", "Effect": "Allow", "Action": [*STATE_READ, "s3:PutObject"],
     "Resource": pulumi.Output.concat(artifacts_bucket.arn, "/*")},
    {"Sid": "Kms", "Effect": "Allow", "Action": KMS_USE, "Resource": key.arn},
    {"Sid": "Passphrase", "Effect": "Allow", "Action": ["ssm:GetParameters"], "Resource": passphrase_parameter.arn},
    source_ami_parameters(),
    {"Sid": "AmiBuilds", "Effect": "Allow", "Action": EC2_BUILD, "Resource": "*", "Condition": IN_BUILD_REGIONS},
))

preview_role = aws.iam.Role("preview", assume_role_policy=assume_role("codebuild.amazonaws.com"),
                            description="CodeBuild: pulumi preview of pull requests (reads the state, writes nothing)", tags=tags)
aws.iam.RolePolicy("preview", role=preview_role.id, policy=policy(
    log_statement(logs),
    {"Sid": "Source", "Effect": "Allow", "Action": ["codecommit:GitPull"], "Resource": repo.arn},
    {"Sid": "Comment", "Effect": "Allow", "Action": ["codecommit:PostCommentForPullRequest", "codecommit:GetPullRequest"],
     "Resource": repo.arn},
    {"Sid": "StateList", "Effect": "Allow", "Action": ["s3:ListBucket", "s3:GetBucketLocation"], "Resource": state_bucket.arn},
    # Read only: a preview on the self-managed backend takes no stack lock (pulumi/pulumi#8642) and writes nothing.
    {"Sid": "StateRead", "Effect": "Allow", "Action": STATE_READ, "Resource": pulumi.Output.concat(state_bucket.arn, "/images/*")},
    {"Sid": "Kms", "Effect": "Allow", "Action": ["kms:Decrypt", "kms:DescribeKey"], "Resource": key.arn},
    {"Sid": "Passphrase", "Effect": "Allow", "Action": ["ssm:GetParameters"], "Resource": passphrase_parameter.arn},
    source_ami_parameters(),
    {"Sid": "ResolveSourceAmis", "Effect": "Allow", "Action": EC2_READ, "Resource": "*", "Condition": IN_BUILD_REGIONS},
))

# --- the CodeBuild projects -------------------------------------------------------------------------

environment_variables = [
    {"name": "PULUMI_BACKEND_URL", "value": backend_url, "type": "PLAINTEXT"},
    {"name": "PULUMI_STACK", "value": images_stack, "type": "PLAINTEXT"},
    {"name": "PULUMI_CONFIG_PASSPHRASE", "value": passphrase_parameter.name, "type": "PARAMETER_STORE"},
]
build_environment = {
    "compute_type": "BUILD_GENERAL1_LARGE",  # QEMU builds want CPUs; AmiImage builds run on EC2 anyway
    "image": "aws/codebuild/standard:7.0",
    "type": "LINUX_CONTAINER",
    "image_pull_credentials_type": "CODEBUILD",
    "environment_variables": environment_variables,
}

up_project = aws.codebuild.Project(
    "up", name=f"{prefix}-golden-images-up", description="pulumi up: builds the golden images whose fingerprint changed",
    service_role=build_role.arn, encryption_key=key.arn, build_timeout=240, queued_timeout=480,
    source={"type": "CODEPIPELINE", "buildspec": buildspec},
    artifacts={"type": "CODEPIPELINE"},
    cache={"type": "S3", "location": pulumi.Output.concat(artifacts_bucket.bucket, "/cache/up")},
    environment=build_environment,
    logs_config={"cloudwatch_logs": {"group_name": logs.name, "stream_name": "up"}},
    tags=tags)

preview_project = aws.codebuild.Project(
    "preview", name=f"{prefix}-golden-images-preview",
    description="pulumi preview --diff of a pull request: which image rebuilds and why",
    service_role=preview_role.arn, encryption_key=key.arn, build_timeout=60,
    source={"type": "CODECOMMIT", "location": repo.clone_url_http, "buildspec": preview_buildspec, "git_clone_depth": 1},
    artifacts={"type": "NO_ARTIFACTS"},
    environment={**build_environment, "compute_type": "BUILD_GENERAL1_SMALL"},
    logs_config={"cloudwatch_logs": {"group_name": logs.name, "stream_name": "preview"}},
    tags=tags)

# --- pull requests: EventBridge starts the preview build --------------------------------------------

PULL_REQUEST_PATTERN = {
    "source": ["aws.codecommit"],
    "detail-type": ["CodeCommit Pull Request State Change"],
    "detail": {"event": ["pullRequestCreated", "pullRequestSourceBranchUpdated"],
               "destinationReference": [f"refs/heads/{branch}"]},
}
events_role = aws.iam.Role("events", assume_role_policy=assume_role("events.amazonaws.com"),
                           description="EventBridge: start the preview build and the pipeline", tags=tags)

pr_rule = aws.cloudwatch.EventRule(
    "pull-requests", description="CodeCommit pull request opened or updated -> pulumi preview",
    event_pattern=repo.arn.apply(lambda arn: json.dumps({**PULL_REQUEST_PATTERN, "resources": [arn]})), tags=tags)
aws.cloudwatch.EventTarget(
    "pull-requests", rule=pr_rule.name, arn=preview_project.arn, role_arn=events_role.arn,
    input_transformer={
        "input_paths": {"pr": "$.detail.pullRequestId", "source": "$.detail.sourceCommit",
                        "destination": "$.detail.destinationCommit", "repo": "$.detail.repositoryNames[0]"},
        # StartBuild parameters: build the pull request's head, tell the build where to comment.
        "input_template": json.dumps({
            "sourceVersion": "<source>",
            "environmentVariablesOverride": [
                {"name": "PULL_REQUEST_ID", "value": "<pr>", "type": "PLAINTEXT"},
                {"name": "SOURCE_COMMIT", "value": "<source>", "type": "PLAINTEXT"},
                {"name": "DESTINATION_COMMIT", "value": "<destination>", "type": "PLAINTEXT"},
                {"name": "REPOSITORY_NAME", "value": "<repo>", "type": "PLAINTEXT"},
            ]}),  # a placeholder inside quotes is replaced by the bare string
    })

# --- main: CodePipeline (Source: CodeCommit -> Build: pulumi up) ------------------------------------

pipeline_role = aws.iam.Role("pipeline", assume_role_policy=assume_role("codepipeline.amazonaws.com"),
                             description="CodePipeline: CodeCommit source, CodeBuild up", tags=tags)
aws.iam.RolePolicy("pipeline", role=pipeline_role.id, policy=policy(
    {"Sid": "Source", "Effect": "Allow", "Resource": repo.arn, "Action": [
        "codecommit:GetBranch", "codecommit:GetCommit", "codecommit:GetRepository", "codecommit:UploadArchive",
        "codecommit:GetUploadArchiveStatus", "codecommit:CancelUploadArchive"]},
    {"Sid": "Build", "Effect": "Allow", "Action": ["codebuild:StartBuild", "codebuild:BatchGetBuilds"], "Resource": up_project.arn},
    {"Sid": "Artifacts", "Effect": "Allow", "Action": ["s3:GetObject", "s3:GetObjectVersion", "s3:PutObject"],
     "Resource": pulumi.Output.concat(artifacts_bucket.arn, "/*")},
    {"Sid": "ArtifactsBucket", "Effect": "Allow", "Action": ["s3:GetBucketVersioning", "s3:GetBucketLocation"], "Resource": artifacts_bucket.arn},
    {"Sid": "Kms", "Effect": "Allow", "Action": KMS_USE, "Resource": key.arn},
))

pipeline = aws.codepipeline.Pipeline(
    "images", name=f"{prefix}-golden-images", role_arn=pipeline_role.arn, pipeline_type="V2", execution_mode="QUEUED",
    artifact_stores=[{"location": artifacts_bucket.bucket, "type": "S3",
                      "encryption_key": {"id": key.arn, "type": "KMS"}}],
    stages=[
        {"name": "Source", "actions": [{
            "name": "CodeCommit", "category": "Source", "owner": "AWS", "provider": "CodeCommit", "version": "1",
            "output_artifacts": ["source"],
            "configuration": {"RepositoryName": repo.repository_name, "BranchName": branch,
                              "PollForSourceChanges": "false", "OutputArtifactFormat": "CODE_ZIP"}}]},
        {"name": "Build", "actions": [{
            "name": "PulumiUp", "category": "Build", "owner": "AWS", "provider": "CodeBuild", "version": "1",
            "input_artifacts": ["source"],
            "configuration": {"ProjectName": up_project.name}}]},
    ],
    tags=tags)

# A push to the branch starts the pipeline (instead of polling).
PUSH_PATTERN = {
    "source": ["aws.codecommit"],
    "detail-type": ["CodeCommit Repository State Change"],
    "detail": {"event": ["referenceCreated", "referenceUpdated"], "referenceType": ["branch"], "referenceName": [branch]},
}
push_rule = aws.cloudwatch.EventRule(
    "push", description=f"push to {branch} -> the images pipeline",
    event_pattern=repo.arn.apply(lambda arn: json.dumps({**PUSH_PATTERN, "resources": [arn]})), tags=tags)
aws.cloudwatch.EventTarget("push", rule=push_rule.name, arn=pipeline.arn, role_arn=events_role.arn)

aws.iam.RolePolicy("events", role=events_role.id, policy=policy(
    {"Sid": "Preview", "Effect": "Allow", "Action": ["codebuild:StartBuild"], "Resource": preview_project.arn},
    {"Sid": "Pipeline", "Effect": "Allow", "Action": ["codepipeline:StartPipelineExecution"], "Resource": pipeline.arn},
))

pulumi.export("repository_clone_url", repo.clone_url_http)
pulumi.export("state_backend_url", backend_url)
pulumi.export("pipeline", pipeline.name)
pulumi.export("preview_project", preview_project.name)
pulumi.export("passphrase_parameter", passphrase_parameter.name)
