"""The container's entrypoint: the first call's work done before the fdk opens its socket.

The fdk imports func.py only when the first call arrives, so a container the platform starts ahead of
traffic would still spend that call importing the SDK and building the client. Run instead of the fdk's
own script (`python3.12 -m genai_handler.warm /function/func.py handler`, the Dockerfile's ENTRYPOINT), it
imports func.py as the fdk would and builds the client, then hands over to the fdk. A failure here is
one log line and never stops the container: the first call reports it in the documented JSON contract.
"""

from __future__ import annotations

import os
import sys
import time

import fdk
from fdk import customer_code

from . import logs
from .errors import HandlerError

_USAGE = "usage: python -m genai_handler.warm <path to func.py> [entrypoint]"


def warm(code: customer_code.Function) -> None:
    """Import func.py through the fdk's own loader (so the first call finds it imported), then build
    what the handler's first call would. Logs one line: how long it took, and what failed if anything
    did (`error_type` and `error`, as an invocation's line has them)."""
    start_mono = time.monotonic()
    failure: dict[str, str] = {}
    try:
        code.handler()
        from .handler import prepare  # noqa: PLC0415  (after func.py: it is what func.py imports)

        prepare()
    except HandlerError as exc:  # a designed message: the first call will answer with it
        failure = {"error_type": exc.type, "error": exc.message}
    except Exception as exc:  # a bug or a broken func.py: only its kind, never its text
        failure = {"error_type": "internal_error", "error": type(exc).__name__}
    logs.configure()
    logs.invocation(event="warm", warm_ms=logs.ms_since(start_mono), **failure)


def main(argv: list[str] | None = None) -> None:
    """The fdk's `fdk <func.py> [entrypoint]` (fdk/scripts/fdk.py), with warm() before it listens."""
    args = sys.argv[1:] if argv is None else argv
    if not 1 <= len(args) <= 2:  # a path and an optional entrypoint
        sys.exit(_USAGE)
    if not os.path.exists(args[0]):
        sys.exit(f"Module: {args[0]} doesn't exist")  # the fdk's own words
    code = customer_code.Function(*args)
    warm(code)
    fdk.handle(code)


if __name__ == "__main__":
    main()
