"""genai_handler.request: the request contract, field by field."""

from __future__ import annotations

import json
from typing import Any

import pytest
from openai.types.responses import ResponseReasoningItem

from genai_handler.contract import MAX_ITEMS, MAX_TOOLS, texts
from genai_handler.errors import InvalidRequest, PayloadTooLarge
from genai_handler.request import ALLOWED_FIELDS, parse, parse_body, validate, with_caps
from genai_handler.settings import DEFAULT_MODEL, MAX_INVOKE_PAYLOAD_BYTES, Settings

OTHER_MODEL = "openai.gpt-oss-120b"
SETTINGS = Settings(
    project_ocid="ocid1.generativeaiproject.oc1.us-chicago-1.aaaa",
    region="us-chicago-1",
    allowed_models=(DEFAULT_MODEL, OTHER_MODEL),
)


def _args(body: dict, settings: Settings = SETTINGS) -> dict:
    return parse(json.dumps(body).encode(), settings).arguments()


def build_arguments(body: dict, settings: Settings) -> dict:
    """A decoded body (values JSON cannot carry, such as NaN, included) through the contract and the caps."""
    return with_caps(validate(body, settings), settings).arguments()


def test_given_a_prompt_when_parsed_then_it_becomes_input_with_the_default_model_and_the_output_cap() -> None:
    # when / then
    assert _args({"prompt": "hi"}) == {
        "model": DEFAULT_MODEL,
        "input": "hi",
        "max_output_tokens": 2048,
        "store": True,  # kept for its caller by default (stored.py adds the owner)
    }


def test_given_responses_style_fields_when_parsed_then_they_pass_through_validated() -> None:
    # given
    body: dict[str, Any] = {
        "input": [
            {"role": "system", "content": "be brief"},
            {"type": "message", "role": "user", "content": [{"type": "input_text", "text": "hello"}]},
        ],
        "instructions": "answer in French",
        "model": OTHER_MODEL,
        "max_output_tokens": 100,
        "temperature": 0.2,
        "top_p": 1,
        "text": {"format": {"type": "json_schema", "name": "x", "schema": {"type": "object"}, "strict": True}},
        "metadata": {"team": "search"},
        "reasoning": {"effort": "low"},
    }
    # when
    arguments = _args(body)
    # then
    assert arguments["model"] == OTHER_MODEL and arguments["max_output_tokens"] == 100
    assert arguments["input"][1] == body["input"][1]  # as sent
    for name in ("instructions", "temperature", "top_p", "text", "metadata", "reasoning"):
        assert arguments[name] == body[name]
    assert arguments["store"] is True


@pytest.mark.parametrize(
    "asked", [{"store": True}, {"previous_response_id": "resp_1"}, {"conversation": "conv_1"}, {"background": True}]
)
def test_given_stored_responses_when_parsed_then_they_are_allowed_unless_the_operator_turns_them_off(
    asked: dict[str, object],
) -> None:
    # given the default, and the operator's switch off
    off = Settings(project_ocid=SETTINGS.project_ocid, region="us-chicago-1", allow_stored_responses=False)
    # when
    arguments = _args({"prompt": "go on", **asked})
    # then
    assert arguments["store"] is True and all(arguments[name] == value for name, value in asked.items())
    with pytest.raises(InvalidRequest, match="GENAI_ALLOW_STORED_RESPONSES"):
        _args({"prompt": "go on", **asked}, off)
    assert _args({"prompt": "go on"}, off)["store"] is False


def test_given_background_with_store_false_when_parsed_then_it_is_refused_saying_why() -> None:
    # when / then
    with pytest.raises(InvalidRequest, match="background needs store"):
        _args({"prompt": "long", "background": True, "store": False})


def test_given_unknown_fields_when_parsed_then_they_are_listed_with_the_allowed_ones() -> None:
    # when
    with pytest.raises(InvalidRequest) as caught:
        _args({"prompt": "a", "foo": 1, "bar": 2})
    # then
    assert "bar, foo" in caught.value.message
    assert ", ".join(ALLOWED_FIELDS) in caught.value.message


