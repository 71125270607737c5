"""genai_handler.contract: the declaration, and the one walk over every text the model reads.

The walk is proven against requests generated from the declaration itself: a marker is planted in
every string a request can hold, and each marker that reaches the model must come out of the walk.
A field added to the contract is covered without anyone writing a test for it.
"""

from __future__ import annotations

import itertools
import json
from typing import Annotated, Any, Literal, Union, get_args, get_origin

import pytest
from pydantic import BaseModel, ValidationError

from genai_handler import contract
from genai_handler.contract import NOT_TEXT, READ, Kind, Request, leaves, locate, models, texts, with_texts
from genai_handler.request import parse
from genai_handler.settings import DEFAULT_MODEL, HOSTED_TOOLS, MAX_INVOKE_PAYLOAD_BYTES, Settings

_counter = itertools.count()


def _marker() -> str:
    return f"MK{next(_counter):04d}X"


class _Planted:
    """Markers by the Kind of the field they were planted in."""

    def __init__(self) -> None:
        self.by_kind: dict[Kind | None, set[str]] = {}

    def add(self, kind: Kind | None, marker: str) -> str:
        self.by_kind.setdefault(kind, set()).add(marker)
        return marker


def _schema(planted: _Planted) -> dict[str, Any]:
    """A JSON schema with a marker in every place one can hide: keys, descriptions, titles, enums."""
    key, text = (planted.add(Kind.JSON, _marker()) for _ in range(2))
    return {
        "type": "object",
        "title": planted.add(Kind.JSON, _marker()),
        "description": text,
        "properties": {key: {"type": "string", "enum": [planted.add(Kind.JSON, _marker())]}},
    }


def _value(annotation: Any, metadata: tuple[Any, ...], planted: _Planted, plain: bool) -> Any:
    """A value of the declared type with a marker in every string; `plain` picks the string member
    of a union where there is one (the other requests pick lists and the richest model)."""
    annotation, metadata = contract._unwrap(annotation, metadata)
    kind = contract._kind(metadata)
    origin = get_origin(annotation)
    if origin in (Union, __import__("types").UnionType):
        members = [contract._unwrap(m, ())[0] for m in get_args(annotation)]
        chosen = next((m for m in get_args(annotation) if plain and contract._unwrap(m, ())[0] is str), None)
        if chosen is None:
            lists = [m for m, bare in zip(get_args(annotation), members, strict=True) if get_origin(bare) is list]
            chosen = lists[0] if lists and not plain else max(get_args(annotation), key=_richness)
        return _value(chosen, metadata, planted, plain)
    if origin is Literal:
        return get_args(annotation)[0]
    if origin is list:
        item = get_args(annotation)[0]
        constraints = [c for m in metadata for c in getattr(m, "metadata", [m])]
        if any(getattr(c, "max_length", None) == 0 for c in constraints):
            return []
        bare, _ = contract._unwrap(item, ())
        if contract._is_union(bare):  # one element per member: every item type in one request
            return [_value(member, (), planted, plain) for member in get_args(bare)]
        return [_value(item, (), planted, plain)]
    if origin is dict or annotation is dict:
        if kind is Kind.JSON:
            return _schema(planted)
        return {planted.add(kind, _marker()): planted.add(kind, _marker())}
    if contract._is_model(annotation):
        return _model(annotation, planted, plain)
    if annotation is str and kind is Kind.IMAGE:  # an image is no text: a valid data URL, planted as an image
        return planted.add(kind, f"data:image/png;base64,{_marker()}")
    if annotation is str:
        return planted.add(kind, _marker())
    if annotation is bool:
        return True
    if annotation in (int, float):
        return 1
    raise AssertionError(f"no sample for {annotation!r}")


def _richness(annotation: Any) -> int:
    bare, _ = contract._unwrap(annotation, ())
    return len(bare.model_fields) if contract._is_model(bare) else 0


def _model(model: type[BaseModel], planted: _Planted, plain: bool, skip: tuple[str, ...] = ()) -> dict[str, Any]:
    return {
        field.alias or name: _value(field.annotation, tuple(field.metadata), planted, plain)
        for name, field in model.model_fields.items()
        if name not in skip
    }


