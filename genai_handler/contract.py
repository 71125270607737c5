"""The request contract, declared once as types, and the one walk over every text the model reads.

Each field says what it is and, through its `Kind`, whether the model reads it. Validation (request.py),
the input cap, guardrails, prompt logging, the local endpoint and docs/contracts.md's field tables all
derive from these classes, so a field added here is screened, capped and logged like every other one.
"""

from __future__ import annotations

import enum
import json
import types
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Annotated, Any, Literal, TypeVar, Union, get_args, get_origin

from pydantic import BaseModel, ConfigDict, Discriminator, Field, Tag, field_validator, model_validator
from pydantic.config import JsonDict
from pydantic.fields import FieldInfo
from pydantic_core import PydanticCustomError, PydanticUndefined

MAX_SCHEMA_CHARS = 16_384  # a JSON schema the model reads, as JSON text
MAX_ID_CHARS = 256
MAX_TOOLS = 32  # function tools in one request; each schema counts in the input cap too
MAX_ITEMS = 256  # input items in one request (messages, function calls and their outputs)
MAX_SEALED_CHARS = 1_048_576  # one item's encrypted reasoning; the payload limit caps the whole body
_ID = r"^[A-Za-z0-9_.:-]+$"
_FORMAT_NAME = r"^[A-Za-z0-9_-]{1,64}$"  # openai SDK: ResponseFormatTextJSONSchemaConfigParam.name


class Kind(enum.Enum):
    """What a string in the request is to the model, and so what the function does with it."""

    PROSE = "prose"  # read by the model: screened, redacted, counted, logged (GENAI_LOG_PROMPTS)
    NAME = "name"  # read by the model, form fixed: screened, counted, logged; PII here cannot be redacted
    JSON = "json"  # free-form JSON the model reads (a schema): one text, its JSON; redacted, then re-read
    UNREAD = "unread"  # caller text the model never reads (metadata): capped, never screened or logged
    ID = "id"  # an identifier, checked by pattern or allow-list: not text
    IMAGE = "image"  # an image the model sees: guardrails read text only, so never screened; counted, not logged
    SEALED = "sealed"  # OCI's own ciphertext (encrypted reasoning): read by the model once OCI opens it; never logged


READ = (Kind.PROSE, Kind.NAME, Kind.JSON)
NOT_TEXT = (Kind.ID, Kind.UNREAD, Kind.IMAGE, Kind.SEALED)  # what the walk passes by
M = TypeVar("M", bound=BaseModel)


def rule(doc: str, must: str | None = None, default: Any = None, **constraints: Any) -> Any:
    """An optional field's one-line doc (the docs table) and what a value must be (its error
    message; `{name}` is filled from the operator's limits, see request.py)."""
    extra: JsonDict | None = {"must": must} if must else None
    return Field(default, description=doc, json_schema_extra=extra, **constraints)


def required(doc: str, must: str | None = None, **constraints: Any) -> Any:
    """A field every value of its type must have."""
    return rule(doc, must, default=PydanticUndefined, **constraints)


def contract_error(message: str) -> PydanticCustomError:
    """A rule across fields, with its message for the caller (never holding the caller's text)."""
    return PydanticCustomError("contract", message)


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, allow_inf_nan=False, populate_by_name=False)


Prose = Annotated[str, Kind.PROSE, Field(min_length=1, pattern=r"\S")]
JsonObject = Annotated[dict[str, Any], Kind.JSON]


class InputText(_Strict):
    """A text part, as callers send it."""

    type: Literal["input_text"] = required("input_text")
    text: Prose = required("the text", must="a non-empty string")


Empty = Annotated[list[Any], Kind.JSON, Field(max_length=0)]  # an off-only list; if it held anything, JSON


class OutputText(_Strict):
    """A text part of an earlier answer, as callers replay it (openai SDK: ResponseOutputTextParam)."""

    type: Literal["output_text"] = required("output_text")
    text: Prose = required("the text", must="a non-empty string")
    annotations: Empty | None = rule("as the answer had them", must="empty: no tool this function offers cites sources")
    logprobs: Empty | None = rule("as the answer had them", must="empty: log probabilities are not replayed")


