"""OCI's response JSON, read for the few fields the function needs, exactly as the OpenAI SDK reads them.

Building the SDK's `Response` model costs about 130 ms of pydantic schema on a container's first call
(docs/performance.md), for six fields; the OpenAI-compatible route passes OCI's JSON through anyway.
`tests/test_answer.py` checks every reading here against the SDK's own model, over many shapes.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

_COUNTS = ("input_tokens", "output_tokens", "total_tokens")


class Unreadable(ValueError):
    """A field the function reads has a shape the SDK could not read either."""


@dataclass(frozen=True)
class Answer:
    """The fields of one response the caller's answer, the log line and the retry decision read.
    `usage` and `incomplete_details` are OCI's objects as sent (the SDK's models would add a null for
    each field OCI left out; OCI sends them all)."""

    id: Any
    model: Any
    status: Any
    output_text: str
    usage: dict[str, Any] | None
    incomplete_details: dict[str, Any] | None
    error: Any

    @property
    def failed(self) -> bool:
        """A response that says it failed (`status: failed` or an `error`), though answered 200."""
        return self.status == "failed" or self.error is not None

    @property
    def error_code(self) -> object:
        return self.error.get("code") if isinstance(self.error, dict) else None

    @property
    def counts(self) -> dict[str, Any] | None:
        """The token counts the log line and the trace report."""
        if self.usage is None:
            return None
        return {name: self.usage[name] for name in _COUNTS if name in self.usage}


def read(body: object) -> Answer:
    """The answer in `body` (a response object's JSON); Unreadable where the SDK would fail too."""
    if not isinstance(body, dict):
        raise Unreadable("not an object")
    usage, details = body.get("usage"), body.get("incomplete_details")
    if not isinstance(usage, (dict, type(None))) or not isinstance(details, (dict, type(None))):
        raise Unreadable("usage or incomplete_details is not an object")
    return Answer(
        id=body.get("id"),
        model=body.get("model"),
        status=body.get("status"),
        output_text=output_text(body.get("output")),
        usage=usage,
        incomplete_details=details,
        error=body.get("error"),
    )


def output_text(output: object) -> str:
    """The SDK's `Response.output_text` property over the JSON: every `output_text` part of every
    message, joined; a part without text adds nothing. Fails where the property would raise."""
    texts: list[str] = []
    for item in _listed(output, "output"):
        if not isinstance(item, dict):
            raise Unreadable("an output item is not an object")
        if item.get("type") != "message":
            continue
        for part in _listed(item.get("content"), "a message's content"):
            if not isinstance(part, dict):
                raise Unreadable("a content part is not an object")
            text = part.get("text") if part.get("type") == "output_text" else None
            if text is not None and not isinstance(text, str):
                raise Unreadable("an output_text part's text is not a string")
            if text is not None:
                texts.append(text)
    return "".join(texts)


def _listed(value: object, name: str) -> list[Any]:
    """A JSON list; an empty string or object also iterates to nothing in the SDK's property."""
    if isinstance(value, list):
        return value
    if isinstance(value, (str, dict)) and not value:
        return []
    raise Unreadable(f"{name} is not a list")
