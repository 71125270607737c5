"""`stream: true`: OCI's server-sent events, relayed unchanged as one text/event-stream body.

OCI Functions cannot stream an answer (the fdk sends the whole body at once), so the events are
collected and sent together at the end. A stream that breaks off (a lost connection, the deadline,
an unreadable event, more than a function may answer) ends with one `error` event, the closing
event the OpenAI SDKs read as ResponseErrorEvent, so the caller's body is always a whole stream.
upstream.stream_response opens the stream and maps transport failures; this module only reads.
"""

from __future__ import annotations

import codecs
import itertools
import json
import re
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any

from .errors import HandlerError, UpstreamError, UpstreamTimeout
from .settings import MAX_INVOKE_PAYLOAD_BYTES

# The largest answer a function may give (OCI Functions' payload limit), less room for the fdk's framing.
MAX_BODY_BYTES = MAX_INVOKE_PAYLOAD_BYTES - 4096
# The events after which a response has nothing more to say (openai SDK: ResponseStreamEvent).
FINAL_EVENTS = frozenset({"response.completed", "response.incomplete", "response.failed", "error"})
_CUT_SHORT = "OCI Generative AI ended the stream before the response was complete; retry later"
_TOO_LONG = "the streamed answer is over the {limit} bytes a function can return; ask for fewer output tokens"
_CLOSING_ROOM = 1024  # a closing event always fits: its message is one of this module's or upstream's
_LINE_END = re.compile(r"\r\n|\r(?!\Z)|\n")  # a CR at the end of what has arrived may be half of a CRLF


class Unreadable(Exception):
    """The stream is not server-sent events of JSON objects. Never leaves the package."""


@dataclass(frozen=True)
class Event:
    """One event: its lines as OCI sent them (comments dropped, LF line endings, a blank line to end),
    its type, and its data (None for a `[DONE]` marker)."""

    raw: bytes
    type: str | None
    data: dict[str, Any] | None


@dataclass(frozen=True)
class Relayed:
    """The caller's body; the final event's data, if one came; why the relay ended early (its
    closing event ends `body`), None when OCI's own final event did."""

    body: bytes
    final: dict[str, Any] | None
    failure: HandlerError | None


def events(chunks: Iterable[bytes], max_bytes: int = MAX_BODY_BYTES) -> Iterator[Event]:
    """The events in a text/event-stream body arriving in `chunks` (WHATWG HTML, server-sent events:
    CRLF, CR or LF; a blank line ends an event; one ending without it is dropped). Raises
    Unreadable for invalid UTF-8, data that is not a JSON object, or a line over `max_bytes`."""
    decoder = codecs.getincrementaldecoder("utf-8")()
    pending, lines = "", list[str]()
    try:
        for text in itertools.chain((decoder.decode(chunk) for chunk in chunks), [decoder.decode(b"", final=True)]):
            pending += text
            *complete, pending = _LINE_END.split(pending)
            if len(pending) > max_bytes:
                raise Unreadable
            for line in complete:
                if line:
                    lines.append(line)
                elif lines:
                    found = _event(lines)
                    lines = []
                    if found is not None:
                        yield found
    except UnicodeDecodeError:
        raise Unreadable from None
    if pending == "\r" and lines:  # the stream's last line ending was a CR alone
        found = _event(lines)
        if found is not None:
            yield found


def _event(lines: list[str]) -> Event | None:
    fields = [line.partition(":") for line in lines if not line.startswith(":")]
    values = [(name, value.removeprefix(" ")) for name, _, value in fields]
    data_lines = [value for name, value in values if name == "data"]
    if not data_lines:
        return None  # a comment or a keep-alive: nothing a caller would read
    raw = "".join(f"{line}\n" for line in lines if not line.startswith(":")) + "\n"
    data_text = "\n".join(data_lines)
    name = next((value for name, value in reversed(values) if name == "event"), None)
    if data_text == "[DONE]":
        return Event(raw.encode(), name, None)
    try:
        data = json.loads(data_text)
    except ValueError:
        raise Unreadable from None
    if not isinstance(data, dict):
        raise Unreadable
    kind = data.get("type")
    return Event(raw.encode(), kind if isinstance(kind, str) else name, data)


def closing_event(error: HandlerError, sequence_number: int) -> bytes:
    """The `error` event that ends a broken stream (openai SDK: ResponseErrorEvent): the error's type
    as its code and its documented message, never exception text."""
    data = {"type": "error", "code": error.type, "message": error.message, "param": None}
    return f"event: error\ndata: {json.dumps({**data, 'sequence_number': sequence_number})}\n\n".encode()


def relay(stream: Iterator[Event], deadline_mono: float, late: str) -> Relayed:
    """OCI's events from `stream` (which raises a HandlerError when reading fails) into one body, until
    the stream ends, `deadline_mono` passes (`late` says so), or the body would be too long for a
    function's answer. Events after a final one are kept; a failure after it changes nothing."""
    body, final, number = bytearray(), None, -1
    failure: HandlerError | None = None
    try:
        for event in stream:
            if len(body) + len(event.raw) > MAX_BODY_BYTES - _CLOSING_ROOM:
                failure = UpstreamError(_TOO_LONG.format(limit=MAX_BODY_BYTES))
                break
            body += event.raw
            number = _sequence_number(event, number)
            if final is None and event.type in FINAL_EVENTS:
                final = event.data or {}
            if time.monotonic() >= deadline_mono:
                failure = UpstreamTimeout(late)
                break
    except HandlerError as error:
        failure = error
    if final is not None:
        return Relayed(bytes(body), final, None)
    failure = failure or UpstreamError(_CUT_SHORT)
    return Relayed(bytes(body + closing_event(failure, number + 1)), None, failure)


def _sequence_number(event: Event, last: int) -> int:
    """The event's own number when it has one; else one more than the last."""
    number = event.data.get("sequence_number") if event.data else None
    return number if isinstance(number, int) and not isinstance(number, bool) else last + 1
