"""Property-based input testing through the fdk's own request path (gateway mode).

Whatever a caller sends, the function answers with a documented status and JSON body: 200 for a
valid request, a 4xx naming the problem otherwise, never a 5xx of its own, never a 502 from the
fdk, never a leak of exception text or credentials, and OCI is never called for input it refused.
"""

from __future__ import annotations

import json
import re
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from genai_handler.contract import MAX_METADATA
from genai_handler.local.agent import FunctionProcess, Invocation
from genai_handler.local.endpoint import LocalEndpoint
from genai_handler.local.identity import LocalIdentity
from genai_handler.request import ALLOWED_FIELDS
from genai_handler.settings import DEFAULT_MODEL

MODEL = DEFAULT_MODEL
MAX_INPUT_CHARS, MAX_OUTPUT_TOKENS, MAX_BODY_BYTES = 32000, 2048, 1024 * 1024
ANSWER_FIELDS = {"id", "model", "status", "output_text", "usage", "incomplete_details", "request_id"}
ROUTES = ("/genai", "/v1/responses", "/api/v1/responses/?trace=1")
_FUZZ = settings(
    max_examples=300,
    deadline=None,
    database=None,
    suppress_health_check=[
        HealthCheck.function_scoped_fixture,
        HealthCheck.too_slow,
        HealthCheck.data_too_large,
        HealthCheck.large_base_example,
    ],
)
_PYTHON_LEAKS = re.compile(r"Traceback|File \"|site-packages|\b[A-Z][A-Za-z]*(Error|Exception)\b|Error: |<object at 0x")


def _openai_route(path: str) -> bool:
    return path.split("?", 1)[0].rstrip("/").endswith("/responses")


def _leaks(text: str, sent: bytes, identity: LocalIdentity) -> list[str]:
    """Secrets or Python internals in `text` that the caller did not send themselves."""
    caller = sent.decode("utf-8", "replace")
    found = [m.group(0) for m in _PYTHON_LEAKS.finditer(text) if m.group(0) not in caller]
    secrets = (identity.token, identity.token.split(".")[1][:24], "ST$", "PRIVATE KEY", "Signature ", 'keyId="')
    return found + [s for s in secrets if s in text and s not in caller]


def _check_answer(
    answer: Invocation,
    sent: bytes,
    path: str,
    endpoint: LocalEndpoint,
    identity: LocalIdentity,
    function: FunctionProcess,
) -> int:
    """The invariants every answer keeps; returns the caller's status."""
    assert answer.status == 200, f"the fdk answered {answer.status}: {answer.body[:300]!r}"
    assert function.alive()
    status = answer.http_status
    assert status in (200, 400, 405, 413), (status, answer.body[:300])
    assert answer.headers.get("content-type") == "application/json"
    assert not _leaks(answer.body.decode("utf-8", "replace"), sent, identity), answer.body[:300]
    body = answer.json()
    if status == 200:
        assert [r.status for r in endpoint.requests] == [200]
        if not _openai_route(path):
            assert set(body) == ANSWER_FIELDS
            assert body["request_id"] == endpoint.requests[0].request_id
        else:
            assert body["object"] == "response" and body["output"]
        return status
    assert endpoint.requests == [], "OCI was called for a request the function refused"
    assert set(body) == {"error"}
    error = body["error"]
    if _openai_route(path):
        assert set(error) == {"message", "type", "param", "code"} and error["code"] == error["type"]
    else:
        assert set(error) == {"type", "message", "request_id"} and error["request_id"] is None
    expected_type = {400: "invalid_request", 405: "method_not_allowed", 413: "payload_too_large"}[status]
    assert error["type"] == expected_type and isinstance(error["message"], str) and error["message"]
    return status


def _send(
    function: FunctionProcess,
    endpoint: LocalEndpoint,
    identity: LocalIdentity,
    body: bytes,
    path: str = "/genai",
    method: str = "POST",
) -> int:
    endpoint.reset()
    answer = function.invoke(body, path=path, method=method)
    return _check_answer(answer, body, path, endpoint, identity, function)


# --- strategies -------------------------------------------------------------------------------

