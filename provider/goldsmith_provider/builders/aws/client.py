"""boto3 for the AWS builder, imported lazily: sessions from the spec or the standard chain, one
client per thread, AWS errors turned into goldsmith errors with a hint, and the polling loops
written out (AWS keeps a new AMI pending for minutes, moto makes it available at once: both go
through the same loop, which never assumes either).

boto3 sessions are not thread-safe: :class:`Aws` makes a new session for every client it hands to
another thread (:meth:`Aws.new_client`); the clients it caches are for the calling thread only.

Transient faults (throttling, 5xx, dropped connections) are botocore's own retries: a bounded number
of attempts (``aws.max_attempts``, counting the first) with exponential backoff and full jitter
(``aws.retry_mode``: "standard", or "adaptive" which also slows the client down after throttling).
They are made visible: every client :class:`Aws` makes reports each call's retries to the build's
:class:`RetryLedger`, which logs them ("ec2 RunInstances (us-east-1): succeeded after 2 retries
(503 ServiceUnavailable, Throttling)") and sums them for the build's outputs.
"""

from __future__ import annotations

import collections
import contextlib
import http.client
import os
import socket
import threading
import time
from datetime import datetime, timezone
from typing import Any, Callable, Iterator, TypeVar

from ... import __version__
from ...engine.errors import GoldsmithError
from ...engine.log import BuildLog
from .config import AwsConnection

T = TypeVar("T")

HINTS = {
    "AuthFailure": "the credentials are not valid for this region or endpoint",
    "UnauthorizedOperation": "the credentials lack this EC2 permission (see the policy in examples/aws-ami/README.md)",
    "AccessDeniedException": "the credentials lack this permission",
    "InvalidClientTokenId": "the access key id is unknown: check AWS_ACCESS_KEY_ID / aws.access_key_id",
    "SignatureDoesNotMatch": "the secret access key does not match the access key id",
    "ExpiredToken": "the session token has expired: refresh the credentials",
    "RequestExpired": "the request expired: is this machine's clock right?",
    "OptInRequired": "the region is not enabled for this account",
    "InsufficientInstanceCapacity": "AWS has no capacity for this type here: try another instance.type or subnet (zone)",
    "VcpuLimitExceeded": "the account's vCPU quota is used up: ask for more or pick a smaller instance.type",
    "InvalidAMIName.Duplicate": "an AMI with this name exists: a build with this fingerprint completed or was left "
                                "half-done (run `goldsmith gc --platform aws`)",
    "InvalidAMIID.NotFound": "the AMI does not exist in this region (was it deregistered?)",
    "InvalidAMIID.Unavailable": "the AMI was deregistered",
    "InvalidParameterValue": "AWS refused a parameter value (see the message)",
    "InvalidSubnetID.NotFound": "instance.subnet_id does not exist in this region",
    "InvalidGroup.NotFound": "a security group in instance.security_group_ids does not exist in this region",
    "InvalidKeyPair.NotFound": "the temporary key pair is gone (deleted by someone else?)",
    "InvalidInstanceType.NotFound": "instance.type does not exist (in this region)",
    "Unsupported": "this region or zone does not support the request (instance type, spot...)",
    "NoCredentials": "no AWS credentials: set AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY, AWS_PROFILE, or aws.access_key_id",
    "ProfileNotFound": "the profile is not in ~/.aws/config: check aws.profile / AWS_PROFILE",
    "EndpointConnectionError": "the endpoint is unreachable: check aws.endpoint_url / AWS_ENDPOINT_URL and the network",
    "ParameterNotFound": "the SSM parameter does not exist in this region",
    "RequestLimitExceeded": "AWS throttled every attempt: retry later, or raise aws.max_attempts",
    "Throttling": "AWS throttled every attempt: retry later, or raise aws.max_attempts",
    "ThrottlingException": "AWS throttled every attempt: retry later, or raise aws.max_attempts",
    "Unavailable": "the service answered 503 to every attempt: retry later, or raise aws.max_attempts",
    "503": "the endpoint answered 503 to every attempt: retry later, or raise aws.max_attempts",
    "InternalError": "AWS failed internally on every attempt: retry later",
}


class AwsError(GoldsmithError):
    """An AWS API call failed; ``code`` is AWS's error code (or the botocore exception name)."""

    def __init__(self, what: str, code: str, message: str) -> None:
        self.what = what
        self.code = code
        super().__init__(f"{what}: {code}: {message}", hint=HINTS.get(code))


def error_code(exc: BaseException) -> str:
    if isinstance(exc, AwsError):
        return exc.code
    response = getattr(exc, "response", None)
    if isinstance(response, dict):
        return str(response.get("Error", {}).get("Code", ""))
    return type(exc).__name__


