"""genai_handler.answer: OCI's response JSON read as the OpenAI SDK's `Response` model reads it."""

from __future__ import annotations

import typing
import warnings
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from openai.types.responses import Response, ResponseOutputItem, ResponseUsage
from openai.types.responses.response import IncompleteDetails

from genai_handler.answer import Answer, Unreadable, output_text, read

# Every output item type and message part type the SDK knows, from its own unions.
ITEM_TYPES = [
    model.model_fields["type"].annotation.__args__[0] for model in typing.get_args(ResponseOutputItem)[0].__args__
]
PART_TYPES = ["output_text", "refusal"]
_json_scalars = st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=8)
_json = st.recursive(
    _json_scalars,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner, max_size=3),
    max_leaves=8,
)
_text = st.text(max_size=12)
_part = st.fixed_dictionaries(
    {"type": st.sampled_from(PART_TYPES)},
    optional={"text": _text | _json, "annotations": st.just([]), "refusal": _text, "logprobs": st.just([])},
)
_message = st.fixed_dictionaries(
    {"type": st.just("message")},
    optional={
        "id": _text,
        "role": st.just("assistant"),
        "status": st.sampled_from(["completed", "incomplete"]),
        "content": st.lists(_part | _json, max_size=4) | _json,
    },
)
_other_item = st.fixed_dictionaries(
    {"type": st.sampled_from(ITEM_TYPES)},
    optional={"id": _text, "call_id": _text, "name": _text, "arguments": _text, "content": st.lists(_part, max_size=2)},
)
_item = _message | _other_item | _json
_usage = st.fixed_dictionaries(
    {},
    optional={
        "input_tokens": st.integers(0, 10**6),
        "output_tokens": st.integers(0, 10**6),
        "total_tokens": st.integers(0, 10**6),
        "input_tokens_details": st.fixed_dictionaries({"cached_tokens": st.integers(0, 9)}),
        "output_tokens_details": st.fixed_dictionaries({"reasoning_tokens": st.integers(0, 9)}),
    },
)
_body = st.fixed_dictionaries(
    {"id": _text, "object": st.just("response"), "model": _text, "output": st.lists(_item, max_size=4)},
    optional={
        "status": st.sampled_from(["completed", "incomplete", "failed", "in_progress"]) | _json,
        "usage": _usage | st.none() | _json,
        "incomplete_details": st.fixed_dictionaries({"reason": _text}) | st.none() | _json,
        "error": st.fixed_dictionaries({"code": _text, "message": _text}) | st.none() | _json,
    },
)


def _as_the_sdk_reads(body: dict[str, Any]) -> Answer | None:
    """The reference: what upstream.py read from the SDK's model before this module (None: unreadable)."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # pydantic warns when it dumps a constructed model's odd values
            response = Response.construct(**body)
            if not isinstance(response.usage, (ResponseUsage, type(None))):
                return None
            if not isinstance(response.incomplete_details, (IncompleteDetails, type(None))):
                return None
            return Answer(
                id=response.id,
                model=response.model,
                status=response.status,
                output_text=response.output_text,
                usage=_as_sent(response.usage.model_dump(), body["usage"]) if response.usage else None,
                incomplete_details=(
                    _as_sent(response.incomplete_details.model_dump(), body["incomplete_details"])
                    if response.incomplete_details
                    else None
                ),
                error=body.get("error"),
            )
    except Exception:
        return None


def _as_sent(dumped: Any, sent: Any) -> Any:
    """The SDK's dump without the nulls it adds for fields OCI did not send: `usage` and
    `incomplete_details` pass through as OCI sent them, the one difference from the SDK's model."""
    if not isinstance(dumped, dict) or not isinstance(sent, dict):
        return dumped
    assert all(value is None for name, value in dumped.items() if name not in sent)
    return {name: _as_sent(value, sent[name]) for name, value in dumped.items() if name in sent}


def _as_read(body: dict[str, Any]) -> Answer | None:
    try:
        return read(body)
    except Unreadable:
        return None


@settings(max_examples=800, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(body=_body)
def test_given_any_answer_shape_when_read_then_it_matches_the_sdks_model(body: dict[str, Any]) -> None:
    # when
    ours, sdks = _as_read(body), _as_the_sdk_reads(body)
    # then both read it, to the same fields, or neither does
    assert ours == sdks


@settings(max_examples=300, deadline=None)
@given(body=_body)
def test_given_any_answer_when_it_says_it_failed_then_the_sdks_fields_say_so_too(body: dict[str, Any]) -> None:
    # given
    ours = _as_read(body)
    if ours is None:
        return
    # when
    response = Response.construct(**body)
    # then
    assert ours.failed == (response.status == "failed" or response.error is not None)
    assert ours.error_code == getattr(response.error, "code", None) or not isinstance(body.get("error"), dict)


def test_given_messages_and_tool_calls_when_read_then_only_the_messages_output_text_is_joined() -> None:
    # given
    output = [
        {"type": "reasoning", "id": "rs_1", "summary": [{"type": "summary_text", "text": "thinking"}]},
        {
            "type": "message",
            "content": [{"type": "output_text", "text": "Hello, "}, {"type": "refusal", "refusal": "x"}],
        },
        {"type": "function_call", "call_id": "c1", "name": "f", "arguments": "{}"},
        {"type": "message", "content": [{"type": "output_text", "text": "world", "annotations": []}]},
    ]
    # when / then
    assert output_text(output) == "Hello, world"


@pytest.mark.parametrize(
    "output",
    [None, {"type": "message"}, ["text"], [{"type": "message"}], [{"type": "message", "content": ["x"]}]],
    ids=["none", "object", "string item", "message without content", "string part"],
)
def test_given_an_output_the_sdk_cannot_read_when_read_then_it_is_unreadable(output: object) -> None:
    # when / then
    with pytest.raises(Unreadable):
        output_text(output)


def test_given_usage_when_counted_then_only_the_three_counts_are_kept() -> None:
    # given
    body = {"output": [], "usage": {"input_tokens": 3, "output_tokens": 4, "total_tokens": 7, "x": {"y": 1}}}
    # when / then
    assert read(body).counts == {"input_tokens": 3, "output_tokens": 4, "total_tokens": 7}


def test_given_a_malformed_output_and_an_output_text_field_when_read_then_it_is_unreadable() -> None:
    # given a body the SDK reads through pydantic's fallback: its property raises AttributeError, so
    # `response.output_text` returns the extra field instead (OCI sends no such field; not followed)
    body: dict[str, Any] = {"id": "r", "model": "m", "output": [None], "output_text": "trust me"}
    assert Response.construct(**body).output_text == "trust me"
    # when / then
    with pytest.raises(Unreadable):
        read(body)
