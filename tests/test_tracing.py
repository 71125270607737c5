"""genai_handler.tracing: Zipkin v2 spans from the fdk's TracingContext, posted to a loopback collector."""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from fdk.context import TracingContext

from genai_handler import tracing
from genai_handler.settings import DEFAULT_MODEL
from genai_handler.upstream import Attempt

TRACE_ID = "5b8aa5a2d2c872e8321cf37308d69df2"
PLATFORM_SPAN = "051581bf3cb55c13"
DATA_KEY = "CANARY-APM-DATA-KEY-r4ts"


class Collector:
    """A Zipkin collector on 127.0.0.1 that records what it is sent; `mode` is how it answers:
    accept (202, as APM does), refuse (500), or slow (answers after `delay_s`, or at once when
    `release` is set, so a test waits no longer than it needs)."""

    def __init__(self) -> None:
        self.received: list[Any] = []
        self.paths: list[str] = []
        self.mode = "accept"
        self.delay_s = 5.0
        self.arrived = threading.Event()
        self.release = threading.Event()
        collector = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: Any) -> None:
                pass

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                collector.paths.append(self.path)
                collector.received.append(json.loads(body))
                collector.arrived.set()
                if collector.mode == "slow":
                    collector.release.wait(collector.delay_s)
                self.send_response(500 if collector.mode == "refuse" else 202)
                self.send_header("Content-Length", "0")
                self.end_headers()

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self.url = (
            f"http://127.0.0.1:{self._server.server_address[1]}/20200101/observations/public-span"
            f"?dataFormat=zipkin&dataFormatVersion=2&dataKey={DATA_KEY}"
        )

    def __enter__(self) -> Collector:
        threading.Thread(target=self._server.serve_forever, args=(0.05,), daemon=True).start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()

    def reset(self, mode: str = "accept") -> None:
        self.received.clear()
        self.paths.clear()
        self.arrived.clear()
        self.release.clear()
        self.mode = mode

    def spans(self, timeout_s: float = 10.0) -> list[dict[str, Any]]:
        """The spans of the first report, waiting for it to arrive."""
        assert self.arrived.wait(timeout_s), "no spans reached the collector"
        return self.received[0]


def dead_url() -> str:
    """A loopback URL where nothing listens: connection refused."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}/20200101/observations/public-span?dataKey={DATA_KEY}"


@pytest.fixture(scope="module")
def collector() -> Iterator[Collector]:
    with Collector() as server:
        yield server


@pytest.fixture
def fresh(collector: Collector) -> Collector:
    collector.reset()
    return collector


def _context(url: str, trace_id: str | None = TRACE_ID, span_id: str | None = PLATFORM_SPAN) -> TracingContext:
    """What the fdk builds from OCI_TRACING_ENABLED=1 and the platform's x-b3-* headers."""
    return TracingContext(True, url, trace_id, span_id, None, 1, None)


ATTEMPTS = [
    Attempt(1, DEFAULT_MODEL, time.time() - 2, 0.4, 500, "OPC-FAILED", None, "upstream_error"),
    Attempt(
        2,
        DEFAULT_MODEL,
        time.time() - 1,
        0.8,
        200,
        "OPC-ANSWERED",
        {"input_tokens": 12, "output_tokens": 34, "total_tokens": 46},
        None,
    ),
]


def _report(url: str, bound_s: float = 5.0, trace: Any = None, **overrides: Any) -> dict[str, str]:
    arguments: dict[str, Any] = {
        "call_id": "call-1",
        "start_at": time.time() - 2.5,
        "duration_s": 2.5,
        "status": 200,
        "error_type": None,
        "model": DEFAULT_MODEL,
        "attempts": ATTEMPTS,
        **overrides,
    }
    return tracing.report(trace or _context(url), tracing.Invocation(**arguments), bound_s=bound_s)


def test_given_two_attempts_when_reported_then_the_span_joins_the_platform_trace_with_attempt_children(
    fresh: Collector,
) -> None:
    # when an invocation with two upstream attempts is reported
    fields = _report(fresh.url)
    # then the collector gets Zipkin v2 JSON: the invocation, child of the platform's span, same trace id
    assert fields == {"trace_id": TRACE_ID, "trace_report": "sent"}
    invocation, failed, answered = fresh.spans()
    assert invocation["traceId"] == failed["traceId"] == answered["traceId"] == TRACE_ID
    assert invocation["parentId"] == PLATFORM_SPAN and invocation["id"] != PLATFORM_SPAN
    assert invocation["kind"] == "SERVER" and invocation["localEndpoint"] == {"serviceName": "none::none"}
    assert invocation["tags"]["fn.call_id"] == "call-1" and invocation["tags"]["http.status_code"] == "200"
    assert invocation["tags"]["genai.model"] == DEFAULT_MODEL and "error" not in invocation["tags"]
    assert invocation["tags"]["generatedBy"] == "faas"
    assert 2_400_000 <= invocation["duration"] <= 2_600_000 and invocation["timestamp"] > 1.7e15
    # and each attempt is a CLIENT child with the model, status, opc-request-id, usage and error
    assert failed["parentId"] == answered["parentId"] == invocation["id"]
    assert len({invocation["id"], failed["id"], answered["id"]}) == 3
    assert all(len(span["id"]) == 16 for span in (invocation, failed, answered))
    assert failed["kind"] == "CLIENT" and failed["remoteEndpoint"] == {"serviceName": "oci-generative-ai"}
    assert failed["tags"] == {
        "genai.model": DEFAULT_MODEL,
        "genai.attempt": "1",
        "http.status_code": "500",
        "opc-request-id": "OPC-FAILED",
        "error": "upstream_error",
    }
    assert answered["tags"] == {
        "genai.model": DEFAULT_MODEL,
        "genai.attempt": "2",
        "http.status_code": "200",
        "opc-request-id": "OPC-ANSWERED",
        "genai.usage.input_tokens": "12",
        "genai.usage.output_tokens": "34",
        "genai.usage.total_tokens": "46",
    }
    assert answered["duration"] == 800_000
    # and every tag is a string, as Zipkin v2 requires
    assert all(isinstance(v, str) for span in (invocation, failed, answered) for v in span["tags"].values())
    # and the report goes to the collector URL as OCI gave it, data key included
    assert fresh.paths == ["/" + fresh.url.split("/", 3)[3]]


