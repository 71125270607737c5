"""genai_handler.upstream: the real OpenAI SDK against the local endpoint, faults injected."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator

import httpcore2._sync.http11
import httpx2
import pytest

from genai_handler import upstream as upstream_module
from genai_handler.errors import (
    HandlerError,
    RateLimited,
    UpstreamAuthError,
    UpstreamError,
    UpstreamRejected,
    UpstreamTimeout,
)
from genai_handler.local.endpoint import GUARDRAILS_PATH, Fault, LocalEndpoint, blackhole
from genai_handler.local.identity import LocalIdentity
from genai_handler.settings import DEFAULT_MODEL, Settings
from genai_handler.upstream import Attempt, _build_client, client_for, create_response, oci_error_code, post_oci

from .conftest import PROJECT_OCID, wait_until_recorded

ARGS = {"model": DEFAULT_MODEL, "input": "hello", "max_output_tokens": 50, "store": False}


@pytest.fixture
def rp_env(identity: LocalIdentity, monkeypatch: pytest.MonkeyPatch) -> None:
    for name, value in identity.env().items():
        monkeypatch.setenv(name, value)


@pytest.fixture
def settings(rp_env: None, endpoint: LocalEndpoint) -> Settings:
    return Settings(project_ocid=PROJECT_OCID, base_url=endpoint.base_url)


@pytest.fixture
def call(settings: Settings, upstream: LocalEndpoint) -> Iterator:
    client = _build_client(settings)

    def _call(budget_s: float = 10.0, retries: int = 2, **arguments: object):
        return create_response(client, {**ARGS, **arguments}, time.monotonic() + budget_s, retries)

    yield _call
    client.close()


def test_given_a_good_answer_when_called_then_the_response_and_its_opc_request_id_come_back(
    call, upstream: LocalEndpoint
) -> None:
    # given OCI answers normally
    # when
    result = call()
    # then the answer comes back with OCI's request id, from the first attempt
    assert result.response.output_text == "Local answer to: hello"
    assert result.request_id == upstream.requests[-1].request_id
    assert result.attempts == 1


def test_given_the_same_settings_when_asked_twice_then_one_client_is_built(settings: Settings) -> None:
    # when / then the same Settings asked for twice give the same client
    assert client_for(settings) is client_for(settings)


def test_given_a_compartment_setting_when_called_then_it_is_sent_as_opc_compartment_id(
    rp_env: None, upstream: LocalEndpoint
) -> None:
    # given a client configured with a compartment OCID
    compartment = "ocid1.compartment.oc1..aaaacompartment"
    client = _build_client(
        Settings(project_ocid=PROJECT_OCID, base_url=upstream.base_url, compartment_ocid=compartment)
    )
    # when
    create_response(client, ARGS, time.monotonic() + 10, 0)
    # then OCI receives it as opc-compartment-id
    assert upstream.requests[-1].headers["opc-compartment-id"] == compartment


@pytest.mark.parametrize("kind", ["drop", "reset", "truncated"])
def test_given_a_broken_connection_when_called_then_it_is_retried(call, upstream: LocalEndpoint, kind: str) -> None:
    # given the connection breaks once: dropped, reset, or cut mid-answer
    upstream.inject(Fault(kind=kind))
    # when / then the second attempt answers
    assert call().attempts == 2


@pytest.mark.parametrize("kind", ["drop", "reset", "truncated"])
def test_given_broken_connections_and_no_retries_left_when_called_then_upstream_error(
    call, upstream: LocalEndpoint, kind: str
) -> None:
    # given the connection breaks once
    upstream.inject(Fault(kind=kind))
    # when / then, with no retries allowed, the call fails as an upstream error
    with pytest.raises(UpstreamError):
        call(retries=0)


@pytest.mark.parametrize("kind", ["non_json", "wrong_shape"])
def test_given_an_unreadable_answer_when_called_then_upstream_error_with_the_request_id(
    call, upstream: LocalEndpoint, kind: str
) -> None:
    # given OCI answers 200 with a body that is not a Responses object
    upstream.inject(Fault(kind=kind))
    # when
    with pytest.raises(UpstreamError) as caught:
        call()
    # then the error says so and carries OCI's request id
    assert caught.value.request_id == upstream.requests[-1].request_id
    assert "cannot read" in caught.value.message


def test_given_a_dripping_body_when_called_then_it_is_cut_at_the_deadline(call, upstream: LocalEndpoint) -> None:
    # given OCI sends the body slowly, a chunk every 0.3 s
    upstream.inject(Fault(kind="drip", delay_s=0.3))
    # when the call has 2 s left
    started = time.monotonic()
    with pytest.raises(UpstreamTimeout):
        call(budget_s=2.0)
    # then it timed out soon after the deadline, not when the body ended
    assert time.monotonic() - started < 3.0


def test_given_a_refused_connection_when_called_then_upstream_error(rp_env: None) -> None:
    # given a client for a port nobody listens on
    client = _build_client(Settings(project_ocid=PROJECT_OCID, base_url="http://127.0.0.1:9/openai/v1"))
    # when / then
    with pytest.raises(UpstreamError, match="could not reach"):
        create_response(client, ARGS, time.monotonic() + 5, 1)


def test_given_retry_after_beyond_the_deadline_when_throttled_then_it_is_not_waited_for(
    call, upstream: LocalEndpoint
) -> None:
    # given OCI throttles and asks for 30 s, more than the 10 s left
    upstream.inject(Fault(kind="status", status=429, retry_after="30"))
    # when
    started = time.monotonic()
    with pytest.raises(RateLimited) as caught:
        call(budget_s=10)
    # then the call gives up at once and passes the 30 s on
    assert time.monotonic() - started < 2 and caught.value.retry_after == 30


def test_given_a_rate_limit_without_retry_after_when_throttled_then_the_backoff_is_suggested(
    call, upstream: LocalEndpoint
) -> None:
    # given OCI throttles without a Retry-After
    upstream.inject(*[Fault(kind="status", status=429)] * 3)
    # when
    with pytest.raises(RateLimited) as caught:
        call(retries=0)
    # then the caller is still told to wait, at least 1 s
    assert caught.value.retry_after is not None and caught.value.retry_after >= 1


def test_given_an_oci_400_when_called_then_its_code_passes_without_blaming_the_fields(
    call, upstream: LocalEndpoint
) -> None:
    # given OCI's own 400 InvalidParameter
    upstream.inject(Fault("oci_error", name="invalid_parameter"))
    # when
    with pytest.raises(UpstreamRejected) as caught:
        call()
    # then its code is passed on without the hint to check the fields, and not retried
    assert caught.value.message == "OCI Generative AI rejected the request (HTTP 400 InvalidParameter)"
    assert len(upstream.requests) == 1


def test_given_an_openai_shaped_400_when_called_then_its_code_and_param_pass_not_its_text(
    call, upstream: LocalEndpoint
) -> None:
    # given an OpenAI-shaped 400: invalid_value for max_output_tokens
    upstream.inject(Fault("oci_error", name="openai_invalid_request"))
    # when
    with pytest.raises(UpstreamRejected) as caught:
        call()
    # then its code and param are passed on, not its text
    assert caught.value.message == (
        "OCI Generative AI rejected the request (HTTP 400 invalid_value, param max_output_tokens)"
    )


def test_given_a_400_without_a_code_when_called_then_checking_the_fields_is_suggested(
    call, upstream: LocalEndpoint
) -> None:
    # given a 400 whose code is not a code
    upstream.inject(Fault("status", status=400, code="not a code!"))
    # when / then the caller is told to check the fields sent
    with pytest.raises(UpstreamRejected, match=r"\(HTTP 400\); check the model supports the fields sent"):
        call()


def test_given_a_model_not_deployed_when_called_then_no_retry_and_model_and_region_named(
    rp_env: None, identity: LocalIdentity
) -> None:
    # given a region where the model is not deployed: OCI answers 500 with its own text
    with LocalEndpoint(
        trusted_issuer=identity.issuer_public_key, unavailable_models=[DEFAULT_MODEL], region="eu-frankfurt-1"
    ) as region:
        client = _build_client(Settings(project_ocid=PROJECT_OCID, base_url=region.base_url))
        # when the function asks it, then one request, and a 502 naming the model and the region
        with pytest.raises(UpstreamError) as caught:
            create_response(client, ARGS, time.monotonic() + 10, 2)
        assert [r.status for r in region.requests] == [500]
    assert caught.value.status == 502 and caught.value.retry_after is None
    assert f"model {DEFAULT_MODEL} is not available in OCI Generative AI region eu-frankfurt-1" in caught.value.message


def test_given_a_model_not_found_text_unlike_ocis_when_called_then_an_ordinary_500(
    call, upstream: LocalEndpoint
) -> None:
    # given OCI answers 500 twice, without OCI's model-not-found text
    upstream.inject(*[Fault("status", status=500, code="500")] * 2)
    # when / then
    assert call(retries=2).attempts == 3  # retried as any 5xx


@pytest.mark.parametrize("status", [408, 409])
def test_given_408_or_409_when_called_then_retried_like_5xx(call, upstream: LocalEndpoint, status: int) -> None:
    # given OCI answers 408 or 409 once
    upstream.inject(Fault("status", status=status, code="Conflict"))
    # when / then the second attempt answers
    assert call().attempts == 2


@pytest.mark.parametrize("status", [408, 409])
def test_given_408_or_409_and_no_retries_left_when_called_then_upstream_error(
    call, upstream: LocalEndpoint, status: int
) -> None:
    # given OCI answers 408 or 409
    upstream.inject(Fault("status", status=status, code="RequestTimeout"))
    # when / then, with no retries allowed, its status and code are passed on
    with pytest.raises(UpstreamError, match=f"HTTP {status} RequestTimeout"):
        call(retries=0)


FAILED = {"status": "failed", "error": {"code": "server_error", "message": "The model crashed on: secret prompt"}}


@pytest.mark.parametrize(
    "fields", [FAILED, {"error": FAILED["error"]}, {"status": "failed"}], ids=["both", "error", "status"]
)
def test_given_an_answer_that_says_it_failed_when_called_then_it_is_retried(
    call, upstream: LocalEndpoint, fields: dict
) -> None:
    # given a 200 whose status or error says the model failed
    upstream.inject(Fault("patched", fields=fields))
    # when / then the second attempt answers
    assert call().attempts == 2


def test_given_an_answer_that_keeps_failing_when_called_then_upstream_error_with_its_code_only(
    call, upstream: LocalEndpoint
) -> None:
    # given every attempt answers 200 saying the model failed
    upstream.inject(*[Fault("patched", fields=FAILED)] * 3)
    # when
    with pytest.raises(UpstreamError) as caught:
        call()
    # then, after three attempts, OCI's code is passed on, not its text (it may quote the prompt)
    assert caught.value.message == "OCI Generative AI failed to produce an answer (server_error); retry later"
    assert caught.value.request_id == upstream.requests[-1].request_id and len(upstream.requests) == 3


@pytest.mark.parametrize(
    "fields", [{"usage": "lots"}, {"usage": [1]}, {"incomplete_details": "cut"}, {"incomplete_details": 3}]
)
def test_given_usage_or_incomplete_details_not_an_object_when_read_then_it_is_unreadable(
    call, upstream: LocalEndpoint, fields: dict
) -> None:
    # given usage or incomplete_details that is not an object
    upstream.inject(Fault("patched", fields=fields))
    # when / then the answer is unreadable, and not retried
    with pytest.raises(UpstreamError, match="cannot read"):
        call()
    assert len(upstream.requests) == 1


def test_given_an_answer_when_called_then_its_json_is_kept_as_oci_sent_it(call, upstream: LocalEndpoint) -> None:
    # given an answer with an output item and a field the SDK does not know
    future = {"type": "future_item", "id": "fi_1", "payload": {"x": 1}}
    upstream.inject(Fault("patched", fields={"output": [future], "vendor_field": 7}))
    # when
    result = call()
    # then both are in the body as OCI sent them
    assert result.body["output"] == [future] and result.body["vendor_field"] == 7


def test_given_a_blackholed_route_when_called_then_retried_and_could_not_reach_by_the_deadline(
    rp_env: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    # given a route where connection attempts hang, and a 1 s connect timeout
    monkeypatch.setattr(upstream_module, "_CONNECT_TIMEOUT_S", 1.0)
    with blackhole() as base_url:
        client = _build_client(Settings(project_ocid=PROJECT_OCID, base_url=base_url))
        started = time.monotonic()
        # when the function calls with 20 s left and two retries
        with pytest.raises(UpstreamError, match="could not reach") as caught:
            create_response(client, ARGS, started + 20, 2)
        elapsed = time.monotonic() - started
    # then three attempts of 1 s each were made, and the answer came long before the deadline
    assert caught.value.status == 502
    assert 3.0 <= elapsed < 10


def test_given_a_blackholed_route_and_little_time_left_when_called_then_it_ends_by_the_deadline(rp_env: None) -> None:
    # given a route where connection attempts hang
    with blackhole() as base_url:
        client = _build_client(Settings(project_ocid=PROJECT_OCID, base_url=base_url))
        # when / then the call with 2 s left ends with could not reach, by the deadline
        started = time.monotonic()
        with pytest.raises(UpstreamError, match="could not reach"):
            create_response(client, ARGS, started + 2.0, 2)
        assert time.monotonic() - started < 3.0


@pytest.mark.parametrize("kind", ["trickle_headers", "trickle_body"])
def test_given_an_answer_trickling_a_byte_at_a_time_when_called_then_it_is_cut_at_the_deadline(
    call, upstream: LocalEndpoint, kind: str
) -> None:
    # given each byte (of the status line and headers, or of the body) comes 1.5 s after the last
    upstream.inject(Fault(kind, delay_s=1.5))
    started = time.monotonic()
    # when / then the call ends at the 2 s deadline, not at the first byte after it (3 s)
    with pytest.raises(UpstreamTimeout):
        call(budget_s=2.0)
    assert time.monotonic() - started < 2.7


@pytest.mark.parametrize(
    ("body", "code"),
    [
        ({"code": "NotAuthorizedOrNotFound", "message": "x"}, "NotAuthorizedOrNotFound"),
        ({"code": "500", "message": "Internal Server Error: ..."}, "500"),
        ({"code": 401, "message": "x"}, "401"),
        (
            {"error": {"message": "x", "type": "invalid_request_error", "param": None, "code": "invalid_value"}},
            "invalid_value",
        ),
        ({"error": {"message": "x", "type": "server_error", "param": None, "code": None}}, "server_error"),
        ({"code": "²"}, ""),
        ({"code": "two words"}, ""),
        ({"code": "x" * 65}, ""),
        ({"error": "flat string"}, ""),
        (["not", "an", "object"], ""),
    ],
)
def test_given_oci_and_openai_shaped_bodies_when_the_error_code_is_read_then_both_are_understood(
    body: object, code: str
) -> None:
    # when / then
    assert oci_error_code(httpx2.Response(500, content=json.dumps(body).encode())) == code


def test_given_a_body_that_is_not_json_when_the_error_code_is_read_then_it_is_empty() -> None:
    # when / then
    assert oci_error_code(httpx2.Response(502, content=b"<html>bad gateway</html>")) == ""


@pytest.mark.parametrize(
    ("value", "expected"), [("²", None), ("١٢", None), ("12", 12.0), ("99999999999", 300.0), ("-5", None)]
)
def test_given_a_retry_after_header_when_read_then_only_ascii_digits_count_and_it_is_capped(
    value: str, expected: float | None
) -> None:
    # given a 429 with that Retry-After
    response = httpx2.Response(429, headers=[(b"retry-after", value.encode())])
    # when / then
    assert upstream_module._retry_after(response) == expected


def test_given_a_unicode_digit_retry_after_when_read_then_it_is_ignored_not_a_crash(
    call, upstream: LocalEndpoint
) -> None:
    # given OCI throttles with a Retry-After in a non-ASCII digit
    upstream.inject(*[Fault("status", status=429, code="TooManyRequests", retry_after="²")] * 3)
    # when
    with pytest.raises(RateLimited) as caught:
        call(retries=0)
    # then it is ignored and the backoff is suggested
    assert caught.value.retry_after is not None and caught.value.retry_after >= 1


def test_given_a_wrong_project_when_called_then_an_iam_error(rp_env: None, upstream: LocalEndpoint) -> None:
    # given a client for a project this identity may not use
    client = _build_client(
        Settings(project_ocid="ocid1.generativeaiproject.oc1.us-chicago-1.other", base_url=upstream.base_url)
    )
    # when / then OCI's NotAuthorizedOrNotFound is an auth error
    with pytest.raises(UpstreamAuthError, match="NotAuthorizedOrNotFound"):
        create_response(client, ARGS, time.monotonic() + 5, 0)


def test_given_an_expired_deadline_when_called_then_no_call_is_made(call, upstream: LocalEndpoint) -> None:
    # when the call comes with its deadline already passed
    with pytest.raises(UpstreamTimeout):
        call(budget_s=-1)
    # then it times out without a request to OCI
    assert upstream.requests == []


def test_given_an_idle_connection_closed_by_the_server_when_called_then_it_is_replaced(
    rp_env: None, identity: LocalIdentity
) -> None:
    # given a server that closes idle keep-alive connections after 0.5 s
    with LocalEndpoint(trusted_issuer=identity.issuer_public_key, idle_timeout_s=0.5) as server:
        client = _build_client(Settings(project_ocid=PROJECT_OCID, base_url=server.base_url))
        create_response(client, ARGS, time.monotonic() + 5, 0)
        time.sleep(1.0)
        # when the next call comes, then it succeeds on a new connection without a retry
        assert create_response(client, ARGS, time.monotonic() + 5, 0).attempts == 1
        assert server.connections_opened == 2


class _PoolClock:
    """The clock httpcore2's HTTP/1.1 connections read to expire idle keep-alives, `idle_s` ahead of
    time.monotonic(): six idle seconds pass for the pool without the test waiting them out."""

    def __init__(self) -> None:
        self.idle_s = 0.0

    def monotonic(self) -> float:
        return time.monotonic() + self.idle_s


def test_given_a_six_second_pause_when_called_again_then_the_connection_outlives_httpx_keepalive(
    call, upstream: LocalEndpoint, monkeypatch: pytest.MonkeyPatch
) -> None:
    clock = _PoolClock()
    monkeypatch.setattr(httpcore2._sync.http11, "time", clock)
    # given a call, then 6 s idle: longer than httpx2's default keepalive_expiry (5 s)
    call()
    clock.idle_s += 6
    # when the next call comes, then it reuses the connection
    call()
    assert upstream.connections_opened == 1
    # and the 6 s are real to the pool: a client with httpx2's default keepalive opens a new one
    upstream.reset()
    with httpx2.Client() as default:
        default.get(f"{upstream.base_url}/models")
        clock.idle_s += 6
        default.get(f"{upstream.base_url}/models")
    assert upstream.connections_opened == 2


def test_given_a_5xx_asking_for_a_long_wait_when_called_then_its_retry_after_is_passed_on(
    call, upstream: LocalEndpoint
) -> None:
    # given OCI answers 503 asking for 45 s, more than the 10 s left
    upstream.inject(Fault(kind="status", status=503, code="ServiceUnavailable", retry_after="45"))
    # when
    with pytest.raises(UpstreamError) as caught:
        call(budget_s=10)
    # then the wait is passed on, without a retry
    assert caught.value.retry_after == 45 and len(upstream.requests) == 1


@pytest.mark.parametrize(
    ("message", "found"),
    [
        (
            f"Internal Server Error: Model '{DEFAULT_MODEL}' not found or not deployed in region eu-frankfurt-1",
            (DEFAULT_MODEL, "eu-frankfurt-1"),
        ),
        ("Internal Server Error: Model 'a b' not found or not deployed in region eu-frankfurt-1", None),
        ("Internal Server Error: Model '<script>' not found or not deployed in region x", None),
        ("Internal Server Error", None),
    ],
)
def test_given_model_not_found_texts_when_read_then_only_ocis_exact_wording_counts(
    message: str, found: tuple[str, str] | None
) -> None:
    # given OCI's 500 with that message
    response = httpx2.Response(500, content=json.dumps({"code": "500", "message": message}).encode())
    # when / then only OCI's exact wording, with a plausible model and region, is read
    assert upstream_module.model_not_deployed(response) == found


def test_given_retries_when_called_then_each_attempt_is_recorded_with_status_request_id_usage(
    settings: Settings, upstream: LocalEndpoint
) -> None:
    # given OCI answers its real 500 once, then the answer
    upstream.inject(Fault("oci_error", name="internal_server_error"))
    recorded: list[Attempt] = []
    client = _build_client(settings)
    # when the call is retried
    result = create_response(client, ARGS, time.monotonic() + 10, 2, recorded.append)
    client.close()
    # then both attempts are recorded, in order, with what OCI answered and nothing of the prompt
    failed, answered = recorded
    assert (failed.number, failed.status, failed.error_type, failed.usage) == (1, 500, "upstream_error", None)
    assert failed.request_id == upstream.requests[0].request_id
    assert (answered.number, answered.status, answered.error_type) == (2, 200, None)
    assert answered.request_id == result.request_id == upstream.requests[1].request_id
    assert result.response.usage is not None
    counts = ("input_tokens", "output_tokens", "total_tokens")
    assert answered.usage == {name: result.response.usage[name] for name in counts}
    assert failed.model == answered.model == DEFAULT_MODEL
    assert failed.start_at <= answered.start_at and all(a.duration_s >= 0 for a in recorded)
    assert "hello" not in repr(recorded)


def test_given_an_attempt_without_an_answer_when_recorded_then_it_has_no_status(
    settings: Settings, upstream: LocalEndpoint
) -> None:
    # given the connection is reset, then the answer is cut by the deadline
    upstream.inject(Fault(kind="reset"), Fault(kind="delay", delay_s=3.5))
    recorded: list[Attempt] = []
    client = _build_client(settings)
    # when the call has 2.5 s left
    with pytest.raises(UpstreamTimeout):
        create_response(client, ARGS, time.monotonic() + 2.5, 2, recorded.append)
    client.close()
    # then each attempt is recorded: no HTTP status, the error type that ended it
    assert [(a.status, a.error_type) for a in recorded] == [(None, "upstream_error"), (None, "timeout")]
    assert wait_until_recorded(upstream, 2)  # the late answer, before the next test resets the record


def test_given_an_answer_that_cannot_be_read_when_called_then_it_is_recorded_not_retried(
    settings: Settings, upstream: LocalEndpoint
) -> None:
    # given OCI answers 200 with a body that is not JSON
    upstream.inject(Fault(kind="non_json"))
    recorded: list[Attempt] = []
    client = _build_client(settings)
    # when
    with pytest.raises(UpstreamError):
        create_response(client, ARGS, time.monotonic() + 10, 2, recorded.append)
    client.close()
    # then one attempt is recorded, with the 200 and OCI's request id
    [attempt] = recorded
    assert (attempt.status, attempt.error_type, attempt.request_id) == (
        200,
        "upstream_error",
        upstream.requests[0].request_id,
    )


def _origin(base_url: str) -> str:
    return "/".join(base_url.split("/", 3)[:3])


@pytest.mark.parametrize(
    ("fault", "error", "message"),
    [
        (
            Fault("non_json", path=GUARDRAILS_PATH),
            UpstreamError,
            "OCI Generative AI sent an answer this function cannot read",
        ),
        (
            Fault("status", status=503, code="ServiceUnavailable", retry_after="5", path=GUARDRAILS_PATH),
            UpstreamError,
            "OCI Generative AI failed (HTTP 503 ServiceUnavailable); retry later",
        ),
        (
            Fault("status", status=429, code="TooManyRequests", retry_after="5", path=GUARDRAILS_PATH),
            RateLimited,
            "OCI Generative AI is throttling requests; retry later",
        ),
        (
            Fault("status", status=400, code="InvalidParameter", path=GUARDRAILS_PATH),
            UpstreamRejected,
            "OCI Generative AI rejected the request (HTTP 400 InvalidParameter)",
        ),
    ],
    ids=["non_json", "503", "429", "400"],
)
def test_given_another_oci_api_fails_when_posted_to_then_its_error_is_the_model_s_without_a_retry(
    settings: Settings, upstream: LocalEndpoint, fault: Fault, error: type[HandlerError], message: str
) -> None:
    # given ApplyGuardrails answers as the model route would fail
    upstream.inject(fault)
    client = _build_client(settings)
    # when post_oci calls it, then one attempt, and the model's error and message for that failure
    with pytest.raises(error) as caught:
        post_oci(client, _origin(upstream.base_url) + GUARDRAILS_PATH, {}, time.monotonic() + 10)
    client.close()
    assert caught.value.message == message and caught.value.retry_after is None
    assert caught.value.request_id == upstream.requests[-1].request_id and len(upstream.requests) == 1


def test_given_oci_unreachable_when_the_model_or_another_api_is_called_then_the_same_error(rp_env: None) -> None:
    # given a client for a port nobody listens on
    client = _build_client(Settings(project_ocid=PROJECT_OCID, base_url="http://127.0.0.1:9/openai/v1"))
    # when the model and another OCI API are called
    with pytest.raises(UpstreamError) as model:
        create_response(client, ARGS, time.monotonic() + 5, 0)
    with pytest.raises(UpstreamError) as other:
        post_oci(client, "http://127.0.0.1:9" + GUARDRAILS_PATH, {}, time.monotonic() + 5)
    # then both say OCI could not be reached, alike
    assert model.value.message == other.value.message == "could not reach OCI Generative AI"


def test_given_no_time_left_when_another_oci_api_is_called_then_a_timeout_naming_oci_and_no_request(
    settings: Settings, upstream: LocalEndpoint
) -> None:
    # when another OCI API is called with the deadline already passed
    with pytest.raises(UpstreamTimeout) as caught:
        post_oci(_build_client(settings), _origin(upstream.base_url) + GUARDRAILS_PATH, {}, time.monotonic() - 1)
    # then a timeout naming OCI, and no request sent
    assert caught.value.message == "OCI Generative AI did not answer before the invocation deadline"
    assert caught.value.status == 504 and upstream.requests == []
