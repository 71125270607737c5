"""Upstream faults through the real fdk: each becomes its documented status before the deadline,
and the same warm container answers the next invocation normally.

test_function_e2e.py already covers 429 with a long Retry-After, a short throttle, 503 then 200,
persistent 5xx, two 401/404s and a slow model; test_upstream.py covers the same faults in-process.
This module covers what only the whole path shows: the fdk, the handler and the SDK together.
"""

from __future__ import annotations

import email.utils
import http.client
import json
import socket
import time
from pathlib import Path

import pytest

from genai_handler.local.agent import FunctionProcess, Invocation
from genai_handler.local.endpoint import Fault, LocalEndpoint, blackhole
from genai_handler.local.identity import LocalIdentity
from genai_handler.settings import DEFAULT_MODEL

from .conftest import PROJECT_OCID, function_env, start_function, wait_until_recorded

DEADLINE_S = 6.0


def _timed(function: FunctionProcess, deadline_s: float = DEADLINE_S, **kwargs: object) -> tuple[Invocation, float]:
    started = time.monotonic()
    answer = function.invoke({"prompt": "fault?"}, deadline_s=deadline_s, **kwargs)  # type: ignore[arg-type]
    return answer, time.monotonic() - started


def _error(answer: Invocation, status: int, error_type: str) -> dict:
    assert answer.http_status == status, answer.body
    body = answer.json()
    assert set(body) == {"error"} and set(body["error"]) == {"type", "message", "request_id"}
    assert body["error"]["type"] == error_type
    return body["error"]


def _recovers(function: FunctionProcess, upstream: LocalEndpoint) -> None:
    """The same container answers the next invocation normally."""
    upstream.reset()
    answer = function.invoke({"prompt": "and now?"})
    assert answer.http_status == 200, answer.body
    assert answer.json()["output_text"] == "Local answer to: and now?"
    assert [r.status for r in upstream.requests] == [200]


def test_given_a_refused_connection_when_invoked_then_a_502_and_the_container_recovers_when_oci_is_back(
    identity: LocalIdentity, tmp_path: Path
) -> None:
    # given a function whose GENAI_BASE_URL points at a port nobody listens on: bound here and never
    # listened on, so connections are refused and no other test (xdist runs them side by side) takes it
    reserved = socket.socket()
    reserved.bind(("127.0.0.1", 0))
    port = reserved.getsockname()[1]
    env = function_env(identity, LocalEndpoint(), GENAI_BASE_URL=f"http://127.0.0.1:{port}/openai/v1")
    function = start_function(env, tmp_path / "function.log")
    # when
    try:
        with reserved:
            answer, elapsed = _timed(function)
        # then the caller gets 502 upstream_error, retried within the deadline, not a hang
        error = _error(answer, 502, "upstream_error")
        assert "could not reach" in error["message"] and elapsed < DEADLINE_S
        # when the endpoint comes up on that port, then the same container answers
        with LocalEndpoint(trusted_issuer=identity.issuer_public_key, project_ocid=PROJECT_OCID, port=port) as server:
            _recovers(function, server)
    finally:
        function.stop()
    assert "Traceback" not in (tmp_path / "function.log").read_text()


@pytest.mark.parametrize("kind", ["reset", "truncated", "drop"])
def test_given_a_connection_broken_on_every_attempt_when_invoked_then_a_502_comes_within_the_deadline(
    function: FunctionProcess, upstream: LocalEndpoint, kind: str
) -> None:
    # given OCI's connection breaks mid-answer on the first try and both retries
    upstream.inject(*[Fault(kind=kind)] * 3)
    # when
    answer, elapsed = _timed(function)
    # then the caller gets 502 after three attempts, well before the deadline
    error = _error(answer, 502, "upstream_error")
    assert "could not reach" in error["message"]
    assert len(upstream.requests) == 3 and elapsed < DEADLINE_S
    _recovers(function, upstream)


def test_given_mixed_transient_failures_within_the_retry_budget_when_invoked_then_they_end_in_200(
    function: FunctionProcess, upstream: LocalEndpoint
) -> None:
    # given a 503 (Retry-After: 0) and then a reset mid-answer, then a good answer
    upstream.inject(Fault(kind="status", status=503, code="ServiceUnavailable", retry_after="0"), Fault(kind="reset"))
    # when
    answer, elapsed = _timed(function)
    # then the caller only sees the good answer, from the third attempt on a new connection
    assert answer.http_status == 200 and elapsed < DEADLINE_S
    assert len(upstream.requests) == 3
    assert upstream.requests[-1].connection_id != upstream.requests[1].connection_id
    assert answer.json()["request_id"] == upstream.requests[-1].request_id


