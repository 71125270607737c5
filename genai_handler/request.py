"""The request contract: turn an invocation body into `responses.create` arguments, or refuse it.

Everything is checked before any upstream call, so bad input costs nothing and every refusal
names the field at fault. Content-Type is ignored on purpose: curl's `-d` sends a form type.
"""

from __future__ import annotations

import json
import math
from typing import Any

from .errors import InvalidRequest, PayloadTooLarge
from .settings import Settings

ALLOWED_FIELDS = (
    "prompt", "input", "instructions", "model", "max_output_tokens", "temperature", "top_p",
    "text", "metadata", "reasoning", "store", "previous_response_id",
)
_NOT_OFFERED = {
    "stream": "streaming is not offered by this function",
    "tools": "tools are not offered by this function",
    "background": "background responses are not offered by this function",
}
_ROLES = ("user", "assistant", "system", "developer")
_TEXT_PARTS = ("input_text", "output_text")
_FORMATS = ("text", "json_object", "json_schema")
_EFFORTS = ("none", "minimal", "low", "medium", "high", "xhigh")
_SUMMARIES = ("auto", "concise", "detailed")
_MAX_DEPTH = 32
_TOO_DEEP = f"request body is nested deeper than {_MAX_DEPTH} levels"


def parse_body(body: bytes, settings: Settings) -> dict[str, Any]:
    """Decode the body as one JSON object, strictly: only finite numbers, no duplicate keys, bounded nesting."""
    if len(body) > settings.max_body_bytes:
        raise PayloadTooLarge(f"request body is over {settings.max_body_bytes} bytes")
    if not body.strip():
        raise InvalidRequest('request body is empty: send a JSON object such as {"prompt": "Hello"}')
    try:
        value = json.loads(
            body.decode("utf-8"), object_pairs_hook=_no_duplicates, parse_constant=_no_constant, parse_float=_finite
        )
    except UnicodeDecodeError:
        raise InvalidRequest("request body is not valid UTF-8") from None
    except _DuplicateKey as exc:
        raise InvalidRequest(f"request body repeats the key {exc.key!r}") from None
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


def build_arguments(request: dict[str, Any], settings: Settings) -> dict[str, Any]:
    """Validate a decoded request and return the keyword arguments for `responses.create`."""
    for name in request:
        if name in _NOT_OFFERED:
            raise InvalidRequest(f"{name}: {_NOT_OFFERED[name]}")
    unknown = sorted(set(request) - set(ALLOWED_FIELDS))
    if unknown:
        raise InvalidRequest(f"unknown field(s) {_names(unknown)}; allowed: {', '.join(ALLOWED_FIELDS)}")
    if "prompt" in request and "input" in request:
        raise InvalidRequest("send either prompt or input, not both")
    if "prompt" in request:
        _text(request, "prompt")
        user_input: Any = request["prompt"]
    elif "input" in request:
        user_input = _input(request["input"])
    else:
        raise InvalidRequest("prompt is required (or input, Responses-style)")

    model = request.get("model", settings.model)
    if not isinstance(model, str) or model not in settings.allowed_models:
        raise InvalidRequest(f"model must be one of: {', '.join(settings.allowed_models)}")
    max_tokens = request.get("max_output_tokens", settings.max_output_tokens)
    if not _is_int(max_tokens) or not 1 <= max_tokens <= settings.max_output_tokens:
        raise InvalidRequest(f"max_output_tokens must be a whole number from 1 to {settings.max_output_tokens}")

    arguments: dict[str, Any] = {"model": model, "input": user_input, "max_output_tokens": max_tokens}
    if "instructions" in request:
        arguments["instructions"] = _text(request, "instructions")
    chars = _input_chars(user_input) + len(arguments.get("instructions", ""))
    if chars > settings.max_input_chars:
        raise InvalidRequest(f"input is {chars} characters; the limit is {settings.max_input_chars}")
    for name, high in (("temperature", 2.0), ("top_p", 1.0)):
        if name in request:
            value = request[name]
            if not _is_number(value) or not 0.0 <= value <= high:
                raise InvalidRequest(f"{name} must be a number from 0 to {high:g}")
            arguments[name] = value
    if "text" in request:
        arguments["text"] = _text_config(request["text"])
    if "metadata" in request:
        arguments["metadata"] = _metadata(request["metadata"])
    if "reasoning" in request:
        arguments["reasoning"] = _reasoning(request["reasoning"])
    arguments.update(_storage(request, settings))
    return arguments


def _storage(request: dict[str, Any], settings: Settings) -> dict[str, Any]:
    """Stored responses are shared by every caller (one function identity): off unless enabled."""
    store = request.get("store", False)
    if not isinstance(store, bool):
        raise InvalidRequest("store must be true or false")
    if not settings.allow_stored_responses:
        if store:
            raise InvalidRequest("store: stored responses are disabled (GENAI_ALLOW_STORED_RESPONSES)")
        if "previous_response_id" in request:
            raise InvalidRequest("previous_response_id: stored responses are disabled (GENAI_ALLOW_STORED_RESPONSES)")
        return {"store": False}
    result: dict[str, Any] = {"store": store}
    if "previous_response_id" in request:
        result["previous_response_id"] = _text(request, "previous_response_id", limit=256)
    return result


class _DuplicateKey(ValueError):
    def __init__(self, key: str) -> None:
        super().__init__(key)
        self.key = key[:64]


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    result: dict[str, Any] = {}
    for key, value in pairs:
        if key in result:
            raise _DuplicateKey(key)
        result[key] = value
    return result


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


