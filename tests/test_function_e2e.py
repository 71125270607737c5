"""End to end: func.py under the real fdk, invoked over its unix socket as the Fn agent does,
against the local endpoint that verifies every OCI signature."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from genai_handler.local.agent import FunctionProcess
from genai_handler.local.endpoint import Fault, LocalEndpoint
from genai_handler.local.identity import LocalIdentity

from .conftest import PROJECT_OCID, wait_until_recorded

ANSWER_FIELDS = {"id", "model", "status", "output_text", "usage", "incomplete_details", "request_id"}


def _error(invocation, status: int, error_type: str) -> dict:
    assert invocation.http_status == status, invocation.body
    body = invocation.json()
    assert set(body) == {"error"} and body["error"]["type"] == error_type
    assert set(body["error"]) == {"type", "message", "request_id"}
    return body["error"]


def test_given_a_gateway_call_when_invoked_then_it_answers_with_the_documented_fields(
    function: FunctionProcess, upstream: LocalEndpoint
) -> None:
    # when API Gateway forwards a prompt
    answer = function.invoke({"prompt": "What is OCI?"})
    # then the caller gets 200 and exactly the documented fields, output_text included
    assert answer.status == 200 and answer.http_status == 200
    body = answer.json()
    assert set(body) == ANSWER_FIELDS
    assert body["output_text"] == "Local answer to: What is OCI?"
    assert body["usage"]["total_tokens"] > 0
    assert body["request_id"] == upstream.requests[-1].request_id == answer.http_headers["opc-request-id"]
    sent = upstream.requests[-1]
    assert sent.headers["openai-project"] == PROJECT_OCID
    assert json.loads(sent.body)["store"] is True  # kept for this caller: the owner is in its metadata
    assert set(json.loads(sent.body)["metadata"]) == {"genai_owner"}


def test_given_a_direct_invoke_when_invoked_then_it_answers_the_same_json(
    function: FunctionProcess, upstream: LocalEndpoint
) -> None:
    # when
    answer = function.invoke({"input": [{"role": "user", "content": "direct"}]}, gateway=False)
    # then
    assert answer.status == 200
    assert answer.json()["output_text"] == "Local answer to: direct"


def test_given_a_direct_invoke_when_the_request_is_bad_then_the_error_is_in_the_body(
    function: FunctionProcess, upstream: LocalEndpoint
) -> None:
    # a plain `fn invoke` loses 4xx statuses, so the body must say what went wrong
    # when
    answer = function.invoke(b"not json", gateway=False)
    # then
    assert answer.status == 200
    assert answer.json()["error"]["type"] == "invalid_request"


def test_given_a_warm_container_when_invoked_many_times_then_one_upstream_connection_is_shared(
    function: FunctionProcess, upstream: LocalEndpoint
) -> None:
    # when
    for i in range(20):
        assert function.invoke({"prompt": f"call {i}"}).http_status == 200
    # then
    assert upstream.connections_opened <= 1  # the warm container's connection, opened earlier
    assert len({r.connection_id for r in upstream.requests}) == 1


def test_given_a_form_content_type_and_a_json_body_when_invoked_then_it_is_accepted(
    function: FunctionProcess, upstream: LocalEndpoint
) -> None:
    # curl -d sends application/x-www-form-urlencoded
    # when
    answer = function.invoke('{"prompt": "curl"}', headers={"Content-Type": "application/x-www-form-urlencoded"})
    # then
    assert answer.http_status == 200


BAD_BODIES = [
    (b"{not json", "not valid JSON"),
    (b"", "empty"),
    (b"[1, 2]", "JSON object"),
    (b'"just a string"', "JSON object"),
    (b"\xff\xfe", "UTF-8"),
    (b'{"prompt": "a", "prompt": "b"}', "repeats"),
    (b'{"prompt": NaN}', "not valid JSON"),
    ({}, "prompt is required"),
    ({"prompt": ""}, "prompt"),
    ({"prompt": "   "}, "prompt"),
    ({"prompt": 42}, "prompt"),
    ({"input": []}, "input"),
    ({"input": {"role": "user"}}, "input"),
    ({"input": [{"role": "robot", "content": "x"}]}, "input[0].role"),
    ({"input": [{"role": "user", "content": [{"type": "input_image", "image_url": "x"}]}]}, "input[0].content[0]"),
    ({"prompt": "a", "input": "b"}, "either prompt or input"),
    ({"prompt": "a", "colour": "blue"}, "allowed: prompt, input"),
    ({"prompt": "a", "model": "someone.elses-model"}, "model must be one of"),
    ({"prompt": "a", "max_output_tokens": 10**9}, "max_output_tokens"),
    ({"prompt": "a", "max_output_tokens": True}, "max_output_tokens"),
    ({"prompt": "a", "temperature": 7}, "temperature"),
    ({"prompt": "a", "top_p": "high"}, "top_p"),
    ({"prompt": "a", "stream": True}, "stream"),
    ({"prompt": "a", "tools": [{"type": "web_search"}]}, "tools"),
    ({"prompt": "a", "background": True, "store": False}, "background needs store"),
    ({"prompt": "a", "text": {"format": {"type": "xml"}}}, "text.format.type"),
    ({"prompt": "a", "metadata": {"k": 1}}, "metadata"),
    ({"prompt": "a", "reasoning": {"effort": "extreme"}}, "reasoning.effort"),
    ({"prompt": "x" * 40000}, "limit is 32000"),
    # every text the model reads counts against the input cap, not only the prompt
    (
        {
            "prompt": "hi",
            "text": {
                "format": {
                    "type": "json_schema",
                    "name": "n",
                    "schema": {"type": "object"},
                    "description": "d" * 300_000,
                }
            },
        },
        "limit is 32000",
    ),
    (
        {"prompt": "hi", "text": {"format": {"type": "json_schema", "name": "n" * 200_000, "schema": {}}}},
        "text.format.name",
    ),
    (
        {
            "prompt": "hi",
            "text": {"format": {"type": "json_schema", "name": "n", "schema": {"description": "d" * 20_000}}},
        },
        "text.format.schema is over",
    ),
    (
        {
            "prompt": "hi",
            "instructions": "i" * 16_000,
            "text": {
                "format": {
                    "type": "json_schema",
                    "name": "n",
                    "schema": {"type": "object", "description": "d" * 16_000},
                }
            },
        },
        "limit is 32000",
    ),
]


@pytest.mark.parametrize(("body", "named"), BAD_BODIES, ids=[str(i) for i in range(len(BAD_BODIES))])
def test_given_bad_input_when_invoked_then_a_400_names_the_problem_and_it_never_reaches_oci(
    function: FunctionProcess, upstream: LocalEndpoint, body: bytes | dict, named: str
) -> None:
    # when / then
    error = _error(function.invoke(body), 400, "invalid_request")
    assert named in error["message"]
    assert upstream.requests == []


def test_given_a_body_over_the_size_cap_when_invoked_then_it_gets_413(
    function: FunctionProcess, upstream: LocalEndpoint
) -> None:
    # when
    answer = function.invoke(json.dumps({"prompt": "x" * (1024 * 1024 + 1)}))
    # then
    _error(answer, 413, "payload_too_large")
    assert upstream.requests == []


def test_given_another_method_when_invoked_then_it_gets_405_with_allow_post(
    function: FunctionProcess, upstream: LocalEndpoint
) -> None:
    # when
    answer = function.invoke(b"", method="GET")
    # then
    _error(answer, 405, "method_not_allowed")
    assert answer.http_headers["allow"] == "POST"


def test_given_throttling_with_a_long_retry_after_when_invoked_then_429_comes_at_once(
    function: FunctionProcess, upstream: LocalEndpoint
) -> None:
    # given
    upstream.inject(Fault(kind="status", status=429, code="TooManyRequests", retry_after="120"))
    # when
    started = time.monotonic()
    answer = function.invoke({"prompt": "busy?"}, deadline_s=30)
    # then
    assert time.monotonic() - started < 5
    error = _error(answer, 429, "rate_limited")
    assert answer.http_headers["retry-after"] == "120"
    assert error["request_id"] == upstream.requests[-1].request_id


def test_given_a_short_throttle_when_invoked_then_it_is_retried_and_the_caller_sees_200(
    function: FunctionProcess, upstream: LocalEndpoint
) -> None:
    # given
    upstream.inject(Fault(kind="status", status=429, code="TooManyRequests", retry_after="1"))
    # when / then
    assert function.invoke({"prompt": "retry me"}).http_status == 200
    assert [r.status for r in upstream.requests] == [429, 200]


def test_given_a_503_then_success_when_invoked_then_it_is_retried(
    function: FunctionProcess, upstream: LocalEndpoint
) -> None:
    # given
    upstream.inject(Fault(kind="status", status=503, code="ServiceUnavailable"))
    # when / then
    assert function.invoke({"prompt": "flaky"}).http_status == 200
    assert [r.status for r in upstream.requests] == [503, 200]


def test_given_persistent_5xx_when_invoked_then_it_becomes_502_upstream_error(
    function: FunctionProcess, upstream: LocalEndpoint
) -> None:
    # given
    upstream.inject(*[Fault(kind="status", status=500)] * 3)
    # when / then
    error = _error(function.invoke({"prompt": "down"}), 502, "upstream_error")
    assert "HTTP 500" in error["message"]
    assert len(upstream.requests) == 3  # the first try and GENAI_MAX_RETRIES=2


@pytest.mark.parametrize(("status", "code"), [(401, "NotAuthenticated"), (404, "NotAuthorizedOrNotFound")])
def test_given_an_iam_refusal_when_invoked_then_it_becomes_502_with_what_to_check(
    function: FunctionProcess, upstream: LocalEndpoint, status: int, code: str
) -> None:
    # given
    upstream.inject(*[Fault(kind="status", status=status, code=code)] * 2)
    # when / then
    error = _error(function.invoke({"prompt": "who am i"}), 502, "upstream_auth")
    assert code in error["message"] and "dynamic group" in error["message"] and "policy" in error["message"]


def test_given_a_slow_model_when_invoked_then_it_gets_504_before_the_deadline(
    function: FunctionProcess, upstream: LocalEndpoint
) -> None:
    # given a model that answers 1 s after Fn-Deadline (3 s)
    upstream.inject(Fault(kind="delay", delay_s=4))
    # when
    started = time.monotonic()
    answer = function.invoke({"prompt": "slow"}, deadline_s=3)
    elapsed = time.monotonic() - started
    # then
    _error(answer, 504, "timeout")
    assert elapsed < 3  # answered before Fn-Deadline, not killed by the platform
    assert function.invoke({"prompt": "next"}).http_status == 200  # and the container recovers
    assert wait_until_recorded(upstream, 2)  # the late answer, before the next test resets the record


def test_given_rotated_credentials_when_invoked_then_no_request_is_rejected(
    identity: LocalIdentity, function: FunctionProcess, upstream: LocalEndpoint
) -> None:
    # when
    for _ in range(3):
        assert function.invoke({"prompt": "before"}).http_status == 200
        identity.rotate()
        assert function.invoke({"prompt": "after"}).http_status == 200
    # then
    assert all(r.status == 200 for r in upstream.requests)
    assert upstream.requests[-1].key_id == f"ST${identity.token}"


def test_given_an_invocation_when_it_ends_then_it_logs_one_json_line_without_the_prompt(
    function: FunctionProcess, upstream: LocalEndpoint, function_log: Path
) -> None:
    # given
    before = function_log.read_text().count("\n")
    # when
    function.invoke({"prompt": "a secret plan"}, call_id="call-log-test")
    time.sleep(0.2)
    # then
    lines = [json.loads(line) for line in function_log.read_text().splitlines()[before:] if line.startswith("{")]
    [line] = [line for line in lines if line.get("call_id") == "call-log-test"]
    assert line["status"] == 200 and line["model"] and line["request_id"] and "latency_ms" in line
    assert "secret plan" not in function_log.read_text()


def test_given_a_missing_setting_when_invoked_then_a_500_misconfigured_names_it(
    misconfigured_function: FunctionProcess, tmp_path: Path
) -> None:
    # when
    answer = misconfigured_function.invoke({"prompt": "hello"})
    # then
    error = _error(answer, 500, "misconfigured")
    assert "GENAI_PROJECT_OCID" in error["message"]
    log = (tmp_path / "log").read_text()
    assert "GENAI_PROJECT_OCID" in log and "Traceback" not in log


def _line(function_log: Path, call_id: str) -> tuple[str, dict]:
    time.sleep(0.2)  # the fdk's stderr is flushed per line
    [raw] = [line for line in function_log.read_text(encoding="utf-8").splitlines() if call_id in line]
    return raw, json.loads(raw)


def test_given_control_characters_in_an_unknown_field_name_when_refused_then_answer_and_log_show_them_escaped(
    function: FunctionProcess, upstream: LocalEndpoint, function_log: Path
) -> None:
    # given a field name holding a line separator, a bidi override and a C1 control
    answer = function.invoke({"prompt": "hi", "a\u2028b\u202ec\x85d": 1}, call_id="call-escaped-names")
    error = _error(answer, 400, "invalid_request")
    raw, line = _line(function_log, "call-escaped-names")
    # then neither the answer nor the raw log line carries one of them, and both show where they were
    for character in ("\u2028", "\u202e", "\x85"):
        assert character not in error["message"] and character not in raw
    assert "a\\u2028b\\u202ec\\u0085d" in error["message"] and line["error"] == error["message"]


def test_given_a_repeated_key_inside_metadata_then_the_message_names_the_position_never_the_key(
    function: FunctionProcess, upstream: LocalEndpoint, function_log: Path
) -> None:
    body = '{"prompt": "hi", "metadata": {"card 4111 1111 1111 1111": "a", "card 4111 1111 1111 1111": "b"}}'
    error = _error(function.invoke(body, call_id="call-repeated-key"), 400, "invalid_request")
    raw, _ = _line(function_log, "call-repeated-key")
    assert error["message"] == "metadata: repeats a key"
    assert "4111" not in error["message"] and "4111" not in raw
    assert upstream.requests == []
