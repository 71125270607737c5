"""Zipkin v2 spans for one invocation, posted to OCI's trace collector when the function's tracing is on.

As in Oracle's sample (oracle-samples/oracle-functions-samples, samples/trace-functions-with-apm/python)
they are sent before answering, as OCI freezes a container once it has answered; here without a
dependency, and bounded. Spans carry ids, names, statuses, the model id, the opc-request-id and token
counts: never the prompt, the output, a token or a key. Imported only when tracing is on.
"""

from __future__ import annotations

import json
import random
import re
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import httpx2
from fdk.context import TracingContext

from .upstream import REQUEST_ID_HEADER, Attempt

REPORT_BOUND_S = 0.5  # the longest an invocation waits for its spans to be accepted
_SEND_TIMEOUT_S = 5.0  # how long a send left running may take before it gives up
_MAX_IN_FLIGHT = 4  # sends still running (a slow collector); past this, reports are dropped
_UPSTREAM_SERVICE = "oci-generative-ai"
_ID = re.compile(r"[0-9a-f]{16}|[0-9a-f]{32}")  # Zipkin v2: 64- or 128-bit ids in lower-case hex

_in_flight = threading.BoundedSemaphore(_MAX_IN_FLIGHT)
_client: httpx2.Client | None = None
_client_lock = threading.Lock()


@dataclass(frozen=True)
class Invocation:
    """What the spans describe: one call's outcome and its upstream attempts (`start_at`: time.time())."""

    call_id: str | None
    start_at: float
    duration_s: float
    status: int
    error_type: str | None
    model: str | None
    attempts: Sequence[Attempt]


def report(trace: TracingContext, invocation: Invocation, *, bound_s: float) -> dict[str, str]:
    """Send this invocation's spans; returns the log line's `trace_id` and `trace_report`
    (sent, rejected, failed, late, busy or skipped). Never raises, never waits past `bound_s`.
    The collector URL (OCI_TRACE_COLLECTOR_URL) holds the APM domain's data key: it is never logged."""
    try:
        found = spans(trace, invocation)
        if found is None:
            return {"trace_report": "skipped"}
        fields = {"trace_id": found[0]["traceId"]}
        url = trace.trace_collector_url()
        bound = min(REPORT_BOUND_S, bound_s)
        if not url or bound <= 0:
            return {**fields, "trace_report": "skipped"}
        return {**fields, "trace_report": send(url, found, bound)}
    except Exception:  # tracing must never fail the invocation it describes
        return {"trace_report": "failed"}


def spans(trace: TracingContext, invocation: Invocation) -> list[dict[str, Any]] | None:
    """The invocation's span (joined to the platform's) and one child per upstream attempt;
    None when the incoming trace id is not a Zipkin id, as then there is no trace to join.

    The fdk (context.py, 0.1.128) reads the platform's B3 headers (x-b3-traceid, x-b3-spanid,
    x-b3-sampled) into `zipkin_attrs()`: the incoming trace id, the platform's span id as the
    parent, a fresh id for this function's span."""
    ids = trace.zipkin_attrs()
    trace_id = str(ids.trace_id or "").lower()
    if not _ID.fullmatch(trace_id):
        return None
    span_id = _span_id(ids.span_id) or _new_id()
    service = trace.service_name()
    tags = {key: str(value) for key, value in trace.annotations().items() if value is not None}
    tags.update(
        _tags(
            {
                "fn.call_id": invocation.call_id,
                "http.status_code": invocation.status,
                "genai.model": invocation.model,
                "error": invocation.error_type,
            }
        )
    )
    root = _Span(
        trace_id=trace_id,
        span_id=span_id,
        parent_id=_span_id(ids.parent_span_id),
        name="invoke",
        kind="SERVER",
        service=service,
        start_at=invocation.start_at,
        duration_s=invocation.duration_s,
        tags=tags,
    )
    children = [
        _Span(
            trace_id=trace_id,
            span_id=_new_id(),
            parent_id=span_id,
            name="responses.create",
            kind="CLIENT",
            service=service,
            start_at=attempt.start_at,
            duration_s=attempt.duration_s,
            tags=_attempt_tags(attempt),
            remote_service=_UPSTREAM_SERVICE,
        )
        for attempt in invocation.attempts
    ]
    return [span.to_json() for span in (root, *children)]


def _span_id(value: object) -> str | None:
    """A 64-bit Zipkin span id in lower-case hex, or None."""
    text = str(value or "").lower()
    return text if len(text) == 16 and _ID.fullmatch(text) else None


def send(url: str, found: list[dict[str, Any]], bound_s: float) -> str:
    """POST the spans from a daemon thread, waiting for it at most `bound_s` seconds. A send still
    running then (a slow collector) finishes or fails on its own, counted only in the log line."""
    if not _in_flight.acquire(blocking=False):
        return "busy"
    outcome: list[str] = []
    payload = json.dumps(found).encode()

    def post() -> None:
        try:
            response = _http().post(url, content=payload, headers={"content-type": "application/json"})
            outcome.append("sent" if response.is_success else "rejected")
        except Exception:
            outcome.append("failed")
        finally:
            _in_flight.release()

    sender = threading.Thread(target=post, name="trace-report", daemon=True)
    try:
        sender.start()
    except RuntimeError:  # no thread to be had: drop the report rather than block
        _in_flight.release()
        return "failed"
    sender.join(bound_s)
    return outcome[0] if outcome else "late"


def _http() -> httpx2.Client:
    """One client per container, so warm invocations reuse the TLS connection to the collector."""
    global _client  # noqa: PLW0603  (one client per container, built lazily)
    with _client_lock:
        if _client is None:
            _client = httpx2.Client(timeout=httpx2.Timeout(_SEND_TIMEOUT_S, connect=2.0))
        return _client


@dataclass(frozen=True)
class _Span:
    """One span; `to_json` writes it as Zipkin v2 (zipkin-api zipkin2-api.yaml)."""

    trace_id: str
    span_id: str
    parent_id: str | None
    name: str
    kind: str  # SERVER or CLIENT
    service: str
    start_at: float
    duration_s: float
    tags: dict[str, str]
    remote_service: str | None = None

    def to_json(self) -> dict[str, Any]:
        """Times in microseconds since the epoch; a span lasts at least one."""
        span: dict[str, Any] = {
            "traceId": self.trace_id,
            "id": self.span_id,
            "name": self.name,
            "kind": self.kind,
            "timestamp": int(self.start_at * 1_000_000),
            "duration": max(1, int(self.duration_s * 1_000_000)),
            "localEndpoint": {"serviceName": self.service},
            "tags": self.tags,
        }
        if self.parent_id:
            span["parentId"] = self.parent_id
        if self.remote_service:
            span["remoteEndpoint"] = {"serviceName": self.remote_service}
        return span


def _attempt_tags(attempt: Attempt) -> dict[str, str]:
    usage = attempt.usage or {}
    return _tags(
        {
            "genai.model": attempt.model,
            "genai.attempt": attempt.number,
            "http.status_code": attempt.status,
            REQUEST_ID_HEADER: attempt.request_id,
            "genai.usage.input_tokens": usage.get("input_tokens"),
            "genai.usage.output_tokens": usage.get("output_tokens"),
            "genai.usage.total_tokens": usage.get("total_tokens"),
            "error": attempt.error_type,
        }
    )


def _tags(values: dict[str, object]) -> dict[str, str]:
    """Zipkin tags are strings; absent values are left out."""
    return {key: str(value) for key, value in values.items() if value is not None}


def _new_id() -> str:
    return f"{random.getrandbits(64) or 1:016x}"