def test_given_input_and_instructions_when_parsed_then_both_count_against_the_character_cap() -> None:
    # given
    small = Settings(project_ocid=SETTINGS.project_ocid, region="us-chicago-1", max_input_chars=10)
    # when / then
    _args({"prompt": "12345", "instructions": "12345"}, small)
    with pytest.raises(InvalidRequest, match="limit is 10"):
        _args({"prompt": "12345", "instructions": "123456"}, small)
    with pytest.raises(InvalidRequest, match="limit is 10"):
        _args({"input": [{"role": "user", "content": [{"type": "input_text", "text": "x" * 11}]}]}, small)


def test_given_a_body_over_the_size_cap_when_parsed_then_it_is_413() -> None:
    # given
    small = Settings(project_ocid=SETTINGS.project_ocid, region="us-chicago-1", max_body_bytes=1024)
    # when / then
    with pytest.raises(PayloadTooLarge):
        parse_body(b" " * 1025, small)


@pytest.mark.parametrize(
    "raw",
    [b"[" * 100 + b"]" * 100, b'{"a":' * 40 + b"1" + b"}" * 40, b"1" * 5000, b'{"x": Infinity}', b'{"x": -Infinity}'],
)
def test_given_hostile_json_when_parsed_then_it_is_refused_cleanly(raw: bytes) -> None:
    # when / then
    with pytest.raises(InvalidRequest):
        parse_body(raw, SETTINGS)


@pytest.mark.parametrize("depth", [40, 5000, 100000])
def test_given_very_deep_nesting_when_parsed_then_it_is_called_too_deep_at_any_depth(depth: int) -> None:
    # beyond Python's recursion limit the decoder itself gives up: still "too deep", not "not JSON"
    # when / then
    with pytest.raises(InvalidRequest, match="nested deeper than 32 levels"):
        parse_body(
            b'{"a":' * depth + b"1" + b"}" * depth,
            Settings(
                project_ocid=SETTINGS.project_ocid, region="us-chicago-1", max_body_bytes=MAX_INVOKE_PAYLOAD_BYTES
            ),
        )


@pytest.mark.parametrize(
    "raw",
    [
        b'{"prompt": "a", "temperature": 1e400}',
        b'{"prompt": "a", "text": {"format": {"type": "json_schema", "name": "n", "schema": {"maximum": -1e400}}}}',
        b'{"prompt": "a", "metadata": {"k": "v"}, "x": [2E+999]}',
    ],
)
def test_given_a_number_too_large_for_a_float_when_parsed_then_it_is_refused(raw: bytes) -> None:
    # when / then
    with pytest.raises(InvalidRequest, match="number too large"):
        parse_body(raw, SETTINGS)


def test_given_large_but_finite_numbers_when_parsed_then_they_still_parse() -> None:
    # when / then
    assert parse_body(b'{"a": 1e308, "b": 10000000000000000000000000000000000000000}', SETTINGS)["a"] == 1e308


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("temperature", float("nan")),
        ("temperature", -0.1),
        ("top_p", 1.5),
        ("max_output_tokens", 0),
        ("max_output_tokens", 1.5),
        ("instructions", ""),
        ("metadata", {"k" * 65: "v"}),
        ("text", {"format": {"type": "text", "x": 1}}),
        ("reasoning", {"summary": "long"}),
        ("store", "yes"),
    ],
)
def test_given_an_out_of_range_value_when_validated_then_the_error_names_its_field(field: str, value: object) -> None:
    # when / then
    with pytest.raises(InvalidRequest, match=field.split("_")[0]):
        build_arguments({"prompt": "a", field: value}, SETTINGS)


def test_given_an_empty_text_part_when_parsed_then_it_is_refused_like_empty_content() -> None:
    # when / then
    with pytest.raises(InvalidRequest, match=r"input\[0\]\.content\[0\]\.text"):
        _args({"input": [{"role": "user", "content": [{"type": "input_text", "text": " "}]}]})


def _format(**fields: object) -> dict:
    return {"format": {"type": "json_schema", "name": "reply", "schema": {"type": "object"}, **fields}}


