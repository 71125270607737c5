"""The OpenAI-compatible route, used with the real openai SDK through the local API Gateway."""

from __future__ import annotations

import json
from collections.abc import Iterator

import openai
import pydantic
import pytest

from genai_handler.local.endpoint import Fault, LocalEndpoint
from genai_handler.local.gateway import LocalGateway
from genai_handler.local.identity import LocalIdentity
from genai_handler.settings import DEFAULT_MODEL

from .conftest import token_gateway
from .test_request import ROUTINE_OFF_VALUES

TOKEN = "openai-route-test-token"
MODEL = DEFAULT_MODEL
OTHER_MODEL = "vendor.not-on-the-allow-list"


@pytest.fixture(scope="module")
def gateway(
    identity: LocalIdentity, endpoint: LocalEndpoint, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[LocalGateway]:
    with token_gateway(identity, endpoint, tmp_path_factory.mktemp("openai"), TOKEN) as gw:
        yield gw


def _client(gateway: LocalGateway, token: str = TOKEN) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{gateway.url}/genai/v1", api_key=token, max_retries=0, timeout=30)


def test_given_the_openai_sdk_when_it_creates_a_response_then_output_text_reads_the_answer(
    gateway: LocalGateway, upstream: LocalEndpoint
) -> None:
    # given an OpenAI SDK pointed at the gateway's /genai/v1, with the gateway token as its API key
    with _client(gateway) as client:
        # when it creates a response
        answer = client.responses.create(model=MODEL, input="What is OCI?")
    # then it gets a full Responses object, and the SDK's output_text and request id work
    assert answer.output_text == "Local answer to: What is OCI?"
    assert answer.model == MODEL and answer.status == "completed" and answer.usage and answer.usage.total_tokens > 0
    assert answer._request_id == upstream.requests[-1].request_id


def test_given_the_fields_clients_send_on_every_call_when_created_then_it_answers_and_oci_gets_none_of_them(
    gateway: LocalGateway, upstream: LocalEndpoint
) -> None:
    # given the routine fields OpenAI SDK users and agent libraries send, at the values that ask for nothing
    routine = ROUTINE_OFF_VALUES
    with _client(gateway) as client:
        # when the real SDK sends them
        answer = client.responses.create(model=MODEL, input="hi", **routine)
    # then the call is answered, and OCI was asked only for what the caller asked for
    assert answer.output_text == "Local answer to: hi"
    sent = json.loads(upstream.requests[-1].body)
    assert not set(routine) & set(sent)


def test_given_a_model_outside_the_allow_list_when_called_then_a_bad_request_names_the_allowed_ones(
    gateway: LocalGateway, upstream: LocalEndpoint
) -> None:
    # when
    with _client(gateway) as client, pytest.raises(openai.BadRequestError) as refused:
        client.responses.create(model=OTHER_MODEL, input="hi")
    # then
    assert refused.value.status_code == 400
    assert refused.value.code == "invalid_request"
    assert f"model must be one of: {MODEL}" in refused.value.message
    assert upstream.requests == []


def test_given_stream_true_when_called_then_the_sdk_iterates_oci_s_events_ending_with_response_completed(
    gateway: LocalGateway, upstream: LocalEndpoint
) -> None:
    # when (the events arrive together at the end: docs/streaming.md)
    with _client(gateway) as client:
        events = list(client.responses.create(model=MODEL, input="stream please", stream=True))
    # then
    assert events[0].type == "response.created" and events[-1].type == "response.completed"
    assert events[-1].response.output_text == "Local answer to: stream please"
    assert json.loads(upstream.requests[-1].body)["stream"] is True


def test_given_a_wrong_gateway_token_when_called_then_it_is_an_authentication_error(
    gateway: LocalGateway, upstream: LocalEndpoint
) -> None:
    # when
    with _client(gateway, token="not-the-token") as client, pytest.raises(openai.AuthenticationError) as refused:
        client.responses.create(model=MODEL, input="let me in")
    # then
    assert refused.value.status_code == 401
    assert upstream.requests == []


def test_given_oci_throttles_when_called_then_it_is_a_rate_limit_error_with_retry_after(
    gateway: LocalGateway, upstream: LocalEndpoint
) -> None:
    # given
    upstream.inject(Fault(kind="status", status=429, code="TooManyRequests", retry_after="120"))
    # when
    with _client(gateway) as client, pytest.raises(openai.RateLimitError) as throttled:
        client.responses.create(model=MODEL, input="busy?")
    # then
    assert throttled.value.code == "rate_limited"
    assert throttled.value.response.headers["retry-after"] == "120"
    assert throttled.value.request_id == upstream.requests[-1].request_id


def test_given_an_output_item_newer_than_the_sdk_when_called_then_it_reaches_the_caller_as_oci_sent_it(
    gateway: LocalGateway, upstream: LocalEndpoint
) -> None:
    # given OCI answers with an output item type the pinned SDK has no model for
    item = {"type": "future_item", "id": "fi_1", "detail": {"depth": 2}}
    message = {
        "type": "message",
        "id": "msg_1",
        "status": "completed",
        "role": "assistant",
        "content": [{"type": "output_text", "text": "still here", "annotations": []}],
    }
    upstream.inject(Fault(kind="patched", fields={"output": [item, message]}))
    # when a caller's OpenAI SDK asks through the gateway
    with _client(gateway) as client:
        raw = client.responses.with_raw_response.create(model=MODEL, input="new things?")
    # then the item arrives whole and output_text still reads the message
    assert raw.http_response.json()["output"] == [item, message]
    assert raw.parse().output_text == "still here"


def test_given_a_pydantic_model_when_the_sdk_parses_a_response_then_the_answer_is_an_instance_of_it(
    gateway: LocalGateway, upstream: LocalEndpoint
) -> None:
    # given the structured output a user declares with pydantic, as responses.parse sends it (json_schema, strict)
    class Capital(pydantic.BaseModel):
        city: str
        population: int

    with _client(gateway) as client:
        # when
        parsed = client.responses.parse(model=MODEL, input="Capital of France?", text_format=Capital)
    # then the SDK built the model from the answer, and OCI got the schema
    assert isinstance(parsed.output_parsed, Capital)
    sent = json.loads(upstream.requests[-1].body)
    assert sent["text"]["format"]["type"] == "json_schema" and sent["text"]["format"]["strict"] is True
