"""The retry ledger's bookkeeping and labels, and the offline region table (no AWS traffic here: the
fault-injecting proxy in front of moto drives the real retries in tests/integration/test_aws_faults.py)."""

import io

from goldsmith_provider.builders.aws.client import RetryLedger, attempt_label
from goldsmith_provider.builders.aws.config import known_regions, partition_of, region_problem
from goldsmith_provider.engine.log import BuildLog


class Http:
    def __init__(self, status):
        self.status_code = status


def test_attempt_labels_name_what_aws_answered():
    assert attempt_label((Http(200), {}), None) is None
    assert attempt_label((Http(503), {"Error": {"Code": "503", "Message": "Service Unavailable"}}), None) == "503 ServiceUnavailable"
    assert attempt_label((Http(503), {"Error": {"Code": "RequestLimitExceeded"}}), None) == "RequestLimitExceeded"
    assert attempt_label((Http(400), {"Error": {"Code": "Throttling"}}), None) == "Throttling"
    assert attempt_label((Http(500), {}), None) == "500 InternalServerError"
    assert attempt_label(None, ConnectionResetError("reset")) == "ConnectionResetError"


def test_the_ledger_sums_logs_retried_calls_and_stays_quiet_otherwise():
    console = io.StringIO()
    ledger = RetryLedger(BuildLog("t", console=console))
    ledger.record("ec2", "us-east-1", "DescribeImages", 0, [], True)
    ledger.record("ec2", "us-east-1", "RunInstances", 2, ["503 ServiceUnavailable", "Throttling"], True)
    ledger.record("ec2", "eu-west-1", "CopyImage", 1, ["RequestLimitExceeded"], True)
    ledger.record("ssm", "us-east-1", "GetParameter", 2, ["Throttling", "Throttling"], False, "Throttling")
    lines = console.getvalue().splitlines()
    assert lines == [
        "[t] aws: ec2 RunInstances (us-east-1): succeeded after 2 retries (503 ServiceUnavailable, Throttling)",
        "[t] aws: ec2 CopyImage (eu-west-1): succeeded after 1 retry (RequestLimitExceeded)",
        "[t] aws: ssm GetParameter (us-east-1): failed (Throttling) after 2 retries (Throttling, Throttling)",
    ]
    summary = ledger.summary()
    assert summary == {"calls": 4, "retries": 5, "retried_calls": 3, "error_calls": 1,
                       "by_code": {"503 ServiceUnavailable": 1, "RequestLimitExceeded": 1, "Throttling": 3},
                       "by_operation": {"ec2 CopyImage": 1, "ec2 RunInstances": 2, "ssm GetParameter": 2}}
    assert ledger.summary_line() == ("aws: 4 API calls, 5 retries in 3 of them (503 ServiceUnavailable x1, "
                                     "RequestLimitExceeded x1, Throttling x3), 1 answered with an error")


def test_regions_come_from_botocores_own_table_offline():
    regions = known_regions()
    assert {"us-east-1", "eu-west-1", "cn-north-1", "us-gov-west-1"} <= set(regions)
    assert partition_of("cn-north-1") == "aws-cn" and partition_of("eu-west-1") == "aws"
    assert region_problem("eu-west-1") is None and region_problem("") is None
    assert "did you mean 'eu-west-1'" in region_problem("eu-westt-1")
    assert "is not an AWS region (botocore" in region_problem("us-east-7")
    assert "not an AWS region name" in region_problem("EU-WEST-1")
