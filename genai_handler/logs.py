"""One JSON line per invocation, and quiet third-party loggers.

Importing fdk sets the root logger to DEBUG with a stderr handler, so the openai, httpx and oci
loggers would otherwise print every request (prompts included) and every header. Python
warnings would print their text to stderr too (pydantic's quote the values it serialised, the
model's answer included): they become JSON lines naming only the warning's category and place.
"""

from __future__ import annotations

import json
import logging
import sys
import warnings
from typing import Any, TextIO

_QUIETED = ("openai", "httpx", "httpx2", "httpcore", "httpcore2", "oci", "urllib3", "hpack")
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


def _show_warning(
    message: Warning | str, category: type[Warning], filename: str, lineno: int,
    file: TextIO | None = None, line: str | None = None,
) -> None:
    """The warning's text may quote data, so only its category and origin are logged."""
    logger.warning(json.dumps({"warning": category.__name__, "where": f"{filename}:{lineno}"}))


def invocation(**fields: Any) -> None:
    """Log one invocation; fields with a None value are left out."""
    logger.info(json.dumps({k: v for k, v in fields.items() if v is not None}, ensure_ascii=False, default=str))