@pytest.mark.parametrize("kind", ["non_json", "wrong_shape"])
def test_given_an_unreadable_answer_when_invoked_then_a_502_with_oci_request_id_and_no_second_call(
    function: FunctionProcess, upstream: LocalEndpoint, kind: str
) -> None:
    # given OCI answers 200 with a body that is not a Responses object
    upstream.inject(Fault(kind=kind))
    # when
    answer, elapsed = _timed(function)
    # then
    error = _error(answer, 502, "upstream_error")
    assert "cannot read" in error["message"] and elapsed < DEADLINE_S
    # then the caller can quote OCI's request id, and the (billed) call was not repeated
    assert error["request_id"] == upstream.requests[0].request_id == answer.http_headers["opc-request-id"]
    assert len(upstream.requests) == 1
    assert "unexpected" not in answer.body.decode() and "html" not in answer.body.decode()
    _recovers(function, upstream)


def test_given_an_answer_dripping_past_the_deadline_when_invoked_then_it_is_cut_with_504_before_it(
    function: FunctionProcess, upstream: LocalEndpoint
) -> None:
    # given OCI sends headers at once, then the body 16 bytes every 0.25 s (about 15 s in all)
    upstream.inject(Fault(kind="drip", delay_s=0.25))
    # when
    answer, elapsed = _timed(function, deadline_s=3.0)
    # then the function answers 504 before Fn-Deadline: per-read socket timeouts alone would not
    _error(answer, 504, "timeout")
    assert elapsed < 3.0
    _recovers(function, upstream)


@pytest.mark.parametrize("retry_after", ["5", "date"])
def test_given_a_retry_after_longer_than_the_time_left_when_invoked_then_a_429_with_retry_after_at_once(
    function: FunctionProcess, upstream: LocalEndpoint, retry_after: str
) -> None:
    # given OCI throttles and asks for a wait longer than the 4 s this invocation has left,
    # in seconds or as an HTTP date
    wait_s = 5
    value = retry_after if retry_after != "date" else email.utils.formatdate(time.time() + 60, usegmt=True)
    if retry_after == "date":
        wait_s = 60
    upstream.inject(Fault(kind="status", status=429, code="TooManyRequests", retry_after=value))
    # when
    answer, elapsed = _timed(function, deadline_s=4.0)
    # then the caller is told at once, with how long to wait
    error = _error(answer, 429, "rate_limited")
    assert elapsed < 1.5 and len(upstream.requests) == 1
    assert wait_s - 2 <= int(answer.http_headers["retry-after"]) <= wait_s
    assert error["request_id"] == upstream.requests[0].request_id
    _recovers(function, upstream)


def test_given_a_503_asking_for_a_long_wait_when_invoked_then_a_502_at_once(
    function: FunctionProcess, upstream: LocalEndpoint
) -> None:
    # given
    upstream.inject(Fault(kind="status", status=503, code="ServiceUnavailable", retry_after="120"))
    # when
    answer, elapsed = _timed(function)
    # then
    _error(answer, 502, "upstream_error")
    assert elapsed < 1.5 and len(upstream.requests) == 1
    _recovers(function, upstream)


def test_given_a_single_401_when_invoked_then_the_credentials_are_reloaded_and_retried_once(
    identity: LocalIdentity, function: FunctionProcess, upstream: LocalEndpoint
) -> None:
    # given OCI rejects the function's signature once (as after a key rotation it had not seen)
    upstream.inject(Fault(kind="status", status=401, code="NotAuthenticated"))
    # when
    answer, elapsed = _timed(function)
    # then the caller sees 200: exactly one rejection, one retry signed with the current token
    assert answer.http_status == 200 and elapsed < DEADLINE_S
    assert [r.status for r in upstream.requests] == [401, 200]
    assert upstream.requests[1].key_id == f"ST${identity.token}"


def test_given_the_openai_route_when_a_fault_occurs_then_the_error_keeps_openai_shape_and_headers(
    function: FunctionProcess, upstream: LocalEndpoint
) -> None:
    # given a caller using an OpenAI SDK through the gateway's .../v1/responses route
    upstream.inject(Fault(kind="status", status=429, code="TooManyRequests", retry_after="90"))
    # when
    answer, _ = _timed(function, path="/v1/responses")
    # then the error is OpenAI-shaped and carries what the SDK reads: Retry-After and x-request-id
    assert answer.http_status == 429
    assert answer.json() == {
        "error": {
            "message": answer.json()["error"]["message"],
            "type": "rate_limited",
            "param": None,
            "code": "rate_limited",
        }
    }
    assert answer.http_headers["retry-after"] == "90"
    assert answer.http_headers["x-request-id"] == upstream.requests[0].request_id
    _recovers(function, upstream)