class InputImage(_Strict):
    """An image, by https URL or base64 data URL (openai SDK: ResponseInputImageParam, without file_id)."""

    type: Literal["input_image"] = required("input_image")
    image_url: Annotated[str, Kind.IMAGE] = required(
        "https://... or data:image/(png|jpeg|gif|webp);base64,...",
        must="an https URL or a base64 data URL",
        pattern=r"^(https://[!-~]{1,2048}|data:image/(png|jpeg|gif|webp);base64,[A-Za-z0-9+/]+={0,2})$",
    )
    detail: Literal["low", "high", "auto", "original"] | None = rule("how closely the model looks")


Part = Annotated[InputText | OutputText | InputImage, Field(discriminator="type")]
# Types the openai SDK sends that no union here takes, and why (the refusal's message).
REFUSED_TYPES = {
    # docs.oracle.com/iaas/Content/generative-ai/responses-api.htm: "It supports text and image inputs"
    "input_file": "input_file is not offered: OCI's Responses API takes text and image inputs",
}


def _text_or_list(value: Any) -> str | None:
    return "text" if isinstance(value, str) else "list" if isinstance(value, list) else None


class Message(_Strict):
    """One message of a conversation."""

    type: Literal["message"] = rule("message (may be left out)", default="message")
    id: Annotated[str, Kind.ID] | None = rule(
        "an earlier answer's message id, as replayed", must="a message id", max_length=MAX_ID_CHARS, pattern=_ID
    )
    status: Literal["in_progress", "completed", "incomplete"] | None = rule(
        "an earlier answer's status, as replayed", must="in_progress, completed or incomplete"
    )
    role: Literal["user", "assistant", "system", "developer"] = required("who said it")
    content: Annotated[
        Annotated[Prose, Tag("text")] | Annotated[list[Part], Tag("list"), Field(min_length=1)],
        Discriminator(_text_or_list),
    ] = required(
        "a string, or a non-empty list of text and image parts",
        must="a non-empty string or a non-empty list of text and image parts",
    )


_CallId = Annotated[str, Kind.ID, Field(min_length=1, max_length=MAX_ID_CHARS, pattern=_ID)]
_Status = Literal["in_progress", "completed", "incomplete"]
_FunctionName = Annotated[str, Kind.NAME, Field(pattern=_FORMAT_NAME)]
_FUNCTION_NAME_RULE = "1 to 64 letters, digits, _ or -"


class FunctionCall(_Strict):
    """A function call the model made, replayed (openai SDK: ResponseFunctionToolCallParam)."""

    type: Literal["function_call"] = required("function_call")
    call_id: _CallId = required("the call's id, which its output names", must="a call id")
    name: _FunctionName = required("the function called", must=_FUNCTION_NAME_RULE)
    arguments: Annotated[str, Kind.PROSE] = required("its arguments, as JSON text", must="a string")
    id: _CallId | None = rule("the item's id, as replayed", must="an item id")
    status: _Status | None = rule("as replayed", must="in_progress, completed or incomplete")


class FunctionCallOutput(_Strict):
    """What the caller's function returned: text the model reads, as any prompt (openai SDK:
    FunctionCallOutput; text output only)."""

    type: Literal["function_call_output"] = required("function_call_output")
    call_id: _CallId = required("the call it answers", must="a call id")
    output: Prose = required("the function's result, as text", must="a non-empty string")
    id: _CallId | None = rule("the item's id, as replayed", must="an item id")
    status: _Status | None = rule("as replayed", must="in_progress, completed or incomplete")


class SummaryText(_Strict):
    """A summary of the model's reasoning, replayed: text the model reads, as any prompt."""

    type: Literal["summary_text"] = required("summary_text")
    text: Prose = required("the summary", must="a non-empty string")


class ReasoningText(_Strict):
    """The model's reasoning, replayed as text (open-weight models return it)."""

    type: Literal["reasoning_text"] = required("reasoning_text")
    text: Prose = required("the reasoning", must="a non-empty string")


