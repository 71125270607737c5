"""genai_handler.request: the request contract, field by field."""

from __future__ import annotations

import json

import pytest

from genai_handler.errors import InvalidRequest, PayloadTooLarge
from genai_handler.request import ALLOWED_FIELDS, parse, parse_body, validate, with_caps
from genai_handler.settings import DEFAULT_MODEL, Settings

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


def test_a_prompt_becomes_input_with_the_default_model_and_the_output_cap() -> None:
    assert _args({"prompt": "hi"}) == {
        "model": DEFAULT_MODEL,
        "input": "hi",
        "max_output_tokens": 2048,
        "store": False,
    }


def test_responses_style_fields_pass_through_validated() -> None:
    body = {
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
    arguments = _args(body)
    assert arguments["model"] == OTHER_MODEL and arguments["max_output_tokens"] == 100
    assert arguments["input"][1] == body["input"][1]  # as sent
    for name in ("instructions", "temperature", "top_p", "text", "metadata", "reasoning"):
        assert arguments[name] == body[name]
    assert arguments["store"] is False


def test_stored_responses_only_when_the_operator_enables_them() -> None:
    enabled = Settings(project_ocid=SETTINGS.project_ocid, region="us-chicago-1", allow_stored_responses=True)
    arguments = _args({"prompt": "go on", "store": True, "previous_response_id": "resp_1"}, enabled)
    assert arguments["store"] is True and arguments["previous_response_id"] == "resp_1"
    with pytest.raises(InvalidRequest, match="GENAI_ALLOW_STORED_RESPONSES"):
        _args({"prompt": "go on", "previous_response_id": "resp_1"})


def test_unknown_fields_are_listed_with_the_allowed_ones() -> None:
    with pytest.raises(InvalidRequest) as caught:
        _args({"prompt": "a", "foo": 1, "bar": 2})
    assert "bar, foo" in caught.value.message
    assert ", ".join(ALLOWED_FIELDS) in caught.value.message


def test_input_and_instructions_count_against_the_character_cap() -> None:
    small = Settings(project_ocid=SETTINGS.project_ocid, region="us-chicago-1", max_input_chars=10)
    _args({"prompt": "12345", "instructions": "12345"}, small)
    with pytest.raises(InvalidRequest, match="limit is 10"):
        _args({"prompt": "12345", "instructions": "123456"}, small)
    with pytest.raises(InvalidRequest, match="limit is 10"):
        _args({"input": [{"role": "user", "content": [{"type": "input_text", "text": "x" * 11}]}]}, small)


def test_body_size_cap_is_413() -> None:
    small = Settings(project_ocid=SETTINGS.project_ocid, region="us-chicago-1", max_body_bytes=1024)
    with pytest.raises(PayloadTooLarge):
        parse_body(b" " * 1025, small)


@pytest.mark.parametrize(
    "raw",
    [b"[" * 100 + b"]" * 100, b'{"a":' * 40 + b"1" + b"}" * 40, b"1" * 5000, b'{"x": Infinity}', b'{"x": -Infinity}'],
)
def test_hostile_json_is_refused_cleanly(raw: bytes) -> None:
    with pytest.raises(InvalidRequest):
        parse_body(raw, SETTINGS)


@pytest.mark.parametrize("depth", [40, 5000, 100000])
def test_very_deep_nesting_is_called_too_deep_at_any_depth(depth: int) -> None:
    # beyond Python's recursion limit the decoder itself gives up: still "too deep", not "not JSON"
    with pytest.raises(InvalidRequest, match="nested deeper than 32 levels"):
        parse_body(
            b'{"a":' * depth + b"1" + b"}" * depth,
            Settings(project_ocid=SETTINGS.project_ocid, region="us-chicago-1", max_body_bytes=6 * 1024 * 1024),
        )


@pytest.mark.parametrize(
    "raw",
    [
        b'{"prompt": "a", "temperature": 1e400}',
        b'{"prompt": "a", "text": {"format": {"type": "json_schema", "name": "n", "schema": {"maximum": -1e400}}}}',
        b'{"prompt": "a", "metadata": {"k": "v"}, "x": [2E+999]}',
    ],
)
def test_a_number_too_large_for_a_float_is_refused_while_parsing(raw: bytes) -> None:
    with pytest.raises(InvalidRequest, match="number too large"):
        parse_body(raw, SETTINGS)


def test_large_but_finite_numbers_still_parse() -> None:
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
def test_out_of_range_values_name_their_field(field: str, value: object) -> None:
    with pytest.raises(InvalidRequest, match=field.split("_")[0]):
        build_arguments({"prompt": "a", field: value}, SETTINGS)


def test_an_empty_text_part_is_refused_like_empty_content() -> None:
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
    # then a longer description, name or schema goes over it
    with pytest.raises(InvalidRequest, match="limit is 38"):
        _args({"prompt": "1234567890", "text": text}, small)


def test_given_a_format_name_outside_openai_s_rule_then_it_is_refused_without_echoing_it() -> None:
    for name in ("has space", "n" * 65, "ünï", "x" * 200_000):
        with pytest.raises(InvalidRequest) as raised:
            _args({"prompt": "hi", "text": _format(name=name)})
        assert raised.value.message == "text.format.name must be 1 to 64 letters, digits, _ or -"


def test_given_a_schema_over_its_own_cap_then_it_is_refused_naming_the_cap() -> None:
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
def test_given_a_repeated_key_then_the_message_names_its_position_never_the_key(raw: bytes, message: str) -> None:
    with pytest.raises(InvalidRequest) as raised:
        parse(raw, SETTINGS)
    assert raised.value.message == message


def test_given_unprintable_characters_in_unknown_names_then_the_message_shows_them_escaped() -> None:
    with pytest.raises(InvalidRequest) as raised:
        _args({"prompt": "a", "x\u2028y\u202ez\x85\u0007": 1})
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
def test_given_an_invalid_value_then_the_message_never_holds_it(body: dict) -> None:
    with pytest.raises(InvalidRequest) as raised:
        _args(body)
    assert "SECRET" not in raised.value.message and "4111" not in raised.value.message


def test_given_null_for_an_optional_field_or_an_off_value_then_it_is_not_asked_for() -> None:
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
    assert arguments == {"model": DEFAULT_MODEL, "input": "hi", "max_output_tokens": 2048, "store": False}