@pytest.mark.parametrize(
    ("faults", "status"),
    [
        ([Fault(kind="status", status=500)] * 3, 502),
        ([Fault(kind="status", status=404, code="NotAuthorizedOrNotFound")], 502),
        ([Fault(kind="non_json")], 502),
        ([Fault(kind="delay", delay_s=4)], 504),
    ],
    ids=["upstream_error", "upstream_auth", "unreadable", "timeout"],
)
@pytest.mark.parametrize("gateway", [True, False], ids=["gateway", "direct"])
def test_given_an_upstream_failure_when_invoked_then_it_reaches_the_caller_with_socket_status_200(
    function: FunctionProcess, upstream: LocalEndpoint, faults: list[Fault], status: int, gateway: bool
) -> None:
    # given an upstream failure the function maps to a documented 502 or 504
    upstream.inject(*faults)
    # when
    answer = function.invoke({"prompt": "fault?"}, deadline_s=3.0, gateway=gateway)
    # then the fdk answers the agent 200, so the platform passes the JSON error on; the caller's
    # status travels in Fn-Http-Status (gateway) or only in the body (direct invoke)
    assert answer.status == 200, f"socket status {answer.status}: the platform would drop this body"
    assert answer.json()["error"]["type"] in ("upstream_error", "upstream_auth", "timeout")
    if gateway:
        assert answer.http_status == status
    assert wait_until_recorded(upstream, 1)  # a delayed answer lands here, not in the next test's record


def test_given_a_blackholed_route_when_invoked_then_a_502_could_not_reach_comes_before_the_deadline(
    identity: LocalIdentity, tmp_path: Path
) -> None:
    # given a route that drops every connection attempt (no NAT or service gateway), 12 s to go
    with blackhole() as base_url:
        function = start_function(function_env(identity, LocalEndpoint(), GENAI_BASE_URL=base_url), tmp_path / "log")
        # when
        try:
            answer, elapsed = _timed(function, deadline_s=12.0)
        finally:
            function.stop()
    # then the short connect timeout is retried while time allows, and the caller hears why in time
    error = _error(answer, 502, "upstream_error")
    assert "could not reach" in error["message"] and elapsed < 12.0


@pytest.mark.parametrize("kind", ["trickle_headers", "trickle_body"])
def test_given_an_answer_trickling_a_byte_every_3_5_s_when_invoked_then_a_504_before_the_deadline(
    function: FunctionProcess, upstream: LocalEndpoint, kind: str
) -> None:
    # given OCI sends its status line and headers, or its body, one byte every 3.5 s: each read
    # is quick, the next byte after the deadline comes at 7 s
    upstream.inject(Fault(kind=kind, delay_s=3.5))
    # when
    answer, elapsed = _timed(function)
    # then the function gives up at its deadline and says so, while the platform still listens
    _error(answer, 504, "timeout")
    assert elapsed < DEADLINE_S
    _recovers(function, upstream)


@pytest.mark.parametrize("status", [408, 409])
def test_given_a_408_or_409_when_invoked_then_it_is_retried_then_a_502(
    function: FunctionProcess, upstream: LocalEndpoint, status: int
) -> None:
    # given
    upstream.inject(Fault(kind="status", status=status, code="Conflict"))
    # when / then
    answer, _ = _timed(function)
    assert answer.http_status == 200 and len(upstream.requests) == 2
    upstream.reset()
    upstream.inject(*[Fault(kind="status", status=status, code="Conflict")] * 3)
    answer, _ = _timed(function)
    assert f"HTTP {status} Conflict" in _error(answer, 502, "upstream_error")["message"]
    assert len(upstream.requests) == 3


FAILED_ANSWER = {"status": "failed", "error": {"code": "server_error", "message": "failed while answering CANARY-wq3"}}


@pytest.mark.parametrize("path", [None, "/genai/v1/responses"], ids=["chat", "openai"])
def test_given_an_answer_that_says_it_failed_when_invoked_then_it_is_retried_then_a_502_logged_as_such(
    function: FunctionProcess, upstream: LocalEndpoint, function_log: Path, path: str | None
) -> None:
    # given OCI answers 200 three times, each saying the response failed
    upstream.inject(*[Fault(kind="patched", fields=FAILED_ANSWER)] * 3)
    call_id = f"failed-{time.monotonic_ns()}"
    # when
    answer = function.invoke({"prompt": "fail?"}, deadline_s=DEADLINE_S, path=path, call_id=call_id)
    # then the caller gets 502 upstream_error after the retries, never the failed answer as a 200
    assert answer.http_status == 502 and answer.json()["error"]["type"] == "upstream_error"
    assert len(upstream.requests) == 3 and "CANARY" not in answer.body.decode()
    [line] = [json.loads(line) for line in _new_log(function_log, call_id)]
    assert line["status"] == 502 and line["error_type"] == "upstream_error"
    _recovers(function, upstream)