@contextlib.contextmanager
def aws_errors(what: str) -> Iterator[None]:
    """Turn botocore's exceptions into :class:`AwsError` (with a hint for the common codes)."""
    from botocore.exceptions import BotoCoreError, ClientError, NoCredentialsError, ProfileNotFound

    try:
        yield
    except ClientError as exc:
        err = exc.response.get("Error", {})
        retries = int((exc.response.get("ResponseMetadata") or {}).get("RetryAttempts") or 0)
        message = str(err.get("Message", exc)) + (f" (gave up after {retries + 1} attempts)" if retries else "")
        raise AwsError(what, str(err.get("Code", "ClientError")), message) from exc
    except NoCredentialsError as exc:
        raise AwsError(what, "NoCredentials", str(exc)) from exc
    except ProfileNotFound as exc:
        raise AwsError(what, "ProfileNotFound", str(exc)) from exc
    except BotoCoreError as exc:
        raise AwsError(what, type(exc).__name__, str(exc)) from exc


def call(client: Any, operation: str, **params: Any) -> dict[str, Any]:
    """``client.<operation>(**params)`` with errors explained; the operation names the failure."""
    with aws_errors(f"{operation} ({client.meta.region_name})"):
        return getattr(client, operation)(**params)


def call_retrying(client: Any, operation: str, *, codes: set[str], timeout: float, interval: float = 2.0,
                  **params: Any) -> dict[str, Any]:
    """``call`` that retries while AWS answers one of ``codes``: eventual consistency (a resource
    just created is not found yet) or a dependency that is still being released."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            return call(client, operation, **params)
        except AwsError as exc:
            if exc.code not in codes or time.monotonic() >= deadline:
                raise
        time.sleep(interval)


# --- botocore's retries, counted -------------------------------------------------------------------

ATTEMPTS_KEY = "goldsmith_attempts"  # in botocore's per-call request context: what each attempt got


def attempt_label(response: Any, exc: BaseException | None) -> str | None:
    """What one attempt got, when it was an error: the AWS error code ("Throttling",
    "RequestLimitExceeded"), the HTTP status when the body names none ("503 ServiceUnavailable"), or the
    exception ("ConnectionClosedError"); None for a success."""
    if exc is not None:
        return type(exc).__name__
    if not response:
        return None
    http_response, parsed = response
    status = getattr(http_response, "status_code", 0) or 0
    if status < 300:
        return None
    code = str(((parsed or {}).get("Error") or {}).get("Code") or "")
    if not code or code.isdigit():  # no code in the body: botocore names it by the status
        return f"{status} {http.client.responses.get(status, 'Error').replace(' ', '')}"
    return code


class RetryLedger:
    """Every AWS call of one build and the retries botocore made for it, thread-safe.

    ``calls``/``retries`` are totals; ``by_code`` counts the errors that were retried; ``error_calls``
    the calls whose final answer was an error (expected ones included, such as a not-found while
    polling). Each call that needed a retry is logged as it completes, so the log shows which API was
    flaky and why.
    """

    def __init__(self, log: BuildLog | None = None) -> None:
        self.log = log
        self._lock = threading.Lock()
        self.calls = 0
        self.retries = 0
        self.retried_calls = 0
        self.error_calls = 0
        self.by_code: collections.Counter[str] = collections.Counter()
        self.by_operation: collections.Counter[str] = collections.Counter()

    def record(self, service: str, region: str, operation: str, retries: int, codes: list[str], ok: bool,
               final: str | None = None) -> None:
        with self._lock:
            self.calls += 1
            self.retries += retries
            if retries:
                self.retried_calls += 1
                self.by_operation[f"{service} {operation}"] += retries
                self.by_code.update(codes)
            if not ok:
                self.error_calls += 1
        if self.log is not None and (retries or (not ok and codes)):
            plural = "retry" if retries == 1 else "retries"
            why = f" ({', '.join(codes)})" if codes else ""
            outcome = "succeeded" if ok else f"failed ({final})"
            self.log.info(f"aws: {service} {operation} ({region}): {outcome} after {retries} {plural}{why}")

    def summary(self) -> dict[str, Any]:
        with self._lock:
            return {"calls": self.calls, "retries": self.retries, "retried_calls": self.retried_calls,
                    "error_calls": self.error_calls, "by_code": dict(sorted(self.by_code.items())),
                    "by_operation": dict(sorted(self.by_operation.items()))}

    def summary_line(self) -> str:
        s = self.summary()
        codes = ", ".join(f"{code} x{n}" for code, n in s["by_code"].items())
        return (f"aws: {s['calls']} API calls, {s['retries']} retries in {s['retried_calls']} of them"
                + (f" ({codes})" if codes else "") + (f", {s['error_calls']} answered with an error" if s["error_calls"] else ""))

    def attach(self, client: Any) -> None:
        """Count this client's retries: each attempt's outcome is noted in botocore's request context
        (``needs-retry``, after every attempt); the call's end (``after-call``/``after-call-error``)
        reads botocore's own ``RetryAttempts`` and reports the call."""
        service = client.meta.service_model.service_name
        region = client.meta.region_name

        def on_attempt(request_dict=None, response=None, caught_exception=None, **_: Any) -> None:
            context = (request_dict or {}).get("context")
            if isinstance(context, dict):
                context.setdefault(ATTEMPTS_KEY, []).append(attempt_label(response, caught_exception))
            return None  # observe only: botocore's own handler decides whether to retry

        def on_done(model=None, context=None, parsed=None, http_response=None, **_: Any) -> None:
            attempts = (context or {}).get(ATTEMPTS_KEY) or []
            meta = (parsed or {}).get("ResponseMetadata") or {}
            retries = int(meta.get("RetryAttempts", max(len(attempts) - 1, 0)))
            status = getattr(http_response, "status_code", 200)
            final = attempts[-1] if attempts else None
            self.record(service, region, model.name, retries, [a or "?" for a in attempts[:retries]], status < 300, final)

        def on_error(event_name: str = "", context=None, exception=None, **_: Any) -> None:
            attempts = (context or {}).get(ATTEMPTS_KEY) or []
            retries = max(len(attempts) - 1, 0)
            operation = event_name.rsplit(".", 1)[-1] if event_name else "?"
            self.record(service, region, operation, retries, [a or "?" for a in attempts[:retries]], False,
                        type(exception).__name__)

        events = client.meta.events
        events.register("needs-retry", on_attempt, unique_id="goldsmith-retry-ledger-attempt")
        events.register("after-call", on_done, unique_id="goldsmith-retry-ledger-done")
        events.register("after-call-error", on_error, unique_id="goldsmith-retry-ledger-error")


