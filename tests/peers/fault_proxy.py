"""A fault-injecting reverse proxy in front of the moto server: the AWS client's ``endpoint_url``
points here; a configurable share of the requests is answered with a transient error instead of
being forwarded (so moto never sees them and nothing is done twice), the rest go to moto unchanged.

The faults are the ones AWS really sends, in the shape of the protocol the request used:

- ``503``: HTTP 503 with an empty body (a load balancer's answer; botocore names it by the status),
- ``RequestLimitExceeded``: EC2's throttling, HTTP 503 with EC2's error document
  ``<Response><Errors><Error><Code>RequestLimitExceeded</Code>...`` (the shape botocore's EC2 parser reads),
- ``Throttling``: HTTP 400 with the same document and code ``Throttling`` (query APIs), or the JSON
  protocol's ``{"__type": "ThrottlingException"}`` for JSON services such as SSM.

Deterministic: a seeded RNG picks the requests, and a request right after a fault for the same
operation is always forwarded (so any call succeeds by its second attempt) unless ``repeat`` is set. ``injected`` counts what
was injected, per operation and per kind.
"""

from __future__ import annotations

import collections
import http.client
import json
import random
import threading
import urllib.parse
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

KINDS = ("503", "RequestLimitExceeded", "Throttling")
HOP_BY_HOP = {"connection", "keep-alive", "proxy-authenticate", "proxy-authorization", "te", "trailers",
              "transfer-encoding", "upgrade", "content-length", "host"}


def operation_of(headers, body: bytes) -> str:
    """'ec2:RunInstances' (query protocol: Action in the form body) or 'ssm:GetParameter' (JSON: X-Amz-Target)."""
    target = headers.get("X-Amz-Target")
    if target:
        prefix, _, op = target.rpartition(".")
        service = prefix.split("_")[0].removeprefix("Amazon").removeprefix("AWS").lower()  # AmazonSSM -> ssm
        return f"{service or 'json'}:{op}"
    fields = urllib.parse.parse_qs(body.decode("utf-8", "replace"))
    action = (fields.get("Action") or ["?"])[0]
    auth = headers.get("Authorization", "")
    service = auth.split("Credential=", 1)[-1].split("/")[3] if "Credential=" in auth and auth.count("/") >= 4 else "query"
    return f"{service}:{action}"


def ec2_error(code: str, message: str) -> bytes:
    return (f'<?xml version="1.0" encoding="UTF-8"?>\n<Response><Errors><Error><Code>{code}</Code>'
            f"<Message>{message}</Message></Error></Errors><RequestID>{uuid.uuid4()}</RequestID></Response>").encode()


class FaultProxy:
    def __init__(self, upstream: str, *, rate: float = 0.3, seed: int = 6, kinds: tuple[str, ...] = KINDS,
                 repeat: bool = False) -> None:
        parsed = urllib.parse.urlparse(upstream)
        self.upstream_host, self.upstream_port = parsed.hostname, parsed.port or 80
        self.rate = rate
        self.kinds = kinds
        self.repeat = repeat  # allow faults in a row for one operation (to exhaust a client's attempts)
        self._rng = random.Random(seed)
        self._lock = threading.Lock()
        self._last_faulted: set[str] = set()
        self.injected: collections.Counter[str] = collections.Counter()  # per operation
        self.injected_kinds: collections.Counter[str] = collections.Counter()
        self.forwarded: collections.Counter[str] = collections.Counter()
        self.enabled = True
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *_args) -> None:  # quiet
                return

            def _handle(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                op = operation_of(self.headers, body)
                kind = proxy._decide(op)
                if kind is not None:
                    self._fault(kind, json_protocol=bool(self.headers.get("X-Amz-Target")))
                    return
                self._forward(body)

            do_GET = do_POST = do_PUT = do_DELETE = do_HEAD = _handle

            def _fault(self, kind: str, *, json_protocol: bool) -> None:
                if kind == "503":
                    status, ctype, payload = 503, "text/plain", b""
                elif json_protocol:
                    status, ctype = 400, "application/x-amz-json-1.1"
                    payload = json.dumps({"__type": "ThrottlingException", "message": "Rate exceeded"}).encode()
                elif kind == "RequestLimitExceeded":
                    status, ctype, payload = 503, "text/xml", ec2_error("RequestLimitExceeded", "Request limit exceeded.")
                else:
                    status, ctype, payload = 400, "text/xml", ec2_error("Throttling", "Rate exceeded")
                self.send_response(status)
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            def _forward(self, body: bytes) -> None:
                conn = http.client.HTTPConnection(proxy.upstream_host, proxy.upstream_port, timeout=120)
                try:
                    headers = {k: v for k, v in self.headers.items() if k.lower() not in HOP_BY_HOP}
                    headers["Host"] = self.headers.get("Host", "")
                    conn.request(self.command, self.path, body=body, headers=headers)
                    resp = conn.getresponse()
                    payload = resp.read()
                    self.send_response(resp.status)
                    for k, v in resp.getheaders():
                        if k.lower() not in HOP_BY_HOP:
                            self.send_header(k, v)
                    self.send_header("Content-Length", str(len(payload)))
                    self.end_headers()
                    self.wfile.write(payload)
                finally:
                    conn.close()

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True, name="fault-proxy")

    def _decide(self, op: str) -> str | None:
        with self._lock:
            if not self.enabled or (op in self._last_faulted and not self.repeat) or self._rng.random() >= self.rate:
                self._last_faulted.discard(op)
                self.forwarded[op] += 1
                return None
            kind = self._rng.choice(self.kinds)
            self._last_faulted.add(op)
            self.injected[op] += 1
            self.injected_kinds[kind] += 1
            return kind

    @property
    def total_injected(self) -> int:
        with self._lock:
            return sum(self.injected.values())

    def reset_counts(self) -> None:
        with self._lock:
            self.injected.clear()
            self.injected_kinds.clear()
            self.forwarded.clear()
            self._last_faulted.clear()

    def __enter__(self) -> "FaultProxy":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.server.shutdown()
        self.server.server_close()
