"""`stream: true` end to end: the real OpenAI SDK (and the Agents SDK) through the local API Gateway,
func.py under the real fdk, the signature-verifying endpoint streaming as OCI does, faults injected."""

from __future__ import annotations

import io
import json
import time
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import openai
import pydantic
import pytest
import requests
from openai.types.responses import ResponseErrorEvent, ResponseFailedEvent, ResponseStreamEvent

from genai_handler.local.endpoint import GUARDRAILS_PATH, Fault, LocalEndpoint
from genai_handler.local.gateway import LocalGateway
from genai_handler.local.identity import LocalIdentity
from genai_handler.settings import DEFAULT_MODEL

from .conftest import TEMPLATE, function_env

TOKEN = "streaming-test-token"
MODEL = DEFAULT_MODEL
OPENAI_ROUTE = "/genai/v1/responses"
MODEL_PATH = "/openai/v1/responses"  # a fault for the model call, not the guardrails call before it
STREAM_EVENT: pydantic.TypeAdapter[Any] = pydantic.TypeAdapter(ResponseStreamEvent)
_LEAKS = ("Traceback", 'File "', "site-packages", "Exception", "Error:")


@pytest.fixture(scope="module")
def log_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("streaming") / "function.log"


@pytest.fixture(scope="module")
def gateway(identity: LocalIdentity, endpoint: LocalEndpoint, log_path: Path) -> Iterator[LocalGateway]:
    """The gateway in front of a function that screens prompts (block) and logs them."""
    env = function_env(identity, endpoint, GENAI_GUARDRAILS="block", GENAI_LOG_PROMPTS="true")
    with (
        open(log_path, "ab") as log,
        LocalGateway(env, token=TOKEN, function_log=log, console=io.StringIO(), template=TEMPLATE) as gw,
    ):
        yield gw


def _client(gateway: LocalGateway) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{gateway.url}/genai/v1", api_key=TOKEN, max_retries=0, timeout=30)


def _post(gateway: LocalGateway, body: dict[str, Any], path: str = OPENAI_ROUTE) -> requests.Response:
    headers = {"Authorization": f"Bearer {TOKEN}"}
    return requests.post(f"{gateway.url}{path}", json=body, headers=headers, timeout=30)


def _sse(body: bytes) -> list[dict[str, Any]]:
    return [json.loads(line[6:]) for line in body.decode().split("\n") if line.startswith("data: ")]


def _model_calls(upstream: LocalEndpoint) -> list[dict[str, Any]]:
    return [json.loads(r.body) for r in upstream.requests if r.path.endswith("/responses")]


def _log_line(log_path: Path, request_id: str | None = None) -> dict[str, Any]:
    lines = [json.loads(line) for line in log_path.read_text(encoding="utf-8").splitlines() if line.startswith("{")]
    calls = [line for line in lines if "status" in line]
    return next(line for line in reversed(calls) if request_id is None or line.get("request_id") == request_id)


def test_given_the_openai_sdk_when_it_streams_through_the_gateway_then_it_iterates_oci_s_events(
    gateway: LocalGateway, upstream: LocalEndpoint
) -> None:
    # when the real SDK asks for a stream and iterates it
    with _client(gateway) as client:
        stream = client.responses.create(model=MODEL, input="What is OCI?", stream=True)
        events = list(stream)
    # then it reads OCI's events in order, the text in deltas, ending with response.completed
    assert stream.response.headers["content-type"] == "text/event-stream"
    assert stream.response.headers["x-request-id"] == upstream.requests[-1].request_id
    assert [e.type for e in events][:2] == ["response.created", "response.in_progress"]
    assert "".join(e.delta for e in events if e.type == "response.output_text.delta") == "Local answer to: What is OCI?"
    assert events[-1].type == "response.completed"
    assert [e.sequence_number for e in events] == list(range(len(events)))
    assert _model_calls(upstream)[-1]["stream"] is True


def test_given_a_streamed_answer_when_each_event_is_parsed_with_the_sdk_s_types_then_every_one_validates(
    gateway: LocalGateway, upstream: LocalEndpoint
) -> None:
    # when
    response = _post(gateway, {"model": MODEL, "input": "hi", "stream": True})
    # then the body is a whole stream, every event valid as the SDK declares it
    assert response.status_code == 200 and response.headers["Content-Type"] == "text/event-stream"
    parsed = [STREAM_EVENT.validate_python(data) for data in _sse(response.content)]
    assert parsed[-1].type == "response.completed" and parsed[-1].response.output_text == "Local answer to: hi"