_blank = st.sampled_from(["", " ", "\t\n", "\u3000", "\u00a0 \u2003"])
_text = st.text(min_size=1, max_size=80).filter(str.strip)
_leaf = (
    st.none()
    | st.booleans()
    | st.integers(-(2**64), 2**64)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=40)
)
json_values = st.recursive(
    _leaf,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner, max_size=4),
    max_leaves=20,
)
_part = st.fixed_dictionaries({"type": st.sampled_from(["input_text", "output_text"]), "text": _text})
_message = st.fixed_dictionaries(
    {
        "role": st.sampled_from(["user", "assistant", "system", "developer"]),
        "content": _text | st.lists(_part, min_size=1, max_size=3),
    },
    optional={"type": st.just("message")},
)
_schema = st.recursive(
    st.fixed_dictionaries({"type": st.sampled_from(["string", "number", "boolean"])}),
    lambda inner: st.fixed_dictionaries(
        {"type": st.just("object"), "properties": st.dictionaries(st.text(max_size=8), inner, max_size=3)}
    ),
    max_leaves=6,
)
_format = st.one_of(
    st.fixed_dictionaries({"type": st.sampled_from(["text", "json_object"])}),
    st.fixed_dictionaries(
        {
            "type": st.just("json_schema"),
            "name": st.from_regex(r"[A-Za-z0-9_-]{1,64}", fullmatch=True),
            "schema": _schema,
        },
        optional={"strict": st.booleans(), "description": _text},
    ),
)
_OPTIONAL_VALID = {
    "instructions": _text,
    "model": st.just(MODEL),
    "max_output_tokens": st.integers(1, MAX_OUTPUT_TOKENS),
    "temperature": st.floats(0, 2) | st.integers(0, 2),
    "top_p": st.floats(0, 1) | st.integers(0, 1),
    "text": st.fixed_dictionaries(
        {}, optional={"format": _format, "verbosity": st.sampled_from(["low", "medium", "high"])}
    ),
    "metadata": st.dictionaries(st.text(max_size=64), st.text(max_size=512), max_size=MAX_METADATA),
    "reasoning": st.fixed_dictionaries(
        {},
        optional={
            "effort": st.sampled_from(["none", "minimal", "low", "medium", "high", "xhigh"]),
            "summary": st.sampled_from(["auto", "concise", "detailed"]),
        },
    ),
    "store": st.just(False),
}


@st.composite
def valid_requests(draw: st.DrawFn) -> dict[str, Any]:
    """Requests the contract accepts: prompt or input, plus any mix of valid optional fields."""
    if draw(st.booleans()):
        request: dict[str, Any] = {"prompt": draw(_text)}
    else:
        request = {"input": draw(_text | st.lists(_message, min_size=1, max_size=4))}
    request.update(draw(st.fixed_dictionaries({}, optional=_OPTIONAL_VALID)))
    return request


