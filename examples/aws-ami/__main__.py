"""A golden AMI, copied to a second region and shared, then used by a launch template.

Config (`pulumi config set ...`):
  aws:region       the build region (the same key pulumi-aws reads)
  sshCidr          who may reach the builder's SSH (your egress IP /32); without it the preview
                   fails with "communicator.cidrs: is required unless instance.security_group_ids is set"
  sourceAmi        a source AMI id (default: Debian 12's SSM parameter)
  sshUser          login user of the source AMI (default: admin, Debian's)
  sshHost          connect here instead of the instance's public IP ('host:port')
  copyRegions      JSON list of regions to copy the AMI to (default: [])
  shareAccounts    JSON list of account ids given launch permission (default: [])
  launchTemplate   false: skip the pulumi-aws launch template (default: true)
"""

import pulumi

import goldsmith as gs

config = pulumi.Config()

if config.get("sourceAmi"):
    source = gs.AmiById(id=config.get("sourceAmi"))
else:
    # Debian publishes its AMIs behind SSM parameters; a newer point release is a rebuild reason.
    source = gs.AmiFromSsm(parameter="/aws/service/debian/release/bookworm/latest/amd64")

image = gs.AmiImage(
    "base",
    gs.AmiImageArgs(
        name="golden-base",
        source=source,
        provisioners=[
            gs.File(source="files/motd", destination="/etc/motd", mode="0644"),
            gs.Shell(scripts=["scripts/provision.sh"], sudo=True),
        ],
        communicator=gs.AwsSshSettings(
            user=config.get("sshUser") or "admin",
            cidrs=[config.get("sshCidr")] if config.get("sshCidr") else [],
            host=config.get("sshHost") or "",
        ),
        instance=gs.InstanceSettings(type=config.get("instanceType") or "t3.small",
                                     root_volume=gs.RootVolume(size_gb=8, encrypted=True)),
        distribution=gs.DistributionSettings(
            regions=config.get_object("copyRegions") or [],
            share=gs.ShareSettings(accounts=config.get_object("shareAccounts") or []),
            deprecate_after_days=config.get_int("deprecateAfterDays") or 0,
        ),
        tags={"team": "platform", "os": "debian-12"},
        retention=gs.Retention(keep_previous=config.get_int("keepPrevious") or 0),
    ),
)

pulumi.export("ami_id", image.ami_id)
pulumi.export("ami_ids", image.ami_ids)
pulumi.export("ami_name", image.ami_name)
pulumi.export("snapshot_ids", image.snapshot_ids)
pulumi.export("source_ami_id", image.source_ami_id)
pulumi.export("fingerprint", image.fingerprint)
pulumi.export("package_count", image.package_count)

# Consumption: the workload's launch template takes the AMI id. A rebuild (new fingerprint) gives a
# new AMI id, which updates the launch template's image in the same `pulumi up`.
if config.get_bool("launchTemplate") is not False:
    import pulumi_aws as aws

    template = aws.ec2.LaunchTemplate(
        "web",
        name_prefix="web-",
        image_id=image.ami_id,
        instance_type="t3.small",
        metadata_options=aws.ec2.LaunchTemplateMetadataOptionsArgs(http_tokens="required"),
        tag_specifications=[aws.ec2.LaunchTemplateTagSpecificationArgs(
            resource_type="instance",
            tags={"Name": "web", "golden-ami": image.ami_name},
        )],
        update_default_version=True,
    )
    pulumi.export("launch_template_id", template.id)