@pytest.mark.parametrize(
    "fields", [{"usage": "lots"}, {"incomplete_details": ["max_output_tokens"]}], ids=["usage", "incomplete_details"]
)
@pytest.mark.parametrize("path", [None, "/genai/v1/responses"], ids=["chat", "openai"])
def test_given_a_200_whose_usage_or_incomplete_details_is_not_an_object_when_invoked_then_a_designed_502(
    function: FunctionProcess, upstream: LocalEndpoint, fields: dict, path: str | None
) -> None:
    # given
    upstream.inject(Fault(kind="patched", fields=fields))
    # when
    answer, _ = _timed(function, path=path)
    # then the fdk answers 200 with our JSON error, not its own 502 with the exception's text
    assert answer.status == 200 and answer.http_status == 502
    assert "cannot read" in answer.json()["error"]["message"]
    assert "attribute" not in answer.body.decode()
    _recovers(function, upstream)


def _new_log(log: Path, call_id: str) -> list[str]:
    """The log lines of one call: JSON lines naming it, and anything that is not JSON at all."""
    time.sleep(0.2)  # stderr lands a moment after the answer
    lines = []
    for line in log.read_text(encoding="utf-8", errors="replace").splitlines():
        try:
            fields = json.loads(line)
        except ValueError:
            lines.append(line)
            continue
        if isinstance(fields, dict) and fields.get("call_id") == call_id:
            lines.append(line)
    return lines


def test_given_an_output_item_unknown_to_the_sdk_when_invoked_then_it_is_returned_intact_and_not_logged(
    function: FunctionProcess, upstream: LocalEndpoint, function_log: Path
) -> None:
    # given OCI's answer holds an output item type newer than the pinned SDK, quoting the answer
    item = {"type": "future_reasoning_trace", "id": "frt_1", "summary": "CANARY-ANSWER-r7u", "steps": [{"n": 1}]}
    message = {
        "type": "message",
        "id": "msg_1",
        "status": "completed",
        "role": "assistant",
        "content": [{"type": "output_text", "text": "CANARY-ANSWER-r7u", "annotations": []}],
    }
    upstream.inject(Fault(kind="patched", fields={"output": [item, message]}))
    call_id = f"unknown-item-{time.monotonic_ns()}"
    # when a caller of the OpenAI-compatible route asks
    answer = function.invoke({"model": DEFAULT_MODEL, "input": "hi"}, path="/genai/v1/responses", call_id=call_id)
    # then it gets OCI's JSON as OCI sent it, and the log holds only our JSON line, without the answer
    assert answer.http_status == 200
    assert answer.json()["output"] == [item, message]
    lines = _new_log(function_log, call_id)
    assert len(lines) == 1 and json.loads(lines[0])["status"] == 200
    assert "CANARY-ANSWER" not in function_log.read_text(encoding="utf-8", errors="replace")


@pytest.mark.parametrize(
    "body",
    [
        b'{"prompt": "a", "temperature": 1e400}',
        b'{"prompt": "a", "text": {"format": {"type": "json_schema", '
        b'"name": "n", "schema": {"type": "number", "maximum": 1e400}}}}',
    ],
    ids=["temperature", "schema"],
)
def test_given_a_number_too_large_for_a_float_when_invoked_then_it_is_a_400(
    function: FunctionProcess, upstream: LocalEndpoint, body: bytes
) -> None:
    # when
    answer = function.invoke(body)
    # then
    assert "number too large" in _error(answer, 400, "invalid_request")["message"]
    assert upstream.requests == []


def test_given_a_unicode_digit_retry_after_when_invoked_then_it_is_ignored_not_a_500(
    function: FunctionProcess, upstream: LocalEndpoint
) -> None:
    # given
    upstream.inject(Fault(kind="status", status=429, code="TooManyRequests", retry_after="²"))
    # when
    answer, _ = _timed(function)
    # then
    assert answer.http_status == 200 and len(upstream.requests) == 2


def test_given_a_far_future_fn_deadline_when_invoked_then_it_is_answered_normally(
    function: FunctionProcess, upstream: LocalEndpoint
) -> None:
    # given the agent says the call may run until the year 9999 (the agent stand-in can't send that)
    connection = http.client.HTTPConnection("localhost", timeout=30)
    connection.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    connection.sock.connect(str(function.socket_path))
    headers = {"Fn-Call-Id": "far-future", "Fn-Deadline": "9999-12-31T23:59:59Z", "Content-Type": "application/json"}
    # when
    try:
        connection.request("POST", "/call", body=b'{"prompt": "someday"}', headers=headers)
        reply = connection.getresponse()
        body = json.loads(reply.read())
    finally:
        connection.close()
    # then it is answered like any other call, not with a 500 from an overflowing timeout
    assert reply.status == 200 and body["output_text"] == "Local answer to: someday"