class Aws:
    """The connection settings of one build (or one lifecycle call), and clients made from them.

    Every client reports its calls and retries to ``self.retries`` (logged to ``log`` when given)."""

    def __init__(self, conn: AwsConnection, region: str = "", *, log: BuildLog | None = None,
                 retries: RetryLedger | None = None) -> None:
        self.conn = conn
        self.region = region or conn.region
        self.retries = retries if retries is not None else RetryLedger(log)
        self._clients: dict[tuple[str, str], Any] = {}
        self._lock = threading.Lock()

    def session(self):
        import boto3

        kwargs: dict[str, Any] = {}
        if self.conn.profile:
            kwargs["profile_name"] = self.conn.profile
        if self.conn.access_key_id:
            kwargs.update(aws_access_key_id=self.conn.access_key_id, aws_secret_access_key=self.conn.secret_access_key,
                          aws_session_token=self.conn.session_token or None)
        with aws_errors("AWS session"):
            return boto3.session.Session(**kwargs)

    def default_region(self) -> str:
        """The region the spec names, else the one the standard chain gives (env, profile)."""
        return self.conn.region or self.session().region_name or ""

    def new_client(self, service: str, region: str | None = None) -> Any:
        """A client of its own (own session): for another thread."""
        from botocore.config import Config

        # total_max_attempts counts the first attempt (botocore's "max_attempts" key would add one).
        config = Config(retries={"total_max_attempts": self.conn.max_attempts, "mode": self.conn.retry_mode},
                        user_agent_extra=f"goldsmith/{__version__}", connect_timeout=15, read_timeout=120)
        region = region or self.region
        with aws_errors(f"{service} client ({region})"):
            client = self.session().client(service, region_name=region, endpoint_url=self.conn.endpoint_url or None,
                                           config=config)
        self.retries.attach(client)
        return client

    def client(self, service: str, region: str | None = None) -> Any:
        """A client cached per (service, region), for the calling thread."""
        key = (service, region or self.region)
        with self._lock:
            if key not in self._clients:
                self._clients[key] = self.new_client(*key)
            return self._clients[key]

    def ec2(self, region: str | None = None) -> Any:
        return self.client("ec2", region)

    def settings_output(self) -> dict[str, Any]:
        """The connection settings that may go into outputs (no secrets), for refresh and delete."""
        return {"region": self.region, "endpoint_url": self.conn.endpoint_url, "profile": self.conn.profile,
                "max_attempts": self.conn.max_attempts, "retry_mode": self.conn.retry_mode}


def connection_from_outputs(outputs: dict[str, Any]) -> AwsConnection:
    doc = outputs.get("aws") or {}
    mode = doc.get("retry_mode") if doc.get("retry_mode") in ("standard", "adaptive") else "adaptive"
    return AwsConnection(region=doc.get("region") or "", endpoint_url=doc.get("endpoint_url") or "",
                         profile=doc.get("profile") or "", max_attempts=int(doc.get("max_attempts") or 8),
                         retry_mode=mode)