def _requests() -> list[tuple[dict[str, Any], _Planted]]:
    """Requests from the declaration: one with `prompt`, strings where a union allows one; one with
    `input`, lists and the richest objects everywhere."""
    made = []
    # rules across fields: one input, one kind of history, background or stream
    for plain, skip in (
        (True, ("input", "conversation", "background")),
        (False, ("prompt", "conversation", "background")),
    ):
        planted = _Planted()
        body = _model(Request, planted, plain, skip)
        body["tool_choice"]["name"] = body["tools"][0]["name"]  # a rule across fields: one of the tools
        [mcp] = [tool for tool in body["tools"] if tool["type"] == "mcp"]
        mcp["server_url"] = f"https://{mcp['server_url']}.example"  # an id by pattern, as an image is
        made.append((body, planted))
    return made


def _settings(body: dict[str, Any]) -> Settings:
    """Settings that allow whatever the generated request asks for (its model is a marker)."""
    return Settings(
        project_ocid="ocid1.generativeaiproject.oc1.us-chicago-1.aaaa",
        region="us-chicago-1",
        allowed_models=(DEFAULT_MODEL, body["model"]),
        allow_stored_responses=True,
        max_output_tokens=1,
        max_input_chars=MAX_INVOKE_PAYLOAD_BYTES,
        allowed_hosted_tools=HOSTED_TOOLS,
        mcp_allowed_urls=tuple(tool["server_url"] for tool in body["tools"] if tool["type"] == "mcp"),
    )


@pytest.mark.parametrize("variant", ["prompt", "input"])
def test_given_a_marker_in_every_string_when_walked_then_every_marker_the_model_receives_comes_out(
    variant: str,
) -> None:
    body, planted = _requests()[0 if variant == "prompt" else 1]
    # given a request generated from the declaration, valid by the contract
    request = parse(json.dumps(body).encode(), _settings(body))
    # when the walk runs, and the request is turned into what the model receives
    walked = " ".join(text.text for text in texts(request))
    sent = json.dumps(request.arguments())
    # then every marker planted in text the model reads comes out of the walk
    for kind in (*READ, None):
        for marker in planted.by_kind.get(kind, ()):
            assert marker in walked, f"{marker} ({kind}) reaches the model but the walk misses it"
    # and every marker the model receives is walked, or sits in a field declared as not read as text
    unread = set().union(*(planted.by_kind.get(kind, set()) for kind in NOT_TEXT))
    for marker in {m for markers in planted.by_kind.values() for m in markers}:
        if marker in sent and marker not in unread:
            assert marker in walked, f"{marker} is sent to the model but the walk misses it"


def test_given_the_contract_when_its_leaves_are_listed_then_every_string_and_object_has_a_declared_kind() -> None:
    # a field the walk would have to guess about fails here, before it ships
    # when
    unclassified = [
        f"{model.__name__}.{field.alias or name}"
        for model in models()
        for name, field in model.model_fields.items()
        for leaf, kind in leaves(field.annotation, tuple(field.metadata))
        if kind is None and (leaf in (str, Any) or get_origin(leaf) is dict or leaf is dict)
    ]
    # then
    assert unclassified == []


def test_given_an_undeclared_string_field_when_walked_then_it_is_read_as_prose() -> None:
    # given a contract extended with a field nobody classified
    class Extended(Request):
        note: str | None = None

    # when
    request = Extended.model_validate({"prompt": "hi", "note": "a note"})
    # then the walk screens it rather than skipping it
    assert [(t.at, t.kind) for t in texts(request)] == [("prompt", Kind.PROSE), ("note", Kind.PROSE)]