# null means "not asked for" (an optional field left out), so it is never a wrong value by itself
_not_str: st.SearchStrategy[Any] = (
    st.booleans() | st.integers() | st.floats(allow_nan=False) | st.lists(_leaf, max_size=2) | st.just({})
)
_not_int = st.booleans() | st.floats(allow_nan=False) | st.text(max_size=5) | st.just([1])
_WRONG_VALUES: dict[str, st.SearchStrategy[Any]] = {
    "prompt": _not_str | _blank,
    "input": (
        st.none()
        | st.booleans()
        | st.integers()
        | st.just([])
        | st.just({})
        | _blank
        | st.lists(_not_str, min_size=1, max_size=2)
        | st.just([{"role": "robot", "content": "x"}])
        | st.just([{"role": "user", "content": " "}])
        | st.just([{"role": "user", "content": []}])
        | st.just([{"role": "user", "content": "x", "name": "n"}])
        | st.just([{"role": "user", "content": [{"type": "input_image", "image_url": "data:,"}]}])
        | st.just([{"role": "user", "content": [{"type": "input_text", "text": 1}]}])
        | st.just([{"type": "function_call_output", "role": "user", "content": "x"}])
    ),
    "instructions": _not_str | _blank,
    "model": _not_str | st.text(max_size=30).filter(lambda m: m != MODEL),
    "max_output_tokens": _not_int | st.integers(max_value=0) | st.integers(min_value=MAX_OUTPUT_TOKENS + 1),
    "temperature": st.text(max_size=3) | st.booleans() | st.floats(max_value=-1e-9) | st.floats(min_value=2.000001),
    "top_p": st.text(max_size=3) | st.booleans() | st.floats(max_value=-1e-9) | st.floats(min_value=1.000001),
    "text": (
        _not_str.filter(lambda v: v != {})
        | st.text(max_size=3)
        | st.just({"colour": 1})
        | st.just({"verbosity": "max"})
        | st.just({"format": {"type": "xml"}})
        | st.just({"format": "json"})
        | st.just({"format": {"type": "json_schema"}})
        | st.just({"format": {"type": "text", "name": "n"}})
        | st.just({"format": {"type": "json_schema", "name": "n", "schema": {}, "strict": "yes"}})
        | st.just({"format": {"type": "json_schema", "name": "not a name", "schema": {}}})
        | st.just({"format": {"type": "json_schema", "name": "n", "schema": {"description": "d" * 20_000}}})
    ),
    "metadata": (
        st.text(max_size=3)
        | st.just([])
        | st.integers()
        | st.dictionaries(st.text(max_size=8), st.text(max_size=4), min_size=17, max_size=20)
        | st.just({"k" * 65: "v"})
        | st.just({"k": "v" * 513})
        | st.dictionaries(st.text(max_size=4), _not_str, min_size=1, max_size=2)
    ),
    "reasoning": (
        st.text(max_size=3)
        | st.just([])
        | st.just({"effort": "extreme"})
        | st.just({"summary": 1})
        | st.just({"budget": 1})
    ),
    "store": st.text(max_size=3) | st.integers(),
    # a well-formed id is valid (an unknown one is then 404, as tests/test_e2e_stored.py checks)
    "previous_response_id": st.text(max_size=20).filter(lambda v: not re.fullmatch(r"[A-Za-z0-9_.:-]+", v))
    | _leaf.filter(lambda v: v is not None),
    # true is valid on the OpenAI-compatible routes (docs/streaming.md) and refused on /genai/chat, as
    # tests/test_e2e_streaming.py checks: any other value is wrong on every route
    "stream": st.integers() | st.text(max_size=3) | st.just([True]) | st.just({}),
    "tools": st.just([{"type": "web_search"}]),
    "background": st.text(max_size=3) | st.integers(),
}