@pytest.mark.parametrize(
    "text",
    [
        _format(description="d" * 11),
        _format(name="n" * 11),
        _format(schema={"description": "d" * 11}),
    ],
)
def test_given_the_output_format_when_capped_then_its_texts_count_like_the_prompt(text: dict) -> None:
    # given a cap the prompt and the default format fit in (10 + 5 + 18 characters)
    small = Settings(project_ocid=SETTINGS.project_ocid, region="us-chicago-1", max_input_chars=38)
    assert _args({"prompt": "1234567890", "text": _format()}, small)
    # when / then a longer description, name or schema goes over it
    with pytest.raises(InvalidRequest, match="limit is 38"):
        _args({"prompt": "1234567890", "text": text}, small)


def test_given_a_format_name_outside_openais_rule_when_parsed_then_it_is_refused_without_echoing_it() -> None:
    # when / then
    for name in ("has space", "n" * 65, "ünï", "x" * 200_000):
        with pytest.raises(InvalidRequest) as raised:
            _args({"prompt": "hi", "text": _format(name=name)})
        assert raised.value.message == "text.format.name must be 1 to 64 letters, digits, _ or -"


def test_given_a_schema_over_its_own_cap_when_parsed_then_it_is_refused_naming_the_cap() -> None:
    # when / then
    with pytest.raises(InvalidRequest, match=r"^text\.format\.schema is over 16384 characters as JSON$"):
        _args({"prompt": "hi", "text": _format(schema={"description": "d" * 16_400})})


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        (b'{"prompt": "a", "prompt": "b"}', "request body: repeats a key"),
        (b'{"prompt": "a", "metadata": {"card 4111": "x", "card 4111": "y"}}', "metadata: repeats a key"),
        (
            b'{"prompt": "a", "text": {"format": {"type": "json_schema", "name": "n", "schema": '
            b'{"properties": {"ssn 078-05-1120": {}, "ssn 078-05-1120": {}}}}}}',
            "text.format.schema: repeats a key",
        ),
        (b'{"input": [{"role": "user", "content": "a", "role": "user"}]}', "input[0]: repeats a key"),
    ],
)
def test_given_a_repeated_key_when_parsed_then_the_message_names_its_position_never_the_key(
    raw: bytes, message: str
) -> None:
    # when
    with pytest.raises(InvalidRequest) as raised:
        parse(raw, SETTINGS)
    # then
    assert raised.value.message == message


def test_given_unprintable_characters_in_unknown_names_when_parsed_then_the_message_shows_them_escaped() -> None:
    # when
    with pytest.raises(InvalidRequest) as raised:
        _args({"prompt": "a", "x\u2028y\u202ez\x85\u0007": 1})
    # then
    assert raised.value.message.startswith("unknown field(s) x\\u2028y\\u202ez\\u0085\\u0007;")
    assert raised.value.message.isprintable()


@pytest.mark.parametrize(
    "body",
    [
        {"prompt": "a", "metadata": {"SECRET-KEY-4111": 5}},
        {"prompt": "a", "metadata": {"k": "SECRET-VALUE-4111" * 40}},
        {"prompt": "a", "temperature": "SECRET-VALUE-4111"},
        {"input": [{"role": "SECRET-VALUE-4111", "content": "x"}]},
        {"input": [{"role": "user", "content": [{"type": "SECRET-VALUE-4111", "text": "x"}]}]},
        {"prompt": "a", "text": {"format": {"type": "json_schema", "name": "SECRET VALUE 4111", "schema": {}}}},
    ],
)
def test_given_an_invalid_value_when_parsed_then_the_message_never_holds_it(body: dict) -> None:
    # when
    with pytest.raises(InvalidRequest) as raised:
        _args(body)
    # then
    assert "SECRET" not in raised.value.message and "4111" not in raised.value.message


def test_given_null_for_an_optional_field_or_an_off_value_when_parsed_then_it_is_not_asked_for() -> None:
    # when
    arguments = _args(
        {
            "prompt": "hi",
            "instructions": None,
            "temperature": None,
            "stream": False,
            "background": False,
            "tools": [],
            "text": None,
        }
    )
    # then
    assert arguments == {"model": DEFAULT_MODEL, "input": "hi", "max_output_tokens": 2048, "store": True}


