"""One JSON line per invocation, and quiet third-party loggers.

Importing fdk sets the root logger to DEBUG with a stderr handler, so the openai, httpx and oci
loggers would otherwise print every request (prompts included) and every header.
"""

from __future__ import annotations

import json
import logging
import sys
from typing import Any

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


def invocation(**fields: Any) -> None:
    """Log one invocation; fields with a None value are left out."""
    logger.info(json.dumps({k: v for k, v in fields.items() if v is not None}, ensure_ascii=False, default=str))
