"""A body in, a validated `Request` out, under the operator's caps, or a refusal naming the field.

Everything is checked before any upstream call, so bad input costs nothing. The shape is the
contract's (contract.py); this module adds strict JSON, the operator's limits and the messages.
Content-Type is ignored on purpose: curl's `-d` sends a form type.
"""

from __future__ import annotations

import json
import math
from typing import Any, Literal, TypeVar, get_args, get_origin

from pydantic import BaseModel, ValidationError

from .contract import REFUSED_TYPES, McpTool, Request, images, locate, texts
from .errors import InvalidRequest, PayloadTooLarge
from .logs import printable
from .settings import Settings

STORAGE_OFF = "stored responses are disabled (GENAI_ALLOW_STORED_RESPONSES)"
ALLOWED_FIELDS = tuple(field.alias or name for name, field in Request.model_fields.items())
B = TypeVar("B", bound=BaseModel)
_MAX_DEPTH = 32
_TOO_DEEP = f"request body is nested deeper than {_MAX_DEPTH} levels"


def parse(body: bytes, settings: Settings) -> Request:
    """The request in `body`, with the model, output cap and storage the operator allows filled in."""
    return with_caps(validate(parse_body(body, settings), settings), settings)


def parse_body(body: bytes, settings: Settings) -> dict[str, Any]:
    """Decode the body as one JSON object, strictly: only finite numbers, no repeated keys, bounded
    nesting, no half surrogate pairs (pydantic's own JSON parser is laxer on each)."""
    if len(body) > settings.max_body_bytes:
        raise PayloadTooLarge(f"request body is over {settings.max_body_bytes} bytes")
    if not body.strip():
        raise InvalidRequest('request body is empty: send a JSON object such as {"prompt": "Hello"}')
    try:
        value = json.loads(
            body.decode("utf-8"), object_pairs_hook=_object, parse_constant=_no_constant, parse_float=_finite
        )
    except UnicodeDecodeError:
        raise InvalidRequest("request body is not valid UTF-8") from None
    except _NotFinite:
        raise InvalidRequest("request body has a number too large to represent (such as 1e400)") from None
    except RecursionError:
        raise InvalidRequest(_TOO_DEEP) from None
    except ValueError:
        raise InvalidRequest("request body is not valid JSON") from None
    if not isinstance(value, dict):
        raise InvalidRequest("request body must be a JSON object")
    _check_tree(value)
    return value


def validate(value: dict[str, Any], settings: Settings) -> Request:
    """The decoded body as a `Request`, or InvalidRequest naming the first field at fault."""
    return validate_as(Request, value, settings)


def validate_as(model: type[B], value: dict[str, Any], settings: Settings) -> B:
    """The decoded body as `model` (a conversation route's body, say), refused as a request would be."""
    try:
        return model.model_validate(value)
    except ValidationError as exc:
        raise _refusal(exc, settings, model) from None


def with_caps(request: Request, settings: Settings) -> Request:
    """The operator's limits, which the contract's types cannot know: the model allow-list, the
    output cap, the input cap over every text the model reads, and stored responses."""
    limits = _limits(settings)
    model = request.model if request.model is not None else settings.model
    if model not in settings.allowed_models:
        raise InvalidRequest(f"model must be one of: {limits['allowed_models']}")
    max_tokens = request.max_output_tokens if request.max_output_tokens is not None else settings.max_output_tokens
    if max_tokens > settings.max_output_tokens:
        raise InvalidRequest(f"max_output_tokens must be a whole number from 1 to {settings.max_output_tokens}")
    _check_images(images(request), settings)
    _check_hosted_tools(request, settings)
    chars = sum(len(text.text) for text in texts(request))
    if chars > settings.max_input_chars:
        raise InvalidRequest(
            f"the request's text is {chars} characters (prompt, instructions, format, tools, tool outputs); "
            f"the limit is {settings.max_input_chars}"
        )
    return request.model_copy(update={"model": model, "max_output_tokens": max_tokens, **_storage(request, settings)})


def _check_images(found: list[str], settings: Settings) -> None:
    if len(found) > settings.max_images:
        raise InvalidRequest(
            f"the request has {len(found)} images; the limit is {settings.max_images} (GENAI_MAX_IMAGES)"
        )
    if found and settings.guardrails == "block" and not settings.guardrails_allow_images:
        raise InvalidRequest(
            f"{found[0]}: guardrails cannot screen an image, and block mode refuses what it cannot screen "
            "(GENAI_GUARDRAILS_ALLOW_IMAGES)"
        )


def _check_hosted_tools(request: Request, settings: Settings) -> None:
    """Hosted tools reach the project's data or a URL as the function's identity: only what the operator allows."""
    for i, tool in enumerate(request.tools or ()):
        if tool.type != "function" and tool.type not in settings.allowed_hosted_tools:
            raise InvalidRequest(
                f"tools[{i}] ({tool.type}): hosted tools are off unless the operator allows them "
                "(GENAI_ALLOWED_HOSTED_TOOLS)"
            )
        if isinstance(tool, McpTool) and tool.server_url not in settings.mcp_allowed_urls:
            raise InvalidRequest(f"tools[{i}].server_url is not one the operator allows (GENAI_MCP_ALLOWED_URLS)")