@st.composite
def invalid_bodies(draw: st.DrawFn) -> bytes:
    """A valid request broken in exactly one way the contract refuses."""
    request = draw(valid_requests())
    how = draw(
        st.sampled_from(
            [
                "wrong_value",
                "unknown_field",
                "both",
                "neither",
                "huge_input",
                "huge_body",
                "too_deep",
                "very_deep",
                "duplicate",
                "constant",
                "big_number",
                "big_number_anywhere",
                "not_object",
                "bad_utf8",
            ]
        )
    )
    if how == "wrong_value":
        name = draw(st.sampled_from(sorted(_WRONG_VALUES)))
        request[name] = draw(_WRONG_VALUES[name])
        if name == "input":
            request.pop("prompt", None)
        if name == "prompt":
            request.pop("input", None)
    elif how == "unknown_field":
        request[draw(st.text(min_size=1, max_size=30).filter(lambda k: k not in ALLOWED_FIELDS))] = draw(json_values)
    elif how == "both":
        request.update(prompt="a", input="b")
    elif how == "neither":
        request.pop("prompt", None)
        request.pop("input", None)
    elif how == "huge_input":
        request.pop("input", None)
        request["prompt"] = draw(st.sampled_from("xé😀\u4f60")) * draw(
            st.integers(MAX_INPUT_CHARS + 1, 3 * MAX_INPUT_CHARS)
        )
    elif how == "huge_body":
        request["metadata"] = {"k": "v" * (MAX_BODY_BYTES + draw(st.integers(1, 4096)))}
    elif how == "too_deep":
        depth = draw(st.integers(31, 200))
        request["metadata"] = json.loads("[" * depth + "]" * depth)
    elif how == "very_deep":
        depth = draw(st.sampled_from([1000, 10_000, 100_000]))
        return json.dumps(request)[:-1].encode() + b', "metadata": ' + b"[" * depth + b"]" * depth + b"}"
    elif how == "duplicate":
        name = draw(st.sampled_from(sorted(request)))
        return (json.dumps(request)[:-1] + f", {json.dumps(name)}: {json.dumps(draw(json_values))}}}").encode()
    elif how == "constant":
        name = draw(st.sampled_from(["temperature", "top_p", "max_output_tokens", "prompt"]))
        request.pop("input", None)
        request.setdefault("prompt", "a")
        request[name] = "__CONSTANT__"
        constant = draw(st.sampled_from(["NaN", "Infinity", "-Infinity"]))
        return json.dumps(request).replace('"__CONSTANT__"', constant).encode()
    elif how == "big_number":
        name = draw(st.sampled_from(["temperature", "top_p", "max_output_tokens"]))
        request[name] = "__NUMBER__"
        numbers = ["1e999", "-1e999", "9" * 5000, "2049.0", "1e3", "-1e-300"]
        if name == "max_output_tokens":
            numbers += ["1" + "0" * 400, "-" + "9" * 4000]  # see the huge-integer test below for the others
        number = draw(st.sampled_from(numbers))
        return json.dumps(request).replace('"__NUMBER__"', number).encode()
    elif how == "big_number_anywhere":  # where no field check looks: only the parser can refuse it
        request["text"] = {"format": {"type": "json_schema", "name": "n", "schema": {"maximum": "__NUMBER__"}}}
        number = draw(st.sampled_from(["1e400", "-1e400", "1E+999", "2.5e308"]))
        return json.dumps(request).replace('"__NUMBER__"', number).encode()
    elif how == "not_object":
        return json.dumps([request] if draw(st.booleans()) else draw(_leaf)).encode()
    else:
        text = json.dumps(request, ensure_ascii=False).encode()
        cut = draw(st.integers(0, len(text)))
        return (
            text[:cut]
            + draw(st.sampled_from([b"\xff", b"\xc3", b"\xed\xa0\x80", b"\xf8\x88\x80\x80\x80"]))
            + text[cut:]
        )
    return json.dumps(request, ensure_ascii=draw(st.booleans())).encode()


# --- properties -------------------------------------------------------------------------------


@_FUZZ
@given(request=valid_requests(), path=st.sampled_from(ROUTES), ascii_only=st.booleans())
def test_given_any_valid_request_when_sent_then_it_is_answered_200_with_one_upstream_call(
    function: FunctionProcess,
    endpoint: LocalEndpoint,
    identity: LocalIdentity,
    request: dict[str, Any],
    path: str,
    ascii_only: bool,
) -> None:
    # given
    body = json.dumps(request, ensure_ascii=ascii_only).encode()
    # when / then
    assert _send(function, endpoint, identity, body, path) == 200


@_FUZZ
@given(body=invalid_bodies(), path=st.sampled_from(ROUTES))
def test_given_any_mutated_request_when_sent_then_it_gets_a_documented_4xx_and_never_reaches_oci(
    function: FunctionProcess, endpoint: LocalEndpoint, identity: LocalIdentity, body: bytes, path: str
) -> None:
    # when
    status = _send(function, endpoint, identity, body, path)
    # then
    assert status == (413 if len(body) > MAX_BODY_BYTES else 400)


@_FUZZ
@given(body=st.binary(max_size=512), path=st.sampled_from(ROUTES))
def test_given_arbitrary_bytes_when_sent_then_they_get_a_documented_answer(
    function: FunctionProcess, endpoint: LocalEndpoint, identity: LocalIdentity, body: bytes, path: str
) -> None:
    # when / then
    _send(function, endpoint, identity, body, path)


@_FUZZ
@given(value=json_values | st.dictionaries(st.sampled_from([*ALLOWED_FIELDS, "stream", "x"]), json_values, max_size=5))
def test_given_arbitrary_json_values_when_sent_then_they_get_a_documented_answer(
    function: FunctionProcess, endpoint: LocalEndpoint, identity: LocalIdentity, value: Any
) -> None:
    # when / then
    _send(function, endpoint, identity, json.dumps(value).encode())