# What the OpenAI SDKs and agent libraries send on every call (../shared/FIELD-NOTES.md, "What real
# clients send"), each at the value that asks for nothing.
ROUTINE_OFF_VALUES: dict[str, Any] = {
    "stream": False,
    "background": False,
    "tools": [],
    "include": [],
    "tool_choice": "auto",
    "parallel_tool_calls": True,
    "truncation": "disabled",
    "service_tier": "auto",
    "user": "user-1234",
    "safety_identifier": "b1946ac92492d2347c6235b4d2611184",
    "prompt_cache_key": "chat-42",
}


def test_given_the_fields_real_clients_send_routinely_when_parsed_then_they_are_accepted_and_not_sent() -> None:
    # given every routine field at its off value, and the caller identifiers clients add
    body = {"input": "hi", **ROUTINE_OFF_VALUES}
    # when
    arguments = _args(body)
    # then the call is made as if they were absent: nothing OCI does not document reaches it
    assert arguments == {"model": DEFAULT_MODEL, "input": "hi", "max_output_tokens": 2048, "store": True}


@pytest.mark.parametrize("include", [["reasoning.encrypted_content"], ["message.output_text.logprobs"]])
def test_given_an_include_on_the_allow_list_when_parsed_then_it_is_sent(include: list[str]) -> None:
    # when
    arguments = _args({"input": "hi", "include": include})
    # then
    assert arguments["include"] == include


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("include", ["file_search_call.results"], "include[0] must be a list of: reasoning.encrypted_content, "),
        ("include", "reasoning.encrypted_content", "include must be a list of: reasoning.encrypted_content, "),
        ("tool_choice", "required", "tool_choice must not be required without tools"),
        ("tool_choice", {"type": "function", "name": "f"}, "tool_choice must name one of the tools sent"),
        ("tool_choice", "any", "tool_choice must be auto, none, required or an object naming one of the tools"),
        ("parallel_tool_calls", "yes", "parallel_tool_calls must be true or false"),
        ("truncation", "middle", "truncation must be auto or disabled"),
        (
            "service_tier",
            "priority",
            "service_tier must be auto or default: other tiers are not offered by this function",
        ),
        ("user", "x" * 129, "user must be 1 to 128 printable ASCII characters"),
        ("safety_identifier", "née", "safety_identifier must be 1 to 128 printable ASCII characters"),
        ("prompt_cache_key", "", "prompt_cache_key must be 1 to 128 printable ASCII characters"),
    ],
)
def test_given_a_routine_field_with_a_value_this_function_refuses_when_parsed_then_the_message_says_why(
    field: str, value: object, message: str
) -> None:
    # when
    with pytest.raises(InvalidRequest) as raised:
        _args({"input": "hi", field: value})
    # then
    assert raised.value.message.startswith(message)


def _replayed(**part: object) -> dict[str, Any]:
    """An earlier answer's message as the openai SDK's `response.output` gives it back (ResponseOutputMessage)."""
    text = {"type": "output_text", "text": "Paris.", "annotations": [], **part}
    return {"id": "msg_0123abc", "type": "message", "role": "assistant", "status": "completed", "content": [text]}


def test_given_history_replayed_as_the_sdk_returns_it_when_parsed_then_it_is_sent_verbatim() -> None:
    # given the previous answer's output items, then the next question, as `input += response.output` builds it
    history = [{"role": "user", "content": "Capital of France?"}, _replayed(logprobs=[])]
    body = {"input": [*history, {"role": "user", "content": "And of Italy?"}]}
    # when
    arguments = _args(body)
    # then
    assert arguments["input"] == body["input"]