class Reasoning(_Strict):
    """A reasoning model's reasoning, replayed (openai SDK: ResponseReasoningItemParam)."""

    type: Literal["reasoning"] = required("reasoning")
    id: _CallId = required("the item's id, as replayed", must="a reasoning item id")
    summary: Annotated[list[SummaryText], Field(max_length=MAX_ITEMS)] = required(
        "its summary parts, as replayed (often empty)", must=f"a list of at most {MAX_ITEMS} summary_text parts"
    )
    content: Annotated[list[ReasoningText], Field(max_length=MAX_ITEMS)] | None = rule(
        "its reasoning text, as replayed", must=f"a list of at most {MAX_ITEMS} reasoning_text parts"
    )
    encrypted_content: Annotated[str, Kind.SEALED] | None = rule(
        "OCI's sealed reasoning (include: reasoning.encrypted_content), as replayed",
        must="OCI's sealed reasoning, as it was answered",
        max_length=MAX_SEALED_CHARS,
        pattern=r"^[A-Za-z0-9+/=_-]+$",
    )
    status: _Status | None = rule("as replayed", must="in_progress, completed or incomplete")


def _item_type(value: Any) -> str | None:
    found = value.get("type", "message") if isinstance(value, dict) else getattr(value, "type", None)
    return found if isinstance(found, str) else None


Item = Annotated[
    Annotated[Message, Tag("message")]
    | Annotated[FunctionCall, Tag("function_call")]
    | Annotated[FunctionCallOutput, Tag("function_call_output")]
    | Annotated[Reasoning, Tag("reasoning")],
    Discriminator(_item_type),
]


class FunctionTool(_Strict):
    """A function the caller runs for the model (openai SDK: FunctionToolParam)."""

    type: Literal["function"] = required("function")
    name: _FunctionName = required("the function's name", must=_FUNCTION_NAME_RULE)
    description: Prose | None = rule("what it does, for the model", must="a non-empty string")
    parameters: JsonObject | None = rule(
        f"a JSON schema of its arguments, at most {MAX_SCHEMA_CHARS} characters as JSON", must="a JSON schema object"
    )
    strict: bool | None = rule("strict schema adherence", must="true or false")

    @field_validator("parameters")
    @classmethod
    def _schema_size(cls, schema: dict[str, Any] | None) -> dict[str, Any] | None:
        return _capped_schema(schema)


class FileSearchTool(_Strict):
    """Search the project's vector stores (OCI "tool support"; openai SDK: FileSearchToolParam)."""

    type: Literal["file_search"] = required("file_search")
    vector_store_ids: Annotated[list[_CallId], Field(min_length=1, max_length=8)] = required(
        "the vector stores to search", must="a list of 1 to 8 vector store ids"
    )
    max_num_results: int | None = rule("1 to 50", must="a whole number from 1 to 50", ge=1, le=50)


class AutoContainer(_Strict):
    type: Literal["auto"] = required("auto")


class CodeInterpreterTool(_Strict):
    """Run Python in an OCI-managed sandbox (openai SDK: tool_param.CodeInterpreter), in a fresh container."""

    type: Literal["code_interpreter"] = required("code_interpreter")
    container: AutoContainer = required(
        'a new container: {"type": "auto"}',
        must="an object of type auto: a named container is shared by every caller",
    )


class McpTool(_Strict):
    """Tools on a remote MCP server that OCI calls (OCI "MCP Tools": OpenAI's format, Streamable HTTP)."""

    type: Literal["mcp"] = required("mcp")
    server_label: _FunctionName = required("a label for the server", must=_FUNCTION_NAME_RULE)
    server_url: Annotated[str, Kind.ID] = required(
        "one of GENAI_MCP_ALLOWED_URLS", must="an https URL", pattern=r"^https://[!-~]{1,2048}$"
    )
    server_description: Prose | None = rule("what the server offers, for the model", must="a non-empty string")
    allowed_tools: Annotated[list[_FunctionName], Field(max_length=MAX_TOOLS)] | None = rule(
        "the server's tools the model may call", must=f"a list of at most {MAX_TOOLS} tool names"
    )
    require_approval: Literal["never"] | None = rule("never", must="never: approvals are not relayed by this function")
    headers: Annotated[dict[str, str], Kind.UNREAD, Field(max_length=16)] | None = rule(
        "sent to the MCP server by OCI (e.g. its Authorization); never read by the model nor logged",
        must="an object of at most 16 string pairs",
    )