@settings(_FUZZ, max_examples=50)
@given(
    method=st.sampled_from(["GET", "PUT", "DELETE", "PATCH", "OPTIONS", "HEAD", "get", "TRACE"]),
    body=st.binary(max_size=64),
)
def test_given_any_other_method_when_sent_then_it_gets_405_and_never_reaches_oci(
    function: FunctionProcess, endpoint: LocalEndpoint, identity: LocalIdentity, method: str, body: bytes
) -> None:
    # when / then
    assert _send(function, endpoint, identity, body, method=method) == 405


# --- unicode edge cases -----------------------------------------------------------------------

_SURROGATE_PLACES = {
    "prompt": lambda s: {"prompt": f"hi {s}"},
    "instructions": lambda s: {"prompt": "hi", "instructions": f"be {s}"},
    "input_content": lambda s: {"input": [{"role": "user", "content": s}]},
    "input_part": lambda s: {"input": [{"role": "user", "content": [{"type": "input_text", "text": s}]}]},
    "metadata_value": lambda s: {"prompt": "hi", "metadata": {"k": s}},
    "metadata_key": lambda s: {"prompt": "hi", "metadata": {s: "v"}},
    "schema_name": lambda s: {"prompt": "hi", "text": {"format": {"type": "json_schema", "name": s, "schema": {}}}},
}


@pytest.mark.parametrize("place", list(_SURROGATE_PLACES))
@pytest.mark.parametrize("escape", ["\\ud800", "\\udfff", "\\udc00\\ud800", "a\\ud83d"])
def test_given_a_lone_surrogate_when_sent_then_it_is_refused_with_400_not_500(
    function: FunctionProcess, endpoint: LocalEndpoint, identity: LocalIdentity, place: str, escape: str
) -> None:
    # given a JSON string escape that names half a UTF-16 pair: valid JSON, but no Unicode text
    body = json.dumps(_SURROGATE_PLACES[place]("@@")).replace("@@", escape).encode()
    # when / then the caller is told, and nothing is sent to OCI
    assert _send(function, endpoint, identity, body) == 400


@pytest.mark.parametrize("escape", ["\\ud800", "\\udfff"])
def test_given_a_lone_surrogate_in_a_refused_field_name_when_sent_then_it_is_a_400(
    function: FunctionProcess, endpoint: LocalEndpoint, identity: LocalIdentity, escape: str
) -> None:
    # given
    body = f'{{"prompt": "hi", "{escape}": 1}}'.encode()
    # when / then
    assert _send(function, endpoint, identity, body) == 400


@pytest.mark.parametrize("ascii_only", [True, False])
@pytest.mark.parametrize(
    "text",
    ["\U0001f600", "\u0000 nul", "\u200b", "\ufeffbom", "e\u0301", "\U0010ffff", "\u202eevil", "a\u2028b\u2029"],
    ids=["astral-pair", "nul", "zero-width-space", "bom", "combining", "max-code-point", "bidi", "line-separators"],
)
def test_given_unusual_but_valid_unicode_prompts_when_sent_then_they_are_answered_200(
    function: FunctionProcess, endpoint: LocalEndpoint, identity: LocalIdentity, text: str, ascii_only: bool
) -> None:
    # given
    # ensure_ascii writes the astral character as an escaped surrogate pair, which is valid
    body = json.dumps({"prompt": text}, ensure_ascii=ascii_only).encode()
    # when / then
    assert _send(function, endpoint, identity, body) == 200
    assert json.loads(endpoint.requests[0].body.decode("utf-8"))["input"] == text


@pytest.mark.parametrize("name", ["temperature", "top_p"])
@pytest.mark.parametrize("number", ["1" + "0" * 400, "-" + "9" * 4000])
def test_given_a_huge_integer_sampling_parameter_when_sent_then_it_is_refused_with_400(
    function: FunctionProcess, endpoint: LocalEndpoint, identity: LocalIdentity, name: str, number: str
) -> None:
    # given
    body = f'{{"prompt": "hi", "{name}": {number}}}'.encode()
    # when / then
    assert _send(function, endpoint, identity, body) == 400