@pytest.mark.parametrize(
    ("part", "message"),
    [
        ({"annotations": [{"type": "url_citation", "url": "https://x.example"}]}, "must be empty: no tool"),
        ({"logprobs": [{"token": "Paris", "logprob": -0.1}]}, "must be empty: log probabilities are not replayed"),
    ],
)
def test_given_a_replayed_part_with_what_no_offered_tool_makes_when_parsed_then_it_is_refused_naming_it(
    part: dict[str, object], message: str
) -> None:
    # when
    with pytest.raises(InvalidRequest) as raised:
        _args({"input": [_replayed(**part)]})
    # then
    assert raised.value.message.startswith("input[0].content[0].") and message in raised.value.message


def _reasoning(**fields: object) -> dict[str, Any]:
    """A reasoning model's reasoning item, as the openai SDK's `response.output` gives it back."""
    item = ResponseReasoningItem(
        id="rs_0123abc",
        type="reasoning",
        summary=[{"type": "summary_text", "text": "The user asks for a capital."}],
        encrypted_content="gAAAAABpZ2VuYWktc2VhbGVkLWJ5LW9jaQ==",
        status="completed",
    )
    return {**item.model_dump(exclude_none=True), **fields}


def test_given_a_replayed_reasoning_item_when_parsed_then_it_is_sent_verbatim_and_its_summary_is_read() -> None:
    # given a reasoning model's earlier turn replayed verbatim, with include=["reasoning.encrypted_content"]
    items = [{"role": "user", "content": "Capital of France?"}, _reasoning(), _replayed()]
    body = {"input": [*items, {"role": "user", "content": "And of Italy?"}], "include": ["reasoning.encrypted_content"]}
    # when
    request = parse(json.dumps(body).encode(), SETTINGS)
    # then OCI gets the items as sent, and the summary is text the model reads; the sealed content is not
    assert request.arguments()["input"] == body["input"]
    read = {text.at: text.text for text in texts(request)}
    assert read["input[1].summary[0].text"] == "The user asks for a capital."
    assert not any("gAAAA" in text for text in read.values())


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"summary": [{"type": "summary_text", "text": ""}]}, "input[0].summary[0].text must be a non-empty string"),
        ({"encrypted_content": "not sealed: spaces"}, "input[0].encrypted_content must be OCI's sealed reasoning"),
        ({"id": None}, "input[0].id must be a reasoning item id"),
    ],
)
def test_given_a_malformed_reasoning_item_when_parsed_then_it_is_refused_naming_it(
    fields: dict[str, object], message: str
) -> None:
    # when
    with pytest.raises(InvalidRequest) as raised:
        _args({"input": [_reasoning(**fields)]})
    # then
    assert raised.value.message.startswith(message)


@pytest.mark.parametrize("part", [{"file_id": "file-1"}, {"file_url": "https://x.example/a.pdf"}])
def test_given_a_file_part_when_parsed_then_it_is_refused_saying_oci_takes_text_and_images(
    part: dict[str, str],
) -> None:
    # given a PDF as the openai SDK's ResponseInputFileParam sends it
    body = {
        "input": [
            {"role": "user", "content": [{"type": "input_text", "text": "Summarise"}, {"type": "input_file", **part}]}
        ]
    }
    # when
    with pytest.raises(InvalidRequest) as raised:
        _args(body)
    # then
    assert raised.value.message == (
        "input[0].content[1]: input_file is not offered: OCI's Responses API takes text and image inputs"
    )


TOOL = {"type": "function", "name": "get_weather", "parameters": {"type": "object"}, "strict": True}
CALL = {"type": "function_call", "call_id": "call_1", "name": "get_weather", "arguments": '{"city": "Paris"}'}


def test_given_function_tools_and_a_replayed_call_with_its_output_when_parsed_then_all_are_sent_as_given() -> None:
    # given an agent's second turn: its tools, the model's call and the function's output
    items = [
        {"role": "user", "content": "Weather?"},
        CALL,
        {"type": "function_call_output", "call_id": "call_1", "output": "sunny"},
    ]
    body = {"input": items, "tools": [TOOL], "tool_choice": "auto", "parallel_tool_calls": False}
    # when
    arguments = _args(body)
    # then
    assert arguments["input"] == items and arguments["tools"] == [TOOL]
    assert arguments["tool_choice"] == "auto" and arguments["parallel_tool_calls"] is False