def test_given_the_sdk_s_stream_helper_when_it_streams_then_it_assembles_the_final_response(
    gateway: LocalGateway, upstream: LocalEndpoint
) -> None:
    # when
    with _client(gateway) as client, client.responses.stream(model=MODEL, input="ping") as stream:
        final = stream.get_final_response()
    # then
    assert final.output_text == "Local answer to: ping" and final.usage is not None


def test_given_a_stream_when_it_completes_then_the_log_line_has_the_usage_of_response_completed(
    gateway: LocalGateway, upstream: LocalEndpoint, log_path: Path
) -> None:
    # when
    with _client(gateway) as client:
        events = list(client.responses.create(model=MODEL, input="count my words", stream=True))
    # then
    completed = events[-1]
    assert completed.type == "response.completed" and completed.response.usage is not None
    line = _log_line(log_path, upstream.requests[-1].request_id)
    assert line["status"] == 200 and line["stream"] is True and "error_type" not in line
    assert line["usage"] == completed.response.usage.model_dump(
        include={"input_tokens", "output_tokens", "total_tokens"}
    )
    assert line["prompt"] == {"input": "count my words"}
    assert line["output_text"] == "Local answer to: count my words"


@pytest.mark.parametrize("kind", ["reset", "truncated"])
def test_given_oci_cuts_the_connection_mid_stream_when_streamed_then_the_sdk_reads_the_events_then_an_error_event(
    gateway: LocalGateway, upstream: LocalEndpoint, log_path: Path, kind: str
) -> None:
    # given OCI's connection breaks after four events
    upstream.inject(Fault(kind, after_events=4, path=MODEL_PATH))
    # when the SDK iterates the stream
    with _client(gateway) as client:
        events = list(client.responses.create(model=MODEL, input="cut me off", stream=True))
    # then it gets the four events, then the error event it knows, with no exception and no retry
    assert [e.type for e in events][:4] == [
        "response.created",
        "response.in_progress",
        "response.output_item.added",
        "response.content_part.added",
    ]
    assert isinstance(events[-1], ResponseErrorEvent) and len(events) == 5
    assert events[-1].code == "upstream_error" and events[-1].message == "could not reach OCI Generative AI"
    assert events[-1].sequence_number == 4
    assert len(_model_calls(upstream)) == 1
    line = _log_line(log_path, upstream.requests[-1].request_id)
    assert line["status"] == 200 and line["error_type"] == "upstream_error" and "usage" not in line


def test_given_events_dripping_past_the_deadline_when_streamed_then_the_answer_ends_with_a_timeout_event_in_time(
    gateway: LocalGateway, upstream: LocalEndpoint
) -> None:
    # given OCI sends an event every half second, and the call has 3 s
    upstream.inject(Fault("drip", delay_s=0.5, path=MODEL_PATH))
    assert gateway.function is not None
    started = time.monotonic()
    # when (the agent cuts the call at its deadline, raising TimeoutError: it must not)
    answer = gateway.function.invoke(
        {"model": MODEL, "input": "slowly", "stream": True}, path=OPENAI_ROUTE, deadline_s=3
    )
    # then the events that came, then the timeout event, a second before the deadline
    assert time.monotonic() - started < 2.8
    assert answer.http_status == 200 and answer.headers["content-type"] == "text/event-stream"
    events = _sse(answer.body)
    assert events[0]["type"] == "response.created" and len(events) >= 3
    last = STREAM_EVENT.validate_python(events[-1])
    assert last.type == "error" and last.code == "timeout"
    assert last.message == "the model did not answer before the invocation deadline"


def test_given_oci_throttles_before_any_event_when_streamed_then_the_sdk_raises_rate_limit_with_retry_after(
    gateway: LocalGateway, upstream: LocalEndpoint
) -> None:
    # given
    upstream.inject(Fault("status", status=429, code="TooManyRequests", retry_after="120", path=MODEL_PATH))
    # when
    with _client(gateway) as client, pytest.raises(openai.RateLimitError) as throttled:
        client.responses.create(model=MODEL, input="busy?", stream=True)
    # then it is the documented JSON error, as for a call that does not stream
    assert throttled.value.code == "rate_limited"
    assert throttled.value.response.headers["retry-after"] == "120"
    assert throttled.value.response.headers["content-type"] == "application/json"


