"""The AWS AMI builder: the amazon-ebs flow (boto3, imported lazily)."""
