"""genai_handler.handler, in-process with the fdk's own InvokeContext (end to end: test_function_e2e)."""

from __future__ import annotations

import io
import json
from datetime import UTC, datetime, timedelta
from types import SimpleNamespace

import pytest
from fdk.context import InvokeContext, TracingContext

import genai_handler
from genai_handler import doctor, handler, logs, tracing
from genai_handler.settings import Settings
from genai_handler.upstream import StreamResult

SETTINGS = Settings(
    project_ocid="ocid1.generativeaiproject.oc1.us-chicago-1.aaaa", base_url="http://127.0.0.1:9/openai/v1"
)


def _status(reply) -> int:
    """What API Gateway answers the caller: Fn-Http-Status (the socket status is always 200)."""
    assert reply.status() == 200
    return int(reply.context().GetResponseHeaders()["fn-http-status"])


def _ctx(deadline: str | None = None, method: str | None = "POST", url: str = "/genai/chat") -> InvokeContext:
    headers = {"fn-call-id": "call-1"}
    if method is not None:
        headers.update({"fn-intent": "httprequest", "fn-http-method": method, "fn-http-request-url": url})
        headers["fn-http-h-x-genai-caller"] = "alice"  # as API Gateway writes it on every route
    return InvokeContext(
        "app",
        "app",
        "fn",
        "fn",
        "call-1",
        deadline=deadline,
        headers=headers,
        method=method,
        request_url=url if method else None,
        fn_format="http-stream",
    )


