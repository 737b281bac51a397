"""The workload stack: deploys the golden images that the goldsmith-images stack built, read through a
stack reference (so a rebuilt image rolls out on this stack's next update, and the two stacks have
their own lifecycles).

Config:
  imagesStack   the images stack (default: organization/goldsmith-images/<this stack's name>)
  cloud         true: also declare the cloud consumers (an EC2 launch template and instance from the AMI,
                a pulumi-docker container); they need the aws and docker provider plugins
"""

import os

import pulumi

from local import LocalContainer, LocalVmDisk

config = pulumi.Config()
images = pulumi.StackReference(config.get("imagesStack") or f"organization/goldsmith-images/{pulumi.get_stack()}")
web = images.require_output("web")

# Local targets, really deployed: the web container runs once and reports its layers; a VM disk for the web VM.
container = LocalContainer("web", web.apply(lambda w: w["docker"]["image_id"]))
disk = LocalVmDisk("web-vm", web.apply(lambda w: w["qemu"]["path"]),
                   path=os.path.join("vms", f"web-{pulumi.get_stack()}.qcow2"))
pulumi.export("container_output", container.output)
pulumi.export("vm_disk", disk.disk)
pulumi.export("web_fingerprints", images.get_output("web_fingerprints"))

if config.get_bool("cloud"):
    import pulumi_aws as aws
    import pulumi_docker as docker

    ami = web.apply(lambda w: w["aws"]["ami_id"])
    template = aws.ec2.LaunchTemplate("web", image_id=ami, instance_type="t3.micro",
                                      metadata_options=aws.ec2.LaunchTemplateMetadataOptionsArgs(http_tokens="required"),
                                      tag_specifications=[aws.ec2.LaunchTemplateTagSpecificationArgs(
                                          resource_type="instance",
                                          tags={"goldsmith:fingerprint": web.apply(lambda w: w["aws"]["fingerprint"])})])
    aws.ec2.Instance("web", launch_template=aws.ec2.InstanceLaunchTemplateArgs(id=template.id, version="$Latest"))
    docker.Container("web", image=web.apply(lambda w: w["docker"]["image_ref"]), name="goldsmith-web",
                     restart="unless-stopped")
    pulumi.export("launch_template", template.id)