def test_given_a_request_when_walked_then_texts_come_in_request_order_with_their_positions() -> None:
    # given
    request = Request.model_validate(
        {
            "input": [
                {"role": "system", "content": "be brief"},
                {
                    "role": "user",
                    "content": [{"type": "input_text", "text": "a"}, {"type": "output_text", "text": "b"}],
                },
            ],
            "instructions": "in French",
            "text": {
                "format": {"type": "json_schema", "name": "out", "description": "d", "schema": {"type": "object"}}
            },
            "metadata": {"k": "v"},
            "model": "m",
            "previous_response_id": "resp_1",
        }
    )
    # when / then
    assert [(t.at, t.text, t.kind) for t in texts(request)] == [
        ("input[0].content", "be brief", Kind.PROSE),
        ("input[1].content[0].text", "a", Kind.PROSE),
        ("input[1].content[1].text", "b", Kind.PROSE),
        ("instructions", "in French", Kind.PROSE),
        ("text.format.name", "out", Kind.NAME),
        ("text.format.schema", '{"type": "object"}', Kind.JSON),
        ("text.format.description", "d", Kind.PROSE),
    ]


def test_given_new_texts_when_written_back_then_each_is_in_place_and_the_original_is_left_alone() -> None:
    # given
    request = Request.model_validate(
        {
            "prompt": "mail a@b.co",
            "text": {"format": {"type": "json_schema", "name": "out", "schema": {"description": "for a@b.co"}}},
        }
    )
    # when
    redacted = with_texts(request, ["mail [EMAIL]", "out", '{"description": "for [EMAIL]"}'])
    # then
    assert redacted.arguments()["input"] == "mail [EMAIL]"
    assert redacted.arguments()["text"]["format"]["schema"] == {"description": "for [EMAIL]"}
    assert request.arguments()["input"] == "mail a@b.co"


@pytest.mark.parametrize(
    ("broken", "reason"),
    [
        ('{"description": "x"', "Expecting ',' delimiter"),
        ('["x"]', "no longer has the same shape"),
        ('{"other": "x"}', "no longer has the same shape"),
        ('{"description": "a", "description": "b"}', "a key repeats"),
    ],
)
def test_given_a_json_text_that_lost_its_shape_when_written_back_then_it_is_refused(broken: str, reason: str) -> None:
    # given
    request = Request.model_validate(
        {"prompt": "p", "text": {"format": {"type": "json_schema", "name": "out", "schema": {"description": "x"}}}}
    )
    # when / then
    with pytest.raises(ValueError, match=reason):
        with_texts(request, ["p", "out", broken])


@pytest.mark.parametrize(
    ("loc", "expected"),
    [
        (("input", "list", 0, "content", "list", 1, "input_text", "text"), "input[0].content[1].text"),
        (("input", 0, "content", 1, "text"), "input[0].content[1].text"),  # raw JSON keys and indices
        (("metadata", "card 4111 1111 1111 1111"), "metadata"),
        (("text", "format", "schema", "properties", "secret@example.com"), "text.format.schema"),
        (("unknown field from the caller", "x"), ""),
    ],
)
def test_given_a_location_when_named_then_it_has_fields_and_indices_never_what_the_caller_named(
    loc: tuple, expected: str
) -> None:
    # when / then
    assert locate(loc)[0] == expected


def test_given_loosely_typed_values_when_validated_then_the_contract_is_strict_about_types() -> None:
    # given JSON true is not 1, 1.5 is not a whole number, "1" is not a number
    for body in (
        {"prompt": "a", "max_output_tokens": True},
        {"prompt": "a", "max_output_tokens": 1.5},
        {"prompt": "a", "temperature": "1"},
        {"prompt": 5},
    ):
        # when / then
        with pytest.raises(ValidationError):
            Request.model_validate(body)


def test_given_the_contract_when_models_are_listed_then_every_object_is_there_root_first() -> None:
    # when
    found = models()
    # then
    assert found[0] is Request
    assert {m.__name__ for m in found} >= {"Message", "InputText", "OutputText", "TextConfig", "JsonSchemaFormat"}


def test_given_the_declaration_when_read_then_every_field_has_a_doc() -> None:
    # when
    missing = [f"{m.__name__}.{n}" for m in models() for n, f in m.model_fields.items() if not f.description]
    # then
    assert missing == []


def test_given_annotated_metadata_when_read_then_kinds_are_the_only_metadata_the_walk_reads() -> None:
    # the Kind is read from Annotated metadata wherever it sits: on the field or inside a union member
    # given
    prose = Annotated[str, Kind.PROSE]
    # when / then
    assert contract._kind(contract._unwrap(prose | None, ())[1]) is Kind.PROSE