def test_given_a_function_output_over_the_input_cap_when_parsed_then_it_counts_like_the_prompt() -> None:
    # given a short question and a long tool output, over the cap together
    small = Settings(project_ocid=SETTINGS.project_ocid, region="us-chicago-1", max_input_chars=100)
    output = {"type": "function_call_output", "call_id": "call_1", "output": "x" * 95}
    body = {"input": [{"role": "user", "content": "Weather?"}, CALL, output], "tools": [TOOL]}
    # when
    with pytest.raises(InvalidRequest) as raised:
        _args(body, small)
    # then
    assert raised.value.message.startswith("the request's text is ")


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"tools": [TOOL] * 2}, "tools must name each function once"),
        (
            {"tools": [{**TOOL, "name": f"f{i}"} for i in range(MAX_TOOLS + 1)]},
            f"tools must be a list of at most {MAX_TOOLS}",
        ),
        (
            {"tools": [{"type": "file_search", "vector_store_ids": ["vs_1"]}]},
            "tools[0] (file_search): hosted tools are off unless the operator allows them",
        ),
        ({"tools": [{**TOOL, "name": "get weather"}]}, "tools[0].name must be 1 to 64 letters, digits, _ or -"),
        (
            {"input": [{"role": "user", "content": "x"}] * (MAX_ITEMS + 1)},
            f"input must be a non-empty string or a list of 1 to {MAX_ITEMS} items",
        ),
        ({"input": [{**CALL, "call_id": "call 1"}]}, "input[0].call_id must be a call id"),
        (
            {"input": [{"type": "function_call_output", "call_id": "c", "output": ""}]},
            "input[0].output must be a non-empty string",
        ),
    ],
)
def test_given_tools_or_items_outside_the_caps_when_parsed_then_the_message_names_the_field(
    body: dict, message: str
) -> None:
    # when
    with pytest.raises(InvalidRequest) as raised:
        _args({"input": "hi", **body})
    # then
    assert raised.value.message.startswith(message)


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"tool_choice": {"": None}}, 'tool_choice: unknown field(s) ""; allowed: type, name'),
        ({"": 1}, 'unknown field(s) ""; allowed: prompt, input,'),
    ],
)
def test_given_an_unknown_field_inside_a_union_or_with_an_empty_name_when_parsed_then_the_message_names_it(
    body: dict, message: str
) -> None:
    # when
    with pytest.raises(InvalidRequest) as raised:
        _args({"prompt": "hi", **body})
    # then
    assert raised.value.message.startswith(message)


PNG = (  # one transparent pixel
    "data:image/png;base64,"
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwADhgGAWjR9awAAAABJRU5ErkJggg=="
)


def _with_images(*urls: str) -> dict[str, Any]:
    parts = [{"type": "input_text", "text": "What is in these?"}]
    parts += [{"type": "input_image", "image_url": url, "detail": "auto"} for url in urls]
    return {"input": [{"role": "user", "content": parts}]}


def test_given_images_by_data_url_and_https_url_when_parsed_then_they_are_sent_as_given() -> None:
    # given
    body = _with_images(PNG, "https://images.example.com/cat.jpg")
    # when
    arguments = _args(body)
    # then
    assert arguments["input"] == body["input"]


@pytest.mark.parametrize(
    ("url", "message"),
    [
        (
            "http://images.example.com/cat.jpg",
            "input[0].content[1].image_url must be an https URL or a base64 data URL",
        ),
        ("data:text/html;base64,PGgxPg==", "input[0].content[1].image_url must be an https URL or a base64 data URL"),
        ("file:///etc/passwd", "input[0].content[1].image_url must be an https URL or a base64 data URL"),
    ],
)
def test_given_an_image_url_that_is_not_https_or_an_image_data_url_when_parsed_then_it_is_refused(
    url: str, message: str
) -> None:
    # when
    with pytest.raises(InvalidRequest) as raised:
        _args(_with_images(url))
    # then
    assert raised.value.message == message