def _tool_type(value: Any) -> str | None:
    found = value.get("type") if isinstance(value, dict) else getattr(value, "type", None)
    return found if isinstance(found, str) else None


Tool = Annotated[
    Annotated[FunctionTool, Tag("function")]
    | Annotated[FileSearchTool, Tag("file_search")]
    | Annotated[CodeInterpreterTool, Tag("code_interpreter")]
    | Annotated[McpTool, Tag("mcp")],
    Discriminator(_tool_type),
]


class ToolChoiceFunction(_Strict):
    """Call this function (openai SDK: ToolChoiceFunctionParam)."""

    type: Literal["function"] = required("function")
    name: Annotated[str, Kind.ID] = required("one of the tools' names", must="one of the tools' names")


class JsonSchemaFormat(_Strict):
    """Structured output: the answer is JSON that conforms to `schema`."""

    type: Literal["json_schema"] = required("json_schema")
    name: Annotated[str, Kind.NAME] = required(
        "the format's name", must="1 to 64 letters, digits, _ or -", pattern=_FORMAT_NAME
    )
    schema_: JsonObject = required(
        f"a JSON schema, at most {MAX_SCHEMA_CHARS} characters as JSON", must="a JSON schema object", alias="schema"
    )
    description: Prose | None = rule("what the format is for", must="a non-empty string")
    strict: bool | None = rule("strict schema adherence", must="true or false")

    @field_validator("schema_")
    @classmethod
    def _schema_size(cls, schema: dict[str, Any]) -> dict[str, Any]:
        return _capped_schema(schema)


S = TypeVar("S", bound=dict[str, Any] | None)


def _capped_schema(schema: S) -> S:
    if schema is not None and len(_json_text(schema)) > MAX_SCHEMA_CHARS:
        raise contract_error(f"is over {MAX_SCHEMA_CHARS} characters as JSON")
    return schema


class PlainFormat(_Strict):
    """Free text, or any JSON object."""

    type: Literal["text", "json_object"] = required("text or json_object")


Format = Annotated[PlainFormat | JsonSchemaFormat, Field(discriminator="type")]


class TextConfig(_Strict):
    """How the answer's text is shaped."""

    format: Format | None = rule("text, json_object or json_schema")
    verbosity: Literal["low", "medium", "high"] | None = rule("how long the answer is")


class ReasoningConfig(_Strict):
    """Reasoning models only."""

    effort: Literal["none", "minimal", "low", "medium", "high", "xhigh"] | None = rule("how hard to think")
    summary: Literal["auto", "concise", "detailed"] | None = rule("a summary of the reasoning")


# Of the openai SDK's ResponseIncludable, the values that need no tool and no image.
Includable = Literal["reasoning.encrypted_content", "message.output_text.logprobs"]
_INCLUDABLE = ", ".join(get_args(Includable))
CallerLabel = Annotated[str, Kind.ID, Field(pattern=r"^[!-~]{1,128}$")]
_LABEL_RULE = "1 to 128 printable ASCII characters"

MAX_METADATA = 15  # OCI keeps 16 pairs; the 16th is the owner's (stored.py)
Metadata = Annotated[
    dict[Annotated[str, Field(max_length=64)], Annotated[str, Field(max_length=512)]],
    Kind.UNREAD,
    Field(max_length=MAX_METADATA),
]
_METADATA_RULE = (
    f"an object of at most {MAX_METADATA} string pairs, keys of at most 64 characters and values of at most 512"
)
StoredId = Annotated[str, Kind.ID, Field(min_length=1, max_length=MAX_ID_CHARS, pattern=_ID)]


class ConversationRef(_Strict):
    """A conversation named as an object (openai SDK: ResponseConversationParam)."""

    id: StoredId = required("the conversation's id", must="a conversation id")