@pytest.fixture(autouse=True)
def settings(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(handler, "_settings", SETTINGS)


def test_given_an_fn_deadline_when_budgeting_then_the_budget_is_the_time_to_it_less_the_margin() -> None:
    # given
    deadline = (datetime.now(UTC) + timedelta(seconds=20)).isoformat().replace("+00:00", "Z")
    # when / then
    assert 18.5 < handler._budget(_ctx(deadline)) < 19.1


def test_given_no_fn_deadline_when_budgeting_then_the_fdk_default_applies() -> None:
    # when / then
    assert 28 < handler._budget(_ctx(None)) < 29.1


def test_given_a_bug_when_invoked_then_it_becomes_internal_error_without_its_text(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # given
    def broken(*_: object) -> None:
        raise RuntimeError("secret-token /etc/private.pem")

    monkeypatch.setattr(handler, "parse", broken)
    # when
    reply = handler.handle(_ctx(), io.BytesIO(b'{"prompt": "hi"}'))
    # then
    assert _status(reply) == 500
    assert json.loads(reply.body())["error"]["type"] == "internal_error"
    assert "secret-token" not in reply.body() and "secret-token" not in capsys.readouterr().err


def test_given_the_openai_route_when_a_request_is_refused_then_the_error_has_the_openai_shape() -> None:
    # when
    reply = handler.handle(_ctx(url="/genai/v1/responses"), io.BytesIO(b'{"input": ""}'))
    # then
    error = json.loads(reply.body())["error"]
    assert set(error) == {"message", "type", "param", "code"} and error["code"] == "invalid_request"


def test_given_a_doctor_request_when_it_comes_through_the_gateway_then_it_is_refused() -> None:
    # when
    reply = handler.handle(_ctx(), io.BytesIO(b'{"doctor": true}'))
    # then
    assert _status(reply) == 400


def test_given_a_misconfiguration_when_invoked_twice_then_it_is_remembered_and_reported(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # given
    monkeypatch.setattr(handler, "_settings", None)
    monkeypatch.delenv("GENAI_PROJECT_OCID", raising=False)
    # when / then
    for _ in range(2):
        reply = handler.handle(_ctx(), io.BytesIO(b'{"prompt": "hi"}'))
        assert _status(reply) == 500 and "GENAI_PROJECT_OCID" in reply.body()


def test_given_the_package_when_imported_then_it_exports_what_it_lists() -> None:
    # when / then
    assert sorted(genai_handler.__all__) == sorted(genai_handler._EXPORTS)
    for name in genai_handler.__all__:
        assert getattr(genai_handler, name).__name__ == name


def test_given_a_far_future_fn_deadline_when_budgeting_then_it_is_clamped_to_the_longest_oci_call() -> None:
    # given Fn-Deadline 9999-12-31: no platform call lasts that long (detached calls: 3600 s)
    # when / then
    assert 3598 < handler._budget(_ctx("9999-12-31T23:59:59Z")) <= 3599


def test_given_a_far_future_fn_deadline_when_invoked_then_it_still_gets_a_designed_answer(
    rp_identity: object,
) -> None:
    # given nothing listens upstream, when invoked with a deadline 8,000 years away
    reply = handler.handle(_ctx("9999-12-31T23:59:59Z"), io.BytesIO(b'{"prompt": "hi"}'))
    # then the caller gets the connection failure, not a 500 from an overflowing socket timeout
    assert _status(reply) == 502
    assert json.loads(reply.body())["error"]["type"] == "upstream_error"


def _capture_logs() -> None:
    """Our handler keeps the stderr it was made with: remake it on the one capsys installed."""
    logs.logger.handlers.clear()
    logs.configure()


def _log_lines(capsys: pytest.CaptureFixture[str]) -> list[dict]:
    """Our log lines; call `_capture_logs()` before the invocation."""
    return [json.loads(line) for line in capsys.readouterr().err.splitlines() if line.startswith("{")]


def test_given_a_crash_while_shaping_the_answer_when_invoked_then_it_is_internal_error_and_logged(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    _capture_logs()
    # given the upstream call succeeds but shaping the answer fails
    result = SimpleNamespace(request_id="opc-1", latency_ms=1.0, attempts=1, response=SimpleNamespace(usage=None))
    monkeypatch.setattr(handler, "client_for", lambda _: None)
    monkeypatch.setattr(handler, "create_response", lambda *_: result)

    def broken(_: object) -> None:
        raise AttributeError("'str' object has no attribute 'model_dump' secret-answer")

    monkeypatch.setattr(handler, "shape", broken)
    # when
    reply = handler.handle(_ctx(), io.BytesIO(b'{"prompt": "hi"}'))
    # then a designed 500, and the log line says 500 too, without the exception text
    assert _status(reply) == 500 and json.loads(reply.body())["error"]["type"] == "internal_error"
    [line] = _log_lines(capsys)
    assert line["status"] == 500 and "secret-answer" not in json.dumps(line)


def test_given_a_crash_while_logging_when_invoked_then_the_answer_is_still_designed(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # given
    def broken(*_: object, **__: object) -> None:
        raise TypeError("secret-token in a log field")

    _capture_logs()
    monkeypatch.setattr(handler, "_log", broken)
    # when
    reply = handler.handle(_ctx(), io.BytesIO(b'{"prompt": ""}'))
    # then
    assert _status(reply) == 500 and json.loads(reply.body())["error"]["type"] == "internal_error"
    assert "secret-token" not in reply.body() and "secret-token" not in capsys.readouterr().err


def test_given_a_crash_in_the_doctor_when_invoked_directly_then_it_is_a_designed_json_error(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # given the doctor itself fails (e.g. on a setting it cannot parse)
    def broken() -> None:
        raise ValueError("Port could not be cast to integer value as 'abc' secret")

    _capture_logs()
    monkeypatch.setattr(doctor, "diagnose", broken)
    # when a direct fn invoke asks for it
    reply = handler.handle(_ctx(method=None), io.BytesIO(b'{"doctor": true}'))
    # then the fdk gets a JSON error to pass on, never the exception
    assert reply.status() == 200
    assert json.loads(reply.body())["error"]["type"] == "internal_error"
    assert "secret" not in reply.body() and "secret" not in capsys.readouterr().err


def test_given_a_trace_report_that_crashes_when_invoked_then_the_answer_is_unchanged(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    def broken(*_: object, **__: object) -> None:
        raise RuntimeError("a bug in tracing, with the collector's secret-data-key")

    # given tracing is on for this call, and reporting spans crashes
    monkeypatch.setattr(tracing, "report", broken)
    ctx = _ctx()
    trace = TracingContext(True, "http://127.0.0.1:9/collector", "5b8aa5a2d2c872e8", "051581bf3cb55c13", None, 1, None)
    monkeypatch.setattr(ctx, "TracingContext", lambda: trace)
    _capture_logs()
    # when an invocation is answered
    reply = handler.handle(ctx, io.BytesIO(b'{"input": ""}'))
    # then the caller gets the same answer as without tracing, and the log line counts the failure
    assert _status(reply) == 400 and json.loads(reply.body())["error"]["type"] == "invalid_request"
    [line] = _log_lines(capsys)
    assert line["trace_report"] == "failed" and "secret" not in json.dumps(line)


def test_given_a_caller_header_when_invoked_then_it_is_read_only_from_the_gateways_headers(
    capsys: pytest.CaptureFixture[str],
) -> None:
    # given the same header as a gateway caller header, and as a plain header on a direct invoke
    gateway = InvokeContext(
        "app",
        "app",
        "fn",
        "fn",
        "call-1",
        headers={
            "fn-intent": "httprequest",
            "fn-http-method": "POST",
            "fn-http-request-url": "/genai/chat",
            "fn-http-h-x-genai-caller": "alice",
        },
        method="POST",
        request_url="/genai/chat",
        fn_format="http-stream",
    )
    direct = InvokeContext(
        "app", "app", "fn", "fn", "call-2", headers={"x-genai-caller": "mallory"}, method=None, fn_format="http-stream"
    )
    _capture_logs()
    # when
    for ctx in (gateway, direct):
        handler.handle(ctx, io.BytesIO(b'{"input": ""}'))
    # then only the gateway's is logged
    first, second = _log_lines(capsys)
    assert first["caller"] == "alice" and "caller" not in second


def test_given_stream_true_on_the_plain_route_when_invoked_then_400_naming_the_openai_route() -> None:
    # when
    reply = handler.handle(_ctx(), io.BytesIO(b'{"prompt": "hi", "stream": true}'))
    # then
    error = json.loads(reply.body())["error"]
    assert _status(reply) == 400 and error["type"] == "invalid_request"
    assert (
        error["message"]
        == "stream must be false here: streaming is offered on the OpenAI-compatible route (/v1/responses)"
    )


def test_given_a_relayed_stream_when_invoked_then_the_reply_is_the_event_stream_with_its_request_id(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # given the relay returns OCI's events (upstream.stream_response, tested in test_streaming.py)
    events = b'event: response.created\ndata: {"type": "response.created", "sequence_number": 0}\n\n'
    result = StreamResult(events, None, "opc-7", 1, 2.0, None)
    monkeypatch.setattr(handler, "client_for", lambda _: None)
    monkeypatch.setattr(handler, "stream_response", lambda *_: result)
    _capture_logs()
    # when
    reply = handler.handle(_ctx(url="/genai/v1/responses"), io.BytesIO(b'{"input": "hi", "stream": true}'))
    # then
    headers = reply.context().GetResponseHeaders()
    assert _status(reply) == 200 and reply.body() == events
    assert headers["content-type"] == "text/event-stream"
    assert headers["fn-http-h-x-request-id"] == "opc-7" and headers["fn-http-h-opc-request-id"] == "opc-7"
    [line] = _log_lines(capsys)
    assert line["stream"] is True and line["request_id"] == "opc-7" and line["status"] == 200


def test_given_a_bug_in_the_relay_when_streaming_then_it_is_a_designed_json_error_without_its_text(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # given
    def broken(*_: object) -> None:
        raise RuntimeError("secret-stream-bug")

    monkeypatch.setattr(handler, "client_for", lambda _: None)
    monkeypatch.setattr(handler, "stream_response", broken)
    # when
    reply = handler.handle(_ctx(url="/genai/v1/responses"), io.BytesIO(b'{"input": "hi", "stream": true}'))
    # then
    assert _status(reply) == 500 and json.loads(reply.body())["error"]["code"] == "internal_error"
    assert reply.context().GetResponseHeaders()["content-type"] == "application/json"
    assert "secret-stream-bug" not in capsys.readouterr().err