def test_given_more_images_than_the_operator_allows_when_parsed_then_it_is_refused_naming_the_cap() -> None:
    # given
    two = Settings(project_ocid=SETTINGS.project_ocid, region="us-chicago-1", max_images=2)
    # when
    with pytest.raises(InvalidRequest) as raised:
        _args(_with_images(PNG, PNG, PNG), two)
    # then
    assert raised.value.message == "the request has 3 images; the limit is 2 (GENAI_MAX_IMAGES)"


@pytest.mark.parametrize(("allow", "refused"), [(False, True), (True, False)])
def test_given_guardrails_in_block_mode_when_an_image_is_sent_then_it_is_refused_unless_the_operator_allows_it(
    allow: bool, refused: bool
) -> None:
    # given guardrails that cannot read an image
    blocking = Settings(
        project_ocid=SETTINGS.project_ocid, region="us-chicago-1", guardrails="block", guardrails_allow_images=allow
    )
    # when / then
    if refused:
        with pytest.raises(InvalidRequest, match=r"^input\[0\]\.content\[1\]: guardrails cannot screen an image"):
            _args(_with_images(PNG), blocking)
    else:
        assert _args(_with_images(PNG), blocking)["input"][0]["content"][1]["image_url"] == PNG


FILE_SEARCH = {"type": "file_search", "vector_store_ids": ["vs_123"], "max_num_results": 5}
CODE = {"type": "code_interpreter", "container": {"type": "auto"}}
MCP = {
    "type": "mcp",
    "server_label": "docs",
    "server_url": "https://mcp.example.com/mcp",
    "server_description": "Product documentation.",
    "allowed_tools": ["search"],
    "require_approval": "never",
}
HOSTED = Settings(
    project_ocid=SETTINGS.project_ocid,
    region="us-chicago-1",
    allowed_hosted_tools=("file_search", "code_interpreter", "mcp"),
    mcp_allowed_urls=("https://mcp.example.com/mcp",),
)


@pytest.mark.parametrize("tool", [FILE_SEARCH, CODE, MCP])
def test_given_a_hosted_tool_the_operator_allows_when_parsed_then_it_is_sent_as_given(tool: dict) -> None:
    # when
    arguments = _args({"input": "hi", "tools": [tool, TOOL]}, HOSTED)
    # then
    assert arguments["tools"] == [tool, TOOL]


@pytest.mark.parametrize("tool", [FILE_SEARCH, CODE, MCP])
def test_given_a_hosted_tool_by_default_when_parsed_then_it_is_refused_naming_the_setting(tool: dict) -> None:
    # when
    with pytest.raises(InvalidRequest) as raised:
        _args({"input": "hi", "tools": [TOOL, tool]})
    # then
    assert raised.value.message == (
        f"tools[1] ({tool['type']}): hosted tools are off unless the operator allows them (GENAI_ALLOWED_HOSTED_TOOLS)"
    )


@pytest.mark.parametrize(
    ("tool", "message"),
    [
        (
            {**MCP, "server_url": "https://evil.example/mcp"},
            "tools[0].server_url is not one the operator allows (GENAI_MCP_ALLOWED_URLS)",
        ),
        (
            {**MCP, "require_approval": "always"},
            "tools[0].require_approval must be never: approvals are not relayed by this function",
        ),
        (
            {**CODE, "container": "cntr_123"},
            "tools[0].container must be an object of type auto: a named container is shared by every caller",
        ),
        (
            {**FILE_SEARCH, "vector_store_ids": []},
            "tools[0].vector_store_ids must be a list of 1 to 8 vector store ids",
        ),
        ({"type": "web_search"}, "tools[0].type must be one of 'function', 'file_search', 'code_interpreter', 'mcp'"),
    ],
)
def test_given_a_hosted_tool_outside_its_rules_when_parsed_then_the_message_says_why_without_echoing_it(
    tool: dict, message: str
) -> None:
    # when
    with pytest.raises(InvalidRequest) as raised:
        _args({"input": "hi", "tools": [tool]}, HOSTED)
    # then
    assert raised.value.message == message and "evil" not in raised.value.message