class Request(_Strict):
    """What a caller sends, on both routes."""

    prompt: Prose | None = rule("the prompt (or `input`)", must="a non-empty string")
    input: (
        Annotated[
            Annotated[Prose, Tag("text")]
            | Annotated[list[Item], Tag("list"), Field(min_length=1, max_length=MAX_ITEMS)],
            Discriminator(_text_or_list),
        ]
        | None
    ) = rule(
        f"Responses-style: a string or a list of 1 to {MAX_ITEMS} items: messages, function calls, their"
        " outputs and reasoning (or `prompt`)",
        must=f"a non-empty string or a list of 1 to {MAX_ITEMS} items",
    )
    instructions: Prose | None = rule("a system prompt", must="a non-empty string")
    model: Annotated[str, Kind.ID] | None = rule(
        "a model in GENAI_ALLOWED_MODELS; default GENAI_MODEL", must="one of: {allowed_models}"
    )
    max_output_tokens: int | None = rule(
        "at most GENAI_MAX_OUTPUT_TOKENS, the default", must="a whole number from 1 to {max_output_tokens}", ge=1
    )
    temperature: float | None = rule("0 to 2", must="a number from 0 to 2", ge=0, le=2)
    top_p: float | None = rule("0 to 1", must="a number from 0 to 1", ge=0, le=1)
    text: TextConfig | None = rule("the answer's format and verbosity", must="an object with format and/or verbosity")
    metadata: Metadata | None = rule(
        "stored with the response, never read by the model nor logged", must=_METADATA_RULE
    )
    reasoning: ReasoningConfig | None = rule("effort and summary", must="an object with effort and/or summary")
    store: bool | None = rule(
        "keep the response for its caller; default true (GENAI_ALLOW_STORED_RESPONSES)", must="true or false"
    )
    previous_response_id: StoredId | None = rule(
        "continue the caller's own stored response (GENAI_ALLOW_STORED_RESPONSES)", must="a response id"
    )
    conversation: StoredId | ConversationRef | None = rule(
        "continue the caller's own conversation: its id or {id} (GENAI_ALLOW_STORED_RESPONSES)",
        must="a conversation id, or an object with its id",
    )
    stream: bool | None = rule(
        "true: OCI's events, all sent together at the end as one text/event-stream body; on the OpenAI-compatible"
        " route only (docs/streaming.md)",
        must="true or false",
    )
    tools: Annotated[list[Tool], Field(max_length=MAX_TOOLS)] | None = rule(
        f"at most {MAX_TOOLS} tools: functions, and the hosted tools in GENAI_ALLOWED_HOSTED_TOOLS",
        must=f"a list of at most {MAX_TOOLS} tools",
    )
    background: bool | None = rule(
        "answer at once, queued; poll GET /v1/responses/{id} (stored responses only)", must="true or false"
    )
    # Sent by OpenAI SDKs and agent libraries on every call, mostly at their off values.
    include: list[Includable] | None = rule("extra parts of the answer", must=f"a list of: {_INCLUDABLE}")
    tool_choice: Literal["auto", "none", "required"] | ToolChoiceFunction | None = rule(
        "auto, none, required or one function; sent only with tools",
        must="auto, none, required or an object naming one of the tools",
    )
    parallel_tool_calls: bool | None = rule("sent only with tools", must="true or false")
    truncation: Literal["auto", "disabled"] | None = rule("accepted, not sent", must="auto or disabled")
    service_tier: Literal["auto", "default"] | None = rule(
        "accepted, not sent", must="auto or default: other tiers are not offered by this function"
    )
    user: CallerLabel | None = rule("accepted, not sent: the gateway names the caller", must=_LABEL_RULE)
    safety_identifier: CallerLabel | None = rule("accepted, not sent: the gateway names the caller", must=_LABEL_RULE)
    prompt_cache_key: CallerLabel | None = rule("accepted, not sent", must=_LABEL_RULE)

    @model_validator(mode="after")
    def _one_input(self) -> Request:
        if self.prompt is not None and self.input is not None:
            raise contract_error("send either prompt or input, not both")
        if self.prompt is None and self.input is None:
            raise contract_error("prompt is required (or input, Responses-style)")
        return self

    @model_validator(mode="after")
    def _choice_among_tools(self) -> Request:
        names = [tool.name for tool in self.tools or () if isinstance(tool, FunctionTool)]
        if len(set(names)) != len(names):
            raise contract_error("tools must name each function once")
        if isinstance(self.tool_choice, ToolChoiceFunction) and self.tool_choice.name not in names:
            raise contract_error("tool_choice must name one of the tools sent")
        if self.tool_choice == "required" and not names:
            raise contract_error("tool_choice must not be required without tools")
        return self

    @model_validator(mode="after")
    def _one_history(self) -> Request:
        if self.previous_response_id is not None and self.conversation is not None:
            raise contract_error("send either previous_response_id or conversation, not both")
        if self.background and self.stream:
            raise contract_error("send either background or stream, not both")
        return self

    def arguments(self) -> dict[str, Any]:
        """The keyword arguments for `responses.create`: what was asked for, `prompt` as `input`.
        A field at its off value (false, empty, null) was not asked for and is not sent."""
        arguments = self.model_dump(by_alias=True, exclude_none=True, exclude_unset=True, exclude=_NOT_SENT)
        for name in ("include", "background"):
            if name in arguments and not arguments[name]:
                del arguments[name]
        if not arguments.get("tools"):
            for name in ("tools", "tool_choice", "parallel_tool_calls"):
                arguments.pop(name, None)
        if "prompt" in arguments:
            arguments["input"] = arguments.pop("prompt")
        return arguments