def test_given_a_failed_invocation_when_reported_then_it_is_marked_with_its_error_type(fresh: Collector) -> None:
    # when
    _report(fresh.url, status=502, error_type="upstream_error")
    # then
    [invocation, *_] = fresh.spans()
    assert invocation["tags"]["error"] == "upstream_error" and invocation["tags"]["http.status_code"] == "502"


def test_given_a_refusing_collector_when_reported_then_it_is_counted_not_raised(fresh: Collector) -> None:
    # given
    fresh.reset("refuse")
    # when / then
    assert _report(fresh.url)["trace_report"] == "rejected"


def test_given_a_dead_collector_when_reported_then_it_is_counted_not_raised() -> None:
    # when / then
    started = time.monotonic()
    assert _report(dead_url())["trace_report"] == "failed"
    assert time.monotonic() - started < tracing.REPORT_BOUND_S + 0.5


def test_given_a_slow_collector_when_reported_then_the_invocation_waits_the_bound_at_most(fresh: Collector) -> None:
    # given a collector that answers after 5 s
    fresh.reset("slow")
    # when spans are reported
    started = time.monotonic()
    fields = _report(fresh.url)
    # then the report gives up waiting at the bound, and the spans were on their way
    assert fields["trace_report"] == "late"
    assert time.monotonic() - started < tracing.REPORT_BOUND_S + 0.5
    assert fresh.spans()


def test_given_a_slow_collector_when_reported_then_the_wait_never_passes_the_invocation_deadline(
    fresh: Collector,
) -> None:
    # given
    fresh.reset("slow")
    # when / then
    started = time.monotonic()
    assert _report(fresh.url, bound_s=0.05)["trace_report"] == "late"
    assert time.monotonic() - started < 0.4
    assert _report(fresh.url, bound_s=-1)["trace_report"] == "skipped"


def test_given_a_slow_collector_when_too_many_reports_come_then_extra_sends_are_dropped(fresh: Collector) -> None:
    # given a collector slower than the bound, when more reports come than may run at once
    fresh.reset("slow")
    fresh.delay_s = 2.0
    try:
        outcomes = [_report(fresh.url, bound_s=0.05)["trace_report"] for _ in range(6)]
    finally:
        fresh.delay_s = 5.0
    # then the extra ones are dropped at once, not queued behind the slow ones
    assert outcomes.count("busy") >= 2 and set(outcomes) <= {"late", "busy"}
    # when the slow sends end, then later reports go again: their places were given back
    fresh.release.set()
    fresh.reset()
    assert _report_once_not_busy(fresh.url) == "sent"


def _report_once_not_busy(url: str, timeout_s: float = 5.0) -> str:
    """The first outcome that is not "busy", while the sends left running end (a slot never given
    back keeps every report busy, and the test fails at `timeout_s`)."""
    until = time.monotonic() + timeout_s
    while (outcome := _report(url)["trace_report"]) == "busy" and time.monotonic() < until:
        time.sleep(0.01)
    return outcome


def test_given_a_trace_id_that_is_not_a_zipkin_id_when_reported_then_it_is_not_joined(fresh: Collector) -> None:
    # given
    trace = _context(fresh.url, trace_id="not-hex\n")
    # when / then
    assert _report(fresh.url, trace=trace) == {"trace_report": "skipped"}
    assert not fresh.received


def test_given_a_128_or_64_bit_trace_id_when_reported_then_it_is_kept_as_sent(fresh: Collector) -> None:
    # when / then
    assert _report(fresh.url, trace=_context(fresh.url, trace_id=TRACE_ID[16:]))["trace_id"] == TRACE_ID[16:]


def test_given_a_report_that_cannot_be_built_when_reported_then_it_is_counted_not_raised(fresh: Collector) -> None:
    class Broken(TracingContext):
        def zipkin_attrs(self) -> Any:
            raise RuntimeError("a bug")

    # given
    broken = Broken(True, fresh.url, TRACE_ID, PLATFORM_SPAN, None, 1, None)
    # when / then
    assert _report(fresh.url, trace=broken) == {"trace_report": "failed"}
