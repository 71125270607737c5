"""One JSON line per invocation, and quiet third-party loggers and warnings.

Importing fdk sets the root logger to DEBUG with a stderr handler, so the openai, httpx and oci
loggers would otherwise print every request (prompts included) and every header, and Python
warnings their text.
"""

from __future__ import annotations

import json
import logging
import sys
import time
import warnings
from typing import Any, TextIO

_QUIETED = ("openai", "httpx", "httpx2", "httpcore", "httpcore2", "oci", "urllib3", "hpack")
# The header the API Gateway deployment sets from the caller's JWT subject on every route
# (`${request.auth[sub]}`, ifExists OVERWRITE), and `make serve` from LOCAL_GATEWAY_SUBJECT.
CALLER_HEADER = "X-Genai-Caller"
# OpenID Connect Core 1.0, section 2: `sub` "MUST NOT exceed 255 ASCII characters in length".
_MAX_SUBJECT_CHARS = 255
logger = logging.getLogger("genai_handler")


def configure() -> None:
    """Idempotent: our lines go to stderr as bare JSON; third-party loggers only warn."""
    for name in _QUIETED:
        logging.getLogger(name).setLevel(logging.WARNING)
    if not logger.handlers:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("%(message)s"))
        logger.addHandler(handler)
        logger.setLevel(logging.INFO)
        logger.propagate = False
    warnings.showwarning = _show_warning
    logging.raiseExceptions = False  # a failing handler would print a traceback, with the data it was given


def _show_warning(  # noqa: PLR0913, PLR0917  (warnings.showwarning's signature)
    message: Warning | str,  # noqa: ARG001  (may quote data: never logged)
    category: type[Warning],
    filename: str,
    lineno: int,
    file: TextIO | None = None,  # noqa: ARG001  (the line goes to our logger)
    line: str | None = None,  # noqa: ARG001  (source text: not needed)
) -> None:
    """A JSON line naming only the warning's category and place: its text may quote data (pydantic's
    quote the values it serialised, the model's answer included)."""
    logger.warning(json.dumps({"warning": category.__name__, "where": f"{filename}:{lineno}"}))


def caller_fields(value: object) -> dict[str, Any]:
    """`caller` for the log line, from the caller header: for attribution only, never authorisation.

    A plausible subject (1 to 255 printable characters, as OIDC bounds `sub`; non-ASCII letters are
    accepted, as some identity providers use them) is logged as it is. Anything else is still
    logged, so a misconfigured route shows, but never trusted: cut to 255 characters, each
    non-printable character (controls, bidi overrides, separators) written as a \\uXXXX (or
    \\UXXXXXXXX) escape, and flagged `caller_malformed: true`. An empty or absent header logs nothing.
    """
    if isinstance(value, list):  # the fdk lists a header sent twice; OVERWRITE leaves one
        value = value[-1] if value else None
    if not isinstance(value, str) or not value:
        return {}
    if len(value) <= _MAX_SUBJECT_CHARS and value.isprintable():
        return {"caller": value}
    return {"caller": printable(value[:_MAX_SUBJECT_CHARS], keep=""), "caller_malformed": True}


def printable(text: str, keep: str = "\t\n\r") -> str:
    """`text` with every character a log viewer or terminal could act on (controls, bidi overrides,
    line and paragraph separators, anything not printable) written as a visible \\uXXXX escape.
    Tab and newlines are kept by default: JSON escapes them itself."""
    if text.isprintable():
        return text
    return "".join(ch if ch.isprintable() or ch in keep else _escape(ch) for ch in text)


def _escape(ch: str) -> str:
    return f"\\u{ord(ch):04x}" if ord(ch) <= 0xFFFF else f"\\U{ord(ch):08x}"


def _printable_tree(value: Any) -> Any:
    if isinstance(value, str):
        return printable(value)
    if isinstance(value, dict):
        return {printable(str(k)): _printable_tree(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_printable_tree(v) for v in value]
    return value


def ms_since(start_mono: float) -> float:
    """Milliseconds since `start_mono` (time.monotonic()), as the log lines' `*_ms` fields give them."""
    return round((time.monotonic() - start_mono) * 1000, 1)


def invocation(**fields: Any) -> None:
    """Log one invocation; fields with a None value are left out. Every string, key and value, is
    made printable: the caller chose some of them (names in an error, prompts, the answer)."""
    line = {k: _printable_tree(v) for k, v in fields.items() if v is not None}
    logger.info(json.dumps(line, ensure_ascii=False, default=str))