def test_given_oci_s_own_response_failed_when_streamed_then_it_reaches_the_sdk_unchanged(
    gateway: LocalGateway, upstream: LocalEndpoint, log_path: Path
) -> None:
    # given
    error = {"code": "server_error", "message": "The model failed to answer"}
    upstream.inject(Fault("patched", fields={"status": "failed", "error": error}, path=MODEL_PATH))
    # when
    with _client(gateway) as client:
        events = list(client.responses.create(model=MODEL, input="fail", stream=True))
    # then
    assert isinstance(events[-1], ResponseFailedEvent) and events[-1].response.error is not None
    assert events[-1].response.error.message == "The model failed to answer"
    line = _log_line(log_path, upstream.requests[-1].request_id)
    assert line["status"] == 200 and line["error_type"] == "upstream_error"


def test_given_stream_true_on_the_plain_route_when_called_then_400_naming_the_openai_route(
    gateway: LocalGateway, upstream: LocalEndpoint
) -> None:
    # when
    response = _post(gateway, {"prompt": "hi", "stream": True}, path="/genai/chat")
    # then
    assert response.status_code == 400 and response.json()["error"]["type"] == "invalid_request"
    assert "stream" in response.json()["error"]["message"] and "/v1/responses" in response.json()["error"]["message"]
    assert upstream.requests == []


def test_given_a_flagged_prompt_when_streamed_then_guardrails_block_it_before_the_model_as_for_any_call(
    gateway: LocalGateway, upstream: LocalEndpoint
) -> None:
    # when
    with _client(gateway) as client, pytest.raises(openai.BadRequestError) as blocked:
        client.responses.create(model=MODEL, input="you BADWORD", stream=True)
    # then
    assert blocked.value.code == "content_blocked"
    assert [r.path.endswith(GUARDRAILS_PATH) for r in upstream.requests] == [True]


def test_given_a_prompt_over_the_input_cap_when_streamed_then_400_before_any_call(
    gateway: LocalGateway, upstream: LocalEndpoint
) -> None:
    # when
    with _client(gateway) as client, pytest.raises(openai.BadRequestError) as refused:
        client.responses.create(model=MODEL, input="x" * 40_000, stream=True)
    # then
    assert refused.value.code == "invalid_request" and "limit is 32000" in refused.value.message
    assert upstream.requests == []


def test_given_any_streamed_answer_when_read_then_it_holds_no_traceback_or_exception_text(
    gateway: LocalGateway, upstream: LocalEndpoint
) -> None:
    # given every way a stream can break
    faults = (Fault("reset", after_events=2), Fault("truncated", after_events=6), Fault("non_json"))
    for fault in faults:
        fault.path = MODEL_PATH  # not the guardrails call before it
        upstream.inject(fault)
        # when
        response = _post(gateway, {"model": MODEL, "input": "hi", "stream": True})
        # then
        assert not [leak for leak in _LEAKS if leak in response.text], response.text[-500:]


def test_given_an_agents_sdk_agent_when_run_streamed_through_the_gateway_then_it_gets_the_answer(
    agents_sdk: ModuleType, gateway: LocalGateway, upstream: LocalEndpoint
) -> None:
    # given an Agent whose Responses model is an AsyncOpenAI client pointed at the gateway
    agents_sdk.set_tracing_disabled(True)
    client = openai.AsyncOpenAI(base_url=f"{gateway.url}/genai/v1", api_key=TOKEN, max_retries=0, timeout=30)
    agent = agents_sdk.Agent(name="assistant", model=agents_sdk.OpenAIResponsesModel(model=MODEL, openai_client=client))

    async def run() -> tuple[str, list[str]]:
        result = agents_sdk.Runner.run_streamed(agent, "What is OCI?")
        types = [str(e.data.type) async for e in result.stream_events() if e.type == "raw_response_event"]
        return str(result.final_output), types

    import asyncio  # noqa: PLC0415

    # when
    final_output, types = asyncio.run(run())
    # then
    assert final_output == "Local answer to: What is OCI?"
    assert "response.output_text.delta" in types and types[-1] == "response.completed"