def _storage(request: Request, settings: Settings) -> dict[str, Any]:
    """`store` as OCI is to get it: true unless the caller or the operator turned storage off."""
    if not settings.allow_stored_responses:
        asked = {
            "store": request.store,
            "previous_response_id": request.previous_response_id,
            "conversation": request.conversation,
            "background": request.background,
        }
        for name, value in asked.items():
            if value:
                raise InvalidRequest(f"{name}: {STORAGE_OFF}")
        return {"store": False}
    if request.background and request.store is False:
        raise InvalidRequest("background needs store: a background response is kept until its caller reads it")
    return {"store": request.store is not False}


def _limits(settings: Settings) -> dict[str, Any]:
    """The values a field's `must` message may name."""
    return {"allowed_models": ", ".join(settings.allowed_models), "max_output_tokens": settings.max_output_tokens}


def _refusal(exc: ValidationError, settings: Settings, root: type[BaseModel] = Request) -> InvalidRequest:
    """The first error, as the caller reads it: positions and declared rules, never the caller's values."""
    errors = exc.errors(include_url=False, include_input=False)
    unknown = [error for error in errors if error["type"] == "extra_forbidden"]
    if unknown:
        parent = unknown[0]["loc"][:-1]
        names = [str(error["loc"][-1]) for error in unknown if error["loc"][:-1] == parent]
        where, _, model = locate(parent, root)
        message = f"unknown field(s) {_names(sorted(names))}"
        if isinstance(model, type) and issubclass(model, BaseModel):
            message += "; allowed: " + ", ".join(f.alias or n for n, f in model.model_fields.items())
        return InvalidRequest(f"{where}: {message}" if where else message)
    error = errors[0]
    where, field, _ = locate(error["loc"], root)
    if error["type"] == "contract":
        return InvalidRequest(f"{where} {error['msg']}" if where else error["msg"])
    if error["type"] == "missing":
        return InvalidRequest(f"{where} is required")
    if error["type"] == "union_tag_invalid":
        refused = REFUSED_TYPES.get(error["ctx"]["tag"])  # a key only: the caller's value is never echoed
        return InvalidRequest(
            f"{where}: {refused}" if refused else f"{where}.type must be one of {error['ctx']['expected_tags']}"
        )
    must = field.json_schema_extra.get("must") if field and isinstance(field.json_schema_extra, dict) else None
    if must is None and field is not None:
        must = _describe(field.annotation)
    return InvalidRequest(f"{where or 'request body'} must be {str(must or 'valid').format(**_limits(settings))}")


def _describe(annotation: Any) -> str:
    """What a value of a declared type must be, for a field that declares no message of its own."""
    args = [a for a in get_args(annotation) if a is not type(None)] or [annotation]
    bare = args[0]
    if get_origin(bare) is Literal:
        return "one of " + ", ".join(map(str, get_args(bare)))
    return {bool: "true or false", int: "a whole number", float: "a number", str: "a string"}.get(bare, "valid")


class _Repeated(dict[str, Any]):
    """An object that repeated a key: found with its position by _check_tree, after decoding."""


def _object(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    result = dict(pairs)
    return _Repeated(result) if len(result) != len(pairs) else result


def _no_constant(name: str) -> Any:
    raise ValueError(name)  # NaN, Infinity, -Infinity are not JSON


class _NotFinite(ValueError):
    pass


def _finite(text: str) -> float:
    """JSON allows 1e400, which Python reads as inf; the upstream request could not carry it."""
    value = float(text)
    if not math.isfinite(value):
        raise _NotFinite(text[:32])
    return value


def _check_tree(value: dict[str, Any]) -> None:
    """Bounded nesting, keys that appear once per object, and text that is Unicode: JSON can escape
    half a UTF-16 pair ("\\ud800"), which Python keeps as a lone surrogate that no UTF-8 encoder
    (the upstream call's) accepts."""
    stack: list[tuple[Any, tuple[int | str, ...]]] = [(value, ())]
    while stack:
        item, loc = stack.pop()
        if isinstance(item, str):
            try:
                item.encode("utf-8")
            except UnicodeEncodeError:
                raise InvalidRequest("request body has a \\u escape that is half a surrogate pair, not text") from None
        elif isinstance(item, (dict, list)):
            if len(loc) >= _MAX_DEPTH:
                raise InvalidRequest(_TOO_DEEP)
            if isinstance(item, _Repeated):
                raise InvalidRequest(f"{locate(loc)[0] or 'request body'}: repeats a key")
            if isinstance(item, dict):
                stack.extend((key, loc) for key in item)
                stack.extend((child, (*loc, key)) for key, child in item.items())
            else:
                stack.extend((child, (*loc, i)) for i, child in enumerate(item))


def _names(names: list[str], shown: int = 5, width: int = 40) -> str:
    """A few names, each cut short and escaped: the message is answered and logged, whatever the caller sent."""
    listed = ", ".join(printable(name if len(name) <= width else name[:width] + "…") or '""' for name in names[:shown])
    return listed + (f" and {len(names) - shown} more" if len(names) > shown else "")