MAX_CONVERSATION_ITEMS = 20  # openai SDK: conversation_create_params / item_create_params ("up to 20 items at a time")


class ConversationCreate(_Strict):
    """POST /v1/conversations (openai SDK: ConversationCreateParams): its items are text the model reads later."""

    items: Annotated[list[Item], Field(max_length=MAX_CONVERSATION_ITEMS)] | None = rule(
        f"up to {MAX_CONVERSATION_ITEMS} items to start with", must=f"a list of at most {MAX_CONVERSATION_ITEMS} items"
    )
    metadata: Metadata | None = rule("stored with the conversation, never read by the model", must=_METADATA_RULE)


class ConversationUpdate(_Strict):
    """POST /v1/conversations/{id} (openai SDK: ConversationUpdateParams)."""

    metadata: Metadata = required("the conversation's new metadata", must=_METADATA_RULE)


class ConversationItems(_Strict):
    """POST /v1/conversations/{id}/items (openai SDK: ItemCreateParams)."""

    items: Annotated[list[Item], Field(min_length=1, max_length=MAX_CONVERSATION_ITEMS)] = required(
        f"1 to {MAX_CONVERSATION_ITEMS} items to add", must=f"a list of 1 to {MAX_CONVERSATION_ITEMS} items"
    )


# Accepted so that real clients work, never sent: off-only switches, and what OCI's Responses API is not
# shown to serve (docs/contracts.md). `stream` is the call's to set (upstream.stream_response), not the arguments'.
_NOT_SENT = {"stream", "truncation", "service_tier", "user", "safety_identifier", "prompt_cache_key"}


@dataclass(frozen=True)
class Text:
    """One text the model reads: where it is in the request, and what it says."""

    at: str
    text: str
    kind: Kind


def texts(request: BaseModel) -> list[Text]:
    """Every text the model reads, in request order: the one list the input cap, guardrails,
    redaction, prompt logging and the local endpoint use."""
    found: list[Text] = []

    def keep(text: Text) -> str:
        found.append(text)
        return text.text

    _walk(request, type(request), (), "", keep)
    return found


def images(request: Request) -> list[str]:
    """Where each image is, e.g. `input[0].content[1]`: images live only in message parts."""
    items = request.input if isinstance(request.input, list) else []
    return [
        f"input[{i}].content[{j}]"
        for i, item in enumerate(items)
        if isinstance(item, Message) and isinstance(item.content, list)
        for j, part in enumerate(item.content)
        if isinstance(part, InputImage)
    ]


