"""Zipkin v2 spans for one invocation, posted to OCI's trace collector when the function's tracing is on.

With tracing enabled OCI Functions sets OCI_TRACING_ENABLED=1 and OCI_TRACE_COLLECTOR_URL (an APM
domain's upload URL, with the domain's data key in its query: it is never logged) and sends the
platform's B3 ids (x-b3-traceid, x-b3-spanid, x-b3-sampled) with each call. The fdk (context.py,
0.1.128) turns them into `ctx.TracingContext()`, whose `zipkin_attrs()` holds the ids to use: the
incoming trace id, the platform's span id as the parent, a fresh id for this function's span.
Oracle's sample (oracle-samples/oracle-functions-samples, samples/trace-functions-with-apm/python/
func.py) posts the same Zipkin v2 JSON to that URL with py_zipkin, synchronously before answering.

This module does the same without a dependency, and bounded: OCI freezes a container once it has
answered, so a send left for after the reply may never run. The send runs on a daemon thread that
the invocation waits for at most REPORT_BOUND_S, and never past its own deadline; a send still
running then (a slow collector) finishes or fails on its own, and a failed one is only counted in
the log line (`trace_report`). Spans carry ids, names, statuses, the model id, the opc-request-id
and token counts: never the prompt, the output, a token or a key.

The handler imports this module only when tracing is on, so the default cold path never loads it.
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

from .upstream import Attempt

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
    (sent, rejected, failed, late, busy or skipped). Never raises, never waits past `bound_s`."""
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
    None when the incoming trace id is not a Zipkin id, as then there is no trace to join."""
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
    root = _span(
        trace_id,
        span_id,
        _span_id(ids.parent_span_id),
        "invoke",
        "SERVER",
        invocation.start_at,
        invocation.duration_s,
        service,
        tags,
    )
    children = [
        {
            **_span(
                trace_id,
                _new_id(),
                span_id,
                "responses.create",
                "CLIENT",
                attempt.start_at,
                attempt.duration_s,
                service,
                _attempt_tags(attempt),
            ),
            "remoteEndpoint": {"serviceName": _UPSTREAM_SERVICE},
        }
        for attempt in invocation.attempts
    ]
    return [root, *children]


def _span_id(value: object) -> str | None:
    """A 64-bit Zipkin span id in lower-case hex, or None."""
    text = str(value or "").lower()
    return text if len(text) == 16 and _ID.fullmatch(text) else None


def send(url: str, found: list[dict[str, Any]], bound_s: float) -> str:
    """POST the spans from a daemon thread, waiting for it at most `bound_s` seconds."""
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
    global _client
    with _client_lock:
        if _client is None:
            _client = httpx2.Client(timeout=httpx2.Timeout(_SEND_TIMEOUT_S, connect=2.0))
        return _client


def _span(
    trace_id: str,
    span_id: str,
    parent: str | None,
    name: str,
    kind: str,
    start_at: float,
    duration_s: float,
    service: str,
    tags: dict[str, str],
) -> dict[str, Any]:
    """A Zipkin v2 span (zipkin-api zipkin2-api.yaml): times in microseconds since the epoch."""
    span: dict[str, Any] = {
        "traceId": trace_id,
        "id": span_id,
        "name": name,
        "kind": kind,
        "timestamp": int(start_at * 1_000_000),
        "duration": max(1, int(duration_s * 1_000_000)),
        "localEndpoint": {"serviceName": service},
        "tags": tags,
    }
    if parent:
        span["parentId"] = parent
    return span


def _attempt_tags(attempt: Attempt) -> dict[str, str]:
    usage = attempt.usage or {}
    return _tags(
        {
            "genai.model": attempt.model,
            "genai.attempt": attempt.number,
            "http.status_code": attempt.status,
            "opc-request-id": attempt.request_id,
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
