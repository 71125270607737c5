"""genai_handler.streaming (reading OCI's server-sent events, the closing error event) and
upstream.stream_response (the relay), with the real OpenAI SDK against the local endpoint, faults injected."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Any

import pydantic
import pytest
from openai.types.responses import ResponseStreamEvent

from genai_handler import streaming
from genai_handler.errors import RateLimited, UpstreamError, UpstreamTimeout
from genai_handler.local.endpoint import Fault, LocalEndpoint
from genai_handler.local.identity import LocalIdentity
from genai_handler.settings import DEFAULT_MODEL, Settings
from genai_handler.upstream import Attempt, StreamResult, _build_client, stream_response

from .conftest import PROJECT_OCID

ARGS = {"model": DEFAULT_MODEL, "input": "hello", "max_output_tokens": 50, "store": False}
STREAM_EVENT: pydantic.TypeAdapter[Any] = pydantic.TypeAdapter(ResponseStreamEvent)


def _events(body: bytes) -> list[dict[str, Any]]:
    """The data of every event in a text/event-stream body, read by the SSE rules."""
    return [event.data for event in streaming.events([body]) if event.data is not None]


# --- reading events -------------------------------------------------------------------------------


def test_given_events_split_anywhere_with_any_line_ending_when_read_then_each_event_is_whole() -> None:
    # given two events, a comment and a multi-line data field, with CRLF, CR and LF line endings
    text = (
        b': keep-alive\r\n\r\nevent: response.created\r\ndata: {"type": "response.created",\r\ndata:  "n": 1}\r\n\r\n'
        b'event: response.in_progress\rdata: {"type": "response.in_progress"}\r\r'
    )
    for size in (1, 2, 3, 7, len(text)):
        chunks = [text[i : i + size] for i in range(0, len(text), size)]
        # when
        found = list(streaming.events(chunks))
        # then the comment is gone, data lines are joined, and each event keeps its own lines
        assert [event.type for event in found] == ["response.created", "response.in_progress"]
        assert found[0].data == {"type": "response.created", "n": 1}
        assert found[0].raw == b'event: response.created\ndata: {"type": "response.created",\ndata:  "n": 1}\n\n'


def test_given_a_multibyte_character_split_across_chunks_when_read_then_it_is_whole() -> None:
    # given
    text = 'data: {"type": "x", "t": "é😀"}\n\n'.encode()
    # when
    [event] = streaming.events([text[:17], text[17:19], text[19:]])
    # then
    assert event.data == {"type": "x", "t": "é😀"} and event.type == "x"


@pytest.mark.parametrize(
    "body", [b"data: not json\n\n", b"data: [1, 2]\n\n", b'data: {"type": "x"\n\n', b"data: \xff\n\n"]
)
def test_given_data_that_is_not_a_json_object_when_read_then_it_is_unreadable(body: bytes) -> None:
    with pytest.raises(streaming.Unreadable):
        list(streaming.events([body]))


def test_given_a_line_longer_than_any_answer_when_read_then_it_is_unreadable() -> None:
    with pytest.raises(streaming.Unreadable):
        list(streaming.events([b"data: " + b"x" * 1000], max_bytes=100))


def test_given_an_event_cut_before_its_blank_line_when_the_stream_ends_then_it_is_not_an_event() -> None:
    assert list(streaming.events([b'data: {"type": "x"}\n'])) == []


def test_given_a_done_marker_when_read_then_it_is_an_event_without_data() -> None:
    [event] = streaming.events([b"data: [DONE]\n\n"])
    assert event.data is None and event.raw == b"data: [DONE]\n\n"


def test_given_an_error_when_the_stream_is_closed_then_the_openai_sdk_reads_a_response_error_event() -> None:
    # when
    body = streaming.closing_event(UpstreamTimeout("the model did not answer in time"), sequence_number=7)
    # then it is one `error` event, in the SDK's own type
    [event] = streaming.events([body])
    assert body.startswith(b"event: error\n") and event.type == "error"
    parsed = STREAM_EVENT.validate_python(event.data)
    assert parsed.type == "error" and parsed.code == "timeout" and parsed.sequence_number == 7
    assert parsed.message == "the model did not answer in time" and parsed.param is None


# --- the relay, against the local endpoint ---------------------------------------------------------


@pytest.fixture
def rp_env(identity: LocalIdentity, monkeypatch: pytest.MonkeyPatch) -> None:
    for name, value in identity.env().items():
        monkeypatch.setenv(name, value)


@pytest.fixture
def relay(rp_env: None, upstream: LocalEndpoint) -> Iterator[Any]:
    client = _build_client(Settings(project_ocid=PROJECT_OCID, base_url=upstream.base_url))

    def _relay(budget_s: float = 10.0, retries: int = 2, record: Any = None, **arguments: object) -> StreamResult:
        return stream_response(client, {**ARGS, **arguments}, time.monotonic() + budget_s, retries, record)

    yield _relay
    client.close()


def _oci_body(upstream: LocalEndpoint, request: dict[str, Any]) -> bytes:
    """What the endpoint streams for `request`, read with a plain HTTP client."""
    import requests  # noqa: PLC0415

    upstream.register_bearer("relay-test")
    headers = {"Authorization": "Bearer relay-test", "OpenAI-Project": PROJECT_OCID}
    return requests.post(f"{upstream.base_url}/responses", json=request, headers=headers, timeout=5).content


def test_given_a_stream_when_relayed_then_oci_s_events_come_back_unchanged_with_usage_from_completed(
    relay: Any, upstream: LocalEndpoint
) -> None:
    # when
    result = relay()
    # then every event is OCI's, as sent (ids and times aside), ending with response.completed
    sent = json.loads(upstream.requests[-1].body)
    assert sent["stream"] is True and sent["input"] == "hello"
    events = _events(result.body)
    assert [e["type"] for e in events] == [e["type"] for e in _events(_oci_body(upstream, {**ARGS, "stream": True}))]
    assert events[-1]["type"] == "response.completed"
    assert result.failure is None and result.attempts == 1
    assert result.request_id == upstream.requests[0].request_id
    assert result.response is not None and result.response.usage is not None
    assert result.response.usage["output_tokens"] == 4  # a token a word: "Local answer to: hello"
    assert result.response.output_text == "Local answer to: hello"


@pytest.mark.parametrize("kind", ["reset", "truncated"])
def test_given_a_connection_cut_mid_stream_when_relayed_then_the_events_so_far_and_a_closing_error_event(
    relay: Any, upstream: LocalEndpoint, kind: str
) -> None:
    # given
    upstream.inject(Fault(kind, after_events=3))
    # when
    result = relay()
    # then no retry (events had arrived): the three events, then the error the SDKs read
    events = _events(result.body)
    assert [e["type"] for e in events] == [
        "response.created",
        "response.in_progress",
        "response.output_item.added",
        "error",
    ]
    assert events[-1] == {
        "type": "error",
        "code": "upstream_error",
        "message": "could not reach OCI Generative AI",
        "param": None,
        "sequence_number": 3,
    }
    assert isinstance(result.failure, UpstreamError) and result.response is None
    assert len(upstream.requests) == 1


def test_given_events_dripping_past_the_deadline_when_relayed_then_it_ends_with_a_timeout_event_in_time(
    relay: Any, upstream: LocalEndpoint
) -> None:
    # given
    upstream.inject(Fault("drip", delay_s=0.3))
    started = time.monotonic()
    # when
    result = relay(budget_s=1.0)
    # then
    assert time.monotonic() - started < 1.5
    events = _events(result.body)
    assert events[0]["type"] == "response.created" and len(events) > 2
    assert events[-1]["type"] == "error" and events[-1]["code"] == "timeout"
    assert isinstance(result.failure, UpstreamTimeout)


def test_given_events_arriving_fast_after_the_deadline_when_relayed_then_the_relay_still_stops() -> None:
    # given a stream that never reads from a socket (so no socket timeout can fire)
    endless = (streaming.Event(b'data: {"type": "x"}\n\n', "x", {"type": "x"}) for _ in iter(int, 1))
    # when
    relayed = streaming.relay(endless, deadline_mono=time.monotonic() + 0.2, late="late")
    # then
    assert isinstance(relayed.failure, UpstreamTimeout) and relayed.failure.message == "late"
    assert _events(relayed.body)[-1]["code"] == "timeout"


def test_given_oci_fails_before_any_event_when_relayed_then_it_is_retried_then_relayed(
    relay: Any, upstream: LocalEndpoint
) -> None:
    # given
    upstream.inject(Fault("status", status=503, code="ServiceUnavailable"))
    records: list[Attempt] = []
    # when
    result = relay(record=records.append)
    # then
    assert result.attempts == 2 and _events(result.body)[-1]["type"] == "response.completed"
    assert [r.status for r in records] == [503, 200]
    assert records[1].usage is not None and records[1].usage["total_tokens"] > 0


def test_given_oci_throttles_before_any_event_without_retries_left_when_relayed_then_rate_limited(
    relay: Any, upstream: LocalEndpoint
) -> None:
    upstream.inject(Fault("status", status=429, code="TooManyRequests", retry_after="7"))
    with pytest.raises(RateLimited) as raised:
        relay(retries=0)
    assert raised.value.retry_after == 7


@pytest.mark.parametrize("kind", ["non_json", "wrong_shape"])
def test_given_an_answer_that_is_not_an_event_stream_when_relayed_then_unreadable(
    relay: Any, upstream: LocalEndpoint, kind: str
) -> None:
    upstream.inject(Fault(kind))
    with pytest.raises(UpstreamError) as raised:
        relay()
    assert "cannot read" in raised.value.message and len(upstream.requests) == 1


def test_given_oci_s_own_response_failed_when_relayed_then_it_is_passed_on_unchanged_and_noted(
    relay: Any, upstream: LocalEndpoint
) -> None:
    # given
    upstream.inject(Fault("patched", fields={"status": "failed", "error": {"code": "server_error", "message": "x"}}))
    # when
    result = relay()
    # then
    events = _events(result.body)
    assert events[-1]["type"] == "response.failed" and events[-1]["response"]["error"]["code"] == "server_error"
    assert isinstance(result.failure, UpstreamError) and "(server_error)" in result.failure.message


def test_given_a_stream_larger_than_a_function_may_answer_when_relayed_then_it_ends_with_an_error_event(
    relay: Any, upstream: LocalEndpoint, monkeypatch: pytest.MonkeyPatch
) -> None:
    # given
    monkeypatch.setattr(streaming, "MAX_BODY_BYTES", 3000)
    # when
    result = relay()
    # then
    assert len(result.body) <= 3000
    assert _events(result.body)[-1]["type"] == "error"
    assert isinstance(result.failure, UpstreamError) and "over" in result.failure.message