def with_texts(request: M, replacements: list[str]) -> M:
    """`request` with each text (in `texts` order) replaced; a JSON text must still be a JSON object
    with the same keys, else ValueError (the caller cannot be given a schema it did not send)."""
    supply = iter(replacements)
    return _walk(request, type(request), (), "", lambda _: next(supply))


def locate(loc: tuple[int | str, ...], root: type[BaseModel] | None = None) -> tuple[str, FieldInfo | None, Any]:
    """A location in a request (pydantic's `loc`, or the keys and indices of the raw JSON) as the
    caller reads it, e.g. `input[0].content[1].text`, and the declared field it ends in (for its
    `must` message). Field names and indices only: it stops before anything the caller named (a
    metadata key, a schema property, an unknown field), so it never echoes caller text. Also
    returns the type reached (a model, for the fields it allows)."""
    path, found = "", None
    annotation: Any = root or Request
    parts = list(loc)
    while parts:
        annotation, _ = _unwrap(annotation, ())
        part = parts[0]
        if _is_union(annotation):
            annotation, was_tag = _member(get_args(annotation), part)
            if annotation is None:
                break
            if was_tag:
                parts.pop(0)
            continue
        if _is_model(annotation) and isinstance(part, str):
            field = _field(annotation, part)
            if field is None:
                break
            path, found, annotation = f"{path}.{part}" if path else part, field, field.annotation
            annotation = Annotated[(annotation, *field.metadata)] if field.metadata else annotation
        elif get_origin(annotation) is list and isinstance(part, int):
            path, annotation = f"{path}[{part}]", get_args(annotation)[0]
        else:
            break
        parts.pop(0)
    return path, found, _unwrap(annotation, ())[0]


def models(root: type[BaseModel] = Request) -> list[type[BaseModel]]:
    """Every model class the contract is made of, root first (the docs' tables, the tests)."""
    seen: list[type[BaseModel]] = []

    def visit(annotation: Any) -> None:
        if _is_model(annotation):
            if annotation not in seen:
                seen.append(annotation)
                for field in annotation.model_fields.values():
                    visit(field.annotation)
            return
        for arg in get_args(annotation):
            visit(arg)

    visit(root)
    return seen


def leaves(annotation: Any, metadata: tuple[Any, ...] = ()) -> Iterator[tuple[Any, Kind | None]]:
    """The non-model types a field can hold (str, dict, int, Literal...) with the Kind declared for each."""
    annotation, metadata = _unwrap(annotation, metadata)
    origin = get_origin(annotation)
    if _is_union(annotation):
        for member in get_args(annotation):
            yield from leaves(member, metadata)
    elif origin in (list, dict):
        args = get_args(annotation)
        if origin is dict and _kind(metadata) is not None:
            yield annotation, _kind(metadata)
            return
        inherited = (_kind(metadata),) if _kind(metadata) else ()
        for arg in args[1:] if origin is dict else args:
            yield from leaves(arg, inherited)
    elif not _is_model(annotation):
        yield annotation, _kind(metadata)


# --- the walk -------------------------------------------------------------------------------------


def _walk(value: Any, annotation: Any, metadata: tuple[Any, ...], at: str, visit: Callable[[Text], str]) -> Any:
    """Rebuild `value`, passing each text the model reads through `visit`. Strings without a
    declared Kind count as prose: a field nobody classified is screened, not skipped."""
    if value is None:
        return None
    annotation, metadata = _unwrap(annotation, metadata)
    if _is_union(annotation):
        annotation, metadata = _member_for(get_args(annotation), value, metadata)
    kind = _kind(metadata)
    if kind in NOT_TEXT or get_origin(annotation) is Literal:
        return value
    if isinstance(value, str):
        return visit(Text(at, value, kind or Kind.PROSE))
    if isinstance(value, dict):
        return _from_json(visit(Text(at, _json_text(value), Kind.JSON)), value)
    if isinstance(value, list):  # items inherit the list's Kind
        item = get_args(annotation)[0] if get_args(annotation) else Any
        inherited = (kind,) if kind else ()
        return [_walk(v, item, inherited, f"{at}[{i}]", visit) for i, v in enumerate(value)]
    if isinstance(value, BaseModel):
        changed = {}
        for name, field in type(value).model_fields.items():
            item = getattr(value, name)
            label = field.alias or name
            new = _walk(item, field.annotation, tuple(field.metadata), f"{at}.{label}" if at else label, visit)
            if new is not item:
                changed[name] = new
        return value.model_copy(update=changed) if changed else value
    return value


