"""Transient AWS faults: a fault-injecting proxy (tests/peers/fault_proxy.py) in front of the moto
server answers a share of the requests with 503 / RequestLimitExceeded / Throttling. botocore's
retries ride them out; goldsmith counts every retry, logs the flaky calls and sums them in the build's
``api_retries`` output, and the sum is exactly what the proxy injected."""

from __future__ import annotations

import io
import re

import pytest

from goldsmith_provider.builders.aws import builder
from goldsmith_provider.builders.aws.client import Aws, AwsError, call
from goldsmith_provider.builders.aws.config import AwsConnection
from goldsmith_provider.engine.log import BuildLog
from integration.conftest import make_project
from integration.test_aws_build import aws_env, guest, leftovers_of, props_for  # noqa: F401 (fixtures)
from peers.fault_proxy import FaultProxy
from peers.moto_server import REGION

pytestmark = pytest.mark.integration

RETRY_LINE = re.compile(r"aws: (\w+) (\w+) \(([\w-]+)\): succeeded after (\d+) retr(?:y|ies) \(([^)]*)\)")


def proxied(moto, proxy, **extra) -> AwsConnection:
    return AwsConnection(region=REGION, endpoint_url=proxy.url, access_key_id="testing", secret_access_key="testing",
                         **extra)


def logged_retries(text: str) -> int:
    return sum(int(m.group(4)) for m in RETRY_LINE.finditer(text))


def test_every_injected_fault_is_retried_counted_and_logged(moto_server):
    console = io.StringIO()
    log = BuildLog("faults", console=console)
    with FaultProxy(moto_server.url, rate=0.4, seed=11) as proxy:
        aws = Aws(proxied(moto_server, proxy), log=log)
        ec2 = aws.ec2()
        for _ in range(15):
            call(ec2, "describe_images", Owners=["self"])
        name = "faults-kp"
        call(ec2, "create_key_pair", KeyName=name)
        try:
            call(ec2, "describe_key_pairs", KeyNames=[name])
        finally:
            call(ec2, "delete_key_pair", KeyName=name)
        summary = aws.retries.summary()
        injected = proxy.total_injected
        kinds = dict(proxy.injected_kinds)
    assert injected > 0 and len(kinds) >= 2, kinds
    assert summary["calls"] == 18 and summary["error_calls"] == 0
    assert summary["retries"] == injected == logged_retries(console.getvalue())
    assert sum(summary["by_code"].values()) == injected
    # The labels say what AWS answered: the status when the body names no code, else the code.
    assert set(summary["by_code"]) <= {"503 ServiceUnavailable", "RequestLimitExceeded", "Throttling"}
    assert summary["by_code"].get("503 ServiceUnavailable", 0) == kinds.get("503", 0)
    # A faulted request never reached moto: the key pair was created once, not twice.
    assert name not in {k["KeyName"] for k in moto_server.client("ec2").describe_key_pairs()["KeyPairs"]}
    assert aws.retries.summary_line().startswith(f"aws: 18 API calls, {injected} retries")


def test_attempts_are_bounded_by_the_setting_and_the_failure_says_so(moto_server):
    console = io.StringIO()
    log = BuildLog("faults", console=console)
    with FaultProxy(moto_server.url, rate=1.0, repeat=True, kinds=("Throttling",)) as proxy:
        aws = Aws(proxied(moto_server, proxy, max_attempts=3, retry_mode="standard"), log=log)
        with pytest.raises(AwsError) as info:
            call(aws.ec2(), "describe_key_pairs")
        assert proxy.injected["ec2:DescribeKeyPairs"] == 3  # max_attempts counts the first attempt
    assert info.value.code == "Throttling" and "gave up after 3 attempts" in str(info.value)
    assert "raise aws.max_attempts" in str(info.value)
    summary = aws.retries.summary()
    assert summary["retries"] == 2 and summary["error_calls"] == 1
    assert "aws: ec2 DescribeKeyPairs (us-east-1): failed (Throttling) after 2 retries (Throttling, Throttling)" in console.getvalue()


def test_an_ami_build_through_the_fault_proxy_succeeds_and_reports_its_retries(moto_server, guest, tmp_path,
                                                                               tee_log, aws_env):  # noqa: F811
    project = make_project(tmp_path / "project", motd="goldsmith AMI integration image")
    with FaultProxy(moto_server.url, rate=0.3, seed=6) as proxy:
        props = props_for(moto_server, guest, "it-faults")
        props["aws"] = {**props["aws"], "endpoint_url": proxy.url}
        spec, problems = builder.prepare(props, project)
        assert problems == []
        resolved, problems = builder.resolve(spec, project)  # check time: through the proxy too
        assert problems == [], problems
        ident = builder.identify(spec, project, resolved)
        proxy.reset_counts()  # count the build's own calls from here
        outputs = builder.build(spec, ident, base_dir=project, log=tee_log)
        injected = proxy.total_injected
        by_op = dict(proxy.injected)
        try:
            retries = outputs["api_retries"]
            assert injected > 0, "the proxy injected no fault"
            assert retries["retries"] == injected, (retries, by_op)
            assert retries["retries"] == logged_retries(tee_log.text)
            assert retries["calls"] > retries["retried_calls"] > 0
            assert {k.replace(" ", ":", 1): v for k, v in retries["by_operation"].items()} == by_op
            assert f"aws: {retries['calls']} API calls, {injected} retries" in tee_log.text
            # The build itself is whole: AMI in both regions, nothing temporary left behind.
            assert set(outputs["ami_ids"]) == set([REGION] + props["distribution"]["regions"])
            assert leftovers_of(moto_server, outputs["provenance"]["build_id"]) == []
            print(f"\nfault proxy: {injected} faults injected over {retries['calls']} AWS calls: {by_op}")
        finally:
            builder.delete(outputs, keep_previous=0, log=tee_log)  # its endpoint is the proxy (still injecting)


def test_check_time_source_lookups_ride_out_faults_too(moto_server, tmp_path, capfd):
    """`check` resolves the source AMI (SSM: JSON protocol; DescribeImages: EC2 query protocol) through
    the proxy, every first attempt faulted: it still resolves the same AMI as without faults."""
    from goldsmith_provider.dynamic.aws import AwsImageProvider
    from peers.moto_server import BASE_AMI

    moto_server.client("ssm").put_parameter(Name="/goldsmith/it/faults-ami", Value=BASE_AMI, Type="String",
                                            DataType="aws:ec2:image", Overwrite=True)
    with FaultProxy(moto_server.url, rate=1.0, seed=3) as proxy:  # every op's first attempt, never twice in a row
        props = {"name": "faults", "source": {"type": "ssm", "parameter": "/goldsmith/it/faults-ami"},
                 "provisioners": [{"type": "shell", "inline": ["true"]}], "communicator": {"cidrs": ["10.0.0.0/8"]},
                 "aws": {**moto_server.connection(REGION), "endpoint_url": proxy.url}, "base_dir": str(tmp_path)}
        result = AwsImageProvider().check({}, props)
        injected = dict(proxy.injected)
    assert result.failures == [], [(f.property, f.reason) for f in result.failures]
    assert result.inputs["resolved"]["source_ami_id"] == BASE_AMI
    assert injected == {"ssm:GetParameter": 1, "ec2:DescribeImages": 1}
    console = capfd.readouterr().err  # the provider's stderr: the Pulumi console
    assert "[faults] aws: ssm GetParameter (us-east-1): succeeded after 1 retry" in console
    assert "[faults] aws: ec2 DescribeImages (us-east-1): succeeded after 1 retry" in console