# --- tags ---------------------------------------------------------------------------------------------


def tag_list(tags: dict[str, str]) -> list[dict[str, str]]:
    return [{"Key": k, "Value": str(v)} for k, v in sorted(tags.items())]


def tag_spec(resource_type: str, tags: dict[str, str]) -> dict[str, Any]:
    return {"ResourceType": resource_type, "Tags": tag_list(tags)}


def tags_of(resource: dict[str, Any]) -> dict[str, str]:
    return {t["Key"]: t.get("Value", "") for t in resource.get("Tags") or []}


def now_iso() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def owner_tags(build_id: str, *, stack: str, project: str, resource: str, name: str) -> dict[str, str]:
    """The tags every temporary resource carries, so `goldsmith gc` can tell whose it is."""
    return {
        "goldsmith:build-id": build_id,
        "goldsmith:name": name,
        "goldsmith:stack": os.environ.get("PULUMI_STACK") or stack,
        "goldsmith:project": os.environ.get("PULUMI_PROJECT") or project,
        "goldsmith:resource": resource,
        "goldsmith:owner-pid": str(os.getpid()),
        "goldsmith:owner-host": socket.gethostname(),
        "goldsmith:created-at": now_iso(),
    }


# --- polling -------------------------------------------------------------------------------------------


FAILED_IMAGE_STATES = {"failed", "error", "invalid", "deregistered", "disabled", "transient"}


def wait_for_image(ec2: Any, ami_id: str, *, timeout: float, interval: float, log: BuildLog,
                   sleep: Callable[[float], None] = time.sleep, clock: Callable[[], float] = time.monotonic) -> dict[str, Any]:
    """Poll until ``ami_id`` is available and return its description.

    Pending is normal (AWS: minutes); so is "not found" right after CreateImage/CopyImage (eventual
    consistency). A failed state raises with AWS's reason; so does the timeout.
    """
    region = ec2.meta.region_name
    started = clock()
    last_state = ""
    last_report = started
    while True:
        try:
            images = call(ec2, "describe_images", ImageIds=[ami_id])["Images"]
        except AwsError as exc:
            if exc.code != "InvalidAMIID.NotFound":
                raise
            images = []
        state = images[0]["State"] if images else "not found yet"
        if state == "available":
            log.info(f"ami: {ami_id} ({region}) available after {clock() - started:.1f}s")
            return images[0]
        if state in FAILED_IMAGE_STATES:
            reason = (images[0].get("StateReason") or {}).get("Message", "no reason given")
            raise GoldsmithError(f"AMI {ami_id} in {region} is {state}: {reason}")
        now = clock()
        if state != last_state or now - last_report >= 60:
            log.info(f"ami: {ami_id} ({region}) {state} ({now - started:.0f}s)")
            last_state, last_report = state, now
        if now - started >= timeout:
            raise GoldsmithError(f"AMI {ami_id} in {region} is still {state} after {timeout:.0f}s",
                                 hint="raise wait.image_timeout_s (big volumes take long to snapshot)")
        sleep(interval)


def describe_instance(ec2: Any, instance_id: str) -> dict[str, Any] | None:
    try:
        reservations = call(ec2, "describe_instances", InstanceIds=[instance_id])["Reservations"]
    except AwsError as exc:
        if exc.code == "InvalidInstanceID.NotFound":
            return None
        raise
    for reservation in reservations:
        for instance in reservation["Instances"]:
            return instance
    return None


def wait_for_instance(ec2: Any, instance_id: str, want: set[str], *, timeout: float, interval: float,
                      log: BuildLog, fail: set[str] = frozenset(), gone_ok: bool = False,
                      sleep: Callable[[float], None] = time.sleep) -> dict[str, Any] | None:
    """Poll until the instance is in one of the ``want`` states; ``fail`` states raise with the reason."""
    started = time.monotonic()
    last_state = ""
    while True:
        instance = describe_instance(ec2, instance_id)
        if instance is None:
            if gone_ok:
                return None
            state = "not found yet"
        else:
            state = instance["State"]["Name"]
            if state in want:
                return instance
            if state in fail:
                reason = (instance.get("StateReason") or {}).get("Message") or instance.get("StateTransitionReason") or "no reason given"
                raise GoldsmithError(f"instance {instance_id} is {state} ({reason})")
        if state != last_state:
            log.info(f"instance: {instance_id} {state}")
            last_state = state
        if time.monotonic() - started >= timeout:
            raise GoldsmithError(f"instance {instance_id} is still {state} after {timeout:.0f}s (waiting for {', '.join(sorted(want))})",
                                 hint="raise wait.instance_timeout_s")
        sleep(interval)