def _json_text(value: dict[str, Any]) -> str:
    return json.dumps(value, ensure_ascii=False)


def _from_json(text: str, original: dict[str, Any]) -> dict[str, Any]:
    if text == _json_text(original):
        return original
    value = json.loads(text, object_pairs_hook=_unique)
    if not isinstance(value, dict) or value.keys() != original.keys():
        raise ValueError("the JSON text no longer has the same shape")
    return value


def _unique(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    result = dict(pairs)
    if len(result) != len(pairs):
        raise ValueError("a key repeats")
    return result


# --- reading the declaration ----------------------------------------------------------------------


def _unwrap(annotation: Any, metadata: tuple[Any, ...]) -> tuple[Any, tuple[Any, ...]]:
    """Strip Annotated (keeping its metadata) and a union with None (an optional field)."""
    while True:
        if get_origin(annotation) is Annotated:
            args = get_args(annotation)
            annotation, metadata = args[0], (*metadata, *args[1:])
        elif _is_union(annotation) and type(None) in get_args(annotation):
            rest = tuple(a for a in get_args(annotation) if a is not type(None))
            annotation = rest[0] if len(rest) == 1 else Union[rest]  # noqa: UP007 (a runtime Union)
        else:
            return annotation, metadata


def _is_union(annotation: Any) -> bool:
    return get_origin(annotation) in (Union, types.UnionType)


def _kind(metadata: tuple[Any, ...]) -> Kind | None:
    return next((m for m in metadata if isinstance(m, Kind)), None)


def _tag(annotation: Any) -> str | None:
    """A union member's tag: its Tag(...) or, for a model, the value of its `type` Literal."""
    if get_origin(annotation) is Annotated:
        tag = next((m.tag for m in get_args(annotation)[1:] if isinstance(m, Tag)), None)
        if tag is not None:
            return tag
    bare, _ = _unwrap(annotation, ())
    if _is_model(bare) and "type" in bare.model_fields:
        literal = bare.model_fields["type"].annotation
        return "|".join(get_args(literal)) if get_origin(literal) is Literal else None
    return None


def _member(members: tuple[Any, ...], part: int | str) -> tuple[Any, bool]:
    """The union member a location's next part selects, and whether that part was its tag."""
    for member in members:
        tag, bare = _tag(member), _unwrap(member, ())[0]
        if isinstance(part, str) and tag is not None and part in tag.split("|"):
            return member, True
        if _is_model(bare) and part == bare.__name__:  # pydantic's name for a member of an untagged union
            return member, True
    for member in members:
        bare, _ = _unwrap(member, ())
        if isinstance(part, int) and get_origin(bare) is list:
            return member, False
        if isinstance(part, str) and _is_model(bare) and _field(bare, part) is not None:
            return member, False
    return None, False


def _member_for(members: tuple[Any, ...], value: Any, metadata: tuple[Any, ...]) -> tuple[Any, tuple[Any, ...]]:
    """The union member that holds `value` (validated already, so one fits)."""
    for member in members:
        bare, extra = _unwrap(member, metadata)
        if _is_model(bare):
            if isinstance(value, bare):
                return bare, extra
        elif (
            (get_origin(bare) is list and isinstance(value, list))
            or (get_origin(bare) is dict and isinstance(value, dict))
            or (bare is str and isinstance(value, str))
        ):
            return bare, extra
    return Any, metadata


def _is_model(annotation: Any) -> bool:
    return isinstance(annotation, type) and issubclass(annotation, BaseModel)


def _field(model: type[BaseModel], name: str) -> FieldInfo | None:
    """A field by the name callers use (its alias, if it has one)."""
    return next((f for n, f in model.model_fields.items() if (f.alias or n) == name), None)