def _check_tree(value: Any) -> None:
    """Bounded nesting, and text that is Unicode: JSON can escape half a UTF-16 pair ("\\ud800"),
    which Python keeps as a lone surrogate that no UTF-8 encoder (the upstream call's) accepts."""
    stack = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, str):
            try:
                item.encode("utf-8")
            except UnicodeEncodeError:
                raise InvalidRequest("request body has a \\u escape that is half a surrogate pair, not text") from None
        elif isinstance(item, (dict, list)):
            if depth > _MAX_DEPTH:
                raise InvalidRequest(_TOO_DEEP)
            children = [*item.keys(), *item.values()] if isinstance(item, dict) else item
            stack.extend((child, depth + 1) for child in children)


def _names(names: list[str], shown: int = 5, width: int = 40) -> str:
    """A few names, each cut short: the message is answered and logged, whatever the caller sent."""
    listed = ", ".join(name if len(name) <= width else name[:width] + "…" for name in names[:shown])
    return listed + (f" and {len(names) - shown} more" if len(names) > shown else "")


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    return _is_int(value) or (isinstance(value, float) and math.isfinite(value))  # isfinite(10**400) overflows


def _text(container: dict[str, Any], name: str, limit: int | None = None) -> str:
    value = container.get(name)
    if not isinstance(value, str) or not value.strip():
        raise InvalidRequest(f"{name} must be a non-empty string")
    if limit is not None and len(value) > limit:
        raise InvalidRequest(f"{name} is longer than {limit} characters")
    return value


def _input(value: Any) -> Any:
    if isinstance(value, str):
        if not value.strip():
            raise InvalidRequest("input must be a non-empty string or a non-empty list of messages")
        return value
    if not isinstance(value, list) or not value:
        raise InvalidRequest("input must be a non-empty string or a non-empty list of messages")
    return [_message(item, f"input[{i}]") for i, item in enumerate(value)]


def _message(item: Any, where: str) -> dict[str, Any]:
    if not isinstance(item, dict):
        raise InvalidRequest(f"{where} must be a message object with role and content")
    extra = set(item) - {"role", "content", "type"}
    if extra or item.get("type", "message") != "message":
        raise InvalidRequest(f"{where}: only messages with role and content are accepted")
    if item.get("role") not in _ROLES:
        raise InvalidRequest(f"{where}.role must be one of {', '.join(_ROLES)}")
    content = item.get("content")
    if isinstance(content, str):
        if not content.strip():
            raise InvalidRequest(f"{where}.content must not be empty")
        return {"role": item["role"], "content": content}
    if not isinstance(content, list) or not content:
        raise InvalidRequest(f"{where}.content must be a string or a non-empty list of text parts")
    parts = []
    for j, part in enumerate(content):
        if not isinstance(part, dict) or set(part) != {"type", "text"} or part["type"] not in _TEXT_PARTS:
            raise InvalidRequest(f'{where}.content[{j}] must be {{"type": "input_text", "text": "..."}}')
        if not isinstance(part["text"], str) or not part["text"].strip():
            raise InvalidRequest(f"{where}.content[{j}].text must be a non-empty string")
        parts.append({"type": part["type"], "text": part["text"]})
    return {"role": item["role"], "content": parts}


def _input_chars(user_input: Any) -> int:
    if isinstance(user_input, str):
        return len(user_input)
    total = 0
    for message in user_input:
        content = message["content"]
        total += len(content) if isinstance(content, str) else sum(len(p["text"]) for p in content)
    return total


def _text_config(value: Any) -> dict[str, Any]:
    if not isinstance(value, dict) or set(value) - {"format", "verbosity"}:
        raise InvalidRequest("text must be an object with format and/or verbosity")
    if "verbosity" in value and value["verbosity"] not in ("low", "medium", "high"):
        raise InvalidRequest("text.verbosity must be low, medium or high")
    fmt = value.get("format")
    if fmt is not None:
        if not isinstance(fmt, dict) or fmt.get("type") not in _FORMATS:
            raise InvalidRequest(f"text.format.type must be one of {', '.join(_FORMATS)}")
        if fmt["type"] == "json_schema":
            if not isinstance(fmt.get("name"), str) or not isinstance(fmt.get("schema"), dict):
                raise InvalidRequest("text.format json_schema needs a name (string) and a schema (object)")
            if set(fmt) - {"type", "name", "schema", "strict", "description"}:
                raise InvalidRequest("text.format allows type, name, schema, strict, description")
            if not isinstance(fmt.get("strict", False), bool):
                raise InvalidRequest("text.format.strict must be true or false")
        elif set(fmt) != {"type"}:
            raise InvalidRequest(f"text.format of type {fmt['type']} takes no other fields")
    return value


def _metadata(value: Any) -> dict[str, str]:
    if not isinstance(value, dict) or len(value) > 16:
        raise InvalidRequest("metadata must be an object of at most 16 string pairs")
    for key, item in value.items():
        if len(key) > 64 or not isinstance(item, str) or len(item) > 512:
            raise InvalidRequest("metadata keys are at most 64 characters and values strings of at most 512")
    return value


def _reasoning(value: Any) -> dict[str, str]:
    if not isinstance(value, dict) or set(value) - {"effort", "summary"}:
        raise InvalidRequest("reasoning must be an object with effort and/or summary")
    if "effort" in value and value["effort"] not in _EFFORTS:
        raise InvalidRequest(f"reasoning.effort must be one of {', '.join(_EFFORTS)}")
    if "summary" in value and value["summary"] not in _SUMMARIES:
        raise InvalidRequest(f"reasoning.summary must be one of {', '.join(_SUMMARIES)}")
    return value
