"""Every error body OCI really sends (genai_handler/local/oci_errors.json), through the real fdk:
each maps to its documented status, type and message, retried only where retrying can help,
and none of OCI's free text reaches the caller."""

from __future__ import annotations

import time
from dataclasses import dataclass

import pytest

from genai_handler.local.agent import FunctionProcess
from genai_handler.local.endpoint import Fault, LocalEndpoint, oci_errors
from genai_handler.settings import DEFAULT_MODEL

DEADLINE_S = 8.0


@dataclass(frozen=True)
class Expected:
    status: int
    type: str
    message: str  # a part of the caller's message
    attempts: int  # requests OCI sees when every attempt gets this answer
    sent: int = 3  # how many times the fault is queued


EXPECTED = {
    "model_not_found": Expected(
        502, "upstream_error", f"model {DEFAULT_MODEL} is not available in OCI Generative AI region us-chicago-1", 1
    ),
    # the signer reloads its credentials once after a 401 (auth.py), then gives up
    "not_authenticated": Expected(502, "upstream_auth", "refused the function's identity (HTTP 401)", 2),
    "not_authenticated_oci": Expected(502, "upstream_auth", "(HTTP 401 NotAuthenticated)", 2),
    "not_authorized_or_not_found": Expected(502, "upstream_auth", "(HTTP 404 NotAuthorizedOrNotFound)", 1),
    "too_many_requests": Expected(429, "rate_limited", "throttling", 3),
    "internal_server_error": Expected(502, "upstream_error", "(HTTP 500 InternalServerError); retry later", 3),
    "service_unavailable": Expected(502, "upstream_error", "(HTTP 503 ServiceUnavailable); retry later", 3),
    "invalid_parameter": Expected(400, "upstream_rejected", "rejected the request (HTTP 400 InvalidParameter)", 1),
    "openai_invalid_request": Expected(
        400, "upstream_rejected", "rejected the request (HTTP 400 invalid_value, param max_output_tokens)", 1
    ),
}


def test_given_the_recorded_oci_errors_when_listed_then_each_has_an_expected_mapping() -> None:
    # when / then
    assert set(EXPECTED) == set(oci_errors())


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_given_a_recorded_oci_error_when_invoked_then_the_caller_gets_it_as_documented(
    function: FunctionProcess, upstream: LocalEndpoint, name: str
) -> None:
    expected = EXPECTED[name]
    # given OCI answers every attempt with this real error body
    upstream.inject(*[Fault("oci_error", name=name)] * expected.sent)
    # when
    started = time.monotonic()
    answer = function.invoke({"prompt": "which error?"}, deadline_s=DEADLINE_S)
    elapsed = time.monotonic() - started
    # then the caller gets its documented status and type, in time, after retries only where due
    assert answer.status == 200 and answer.http_status == expected.status, answer.body
    error = answer.json()["error"]
    assert error["type"] == expected.type and expected.message in error["message"], error["message"]
    assert len(upstream.requests) == expected.attempts and elapsed < DEADLINE_S
    assert error["request_id"] == upstream.requests[-1].request_id
    # and none of OCI's own wording is passed on
    body = oci_errors()[name]["body"]
    text = body["message"] if "message" in body else body["error"]["message"]
    assert text.replace("{model}", DEFAULT_MODEL).replace("{region}", "us-chicago-1") not in error["message"]


def test_given_a_model_not_deployed_in_the_region_when_invoked_then_it_is_named_and_not_retried(
    function: FunctionProcess, upstream: LocalEndpoint
) -> None:
    # given OCI's region does not have the default model deployed (the endpoint answers as OCI does)
    upstream.unavailable_models = (DEFAULT_MODEL,)
    # when
    try:
        answer = function.invoke({"prompt": "anyone there?"}, deadline_s=DEADLINE_S)
    finally:
        upstream.unavailable_models = ()
    # then one request, and a 502 that says which model and where, not "retry later"
    error = answer.json()["error"]
    assert answer.http_status == 502 and error["type"] == "upstream_error"
    assert DEFAULT_MODEL in error["message"] and "us-chicago-1" in error["message"]
    assert "retry later" not in error["message"] and len(upstream.requests) == 1
