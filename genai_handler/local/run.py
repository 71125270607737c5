"""`make run`: one prompt through the function, exactly as OCI Functions and API Gateway would run it.

It starts func.py under the real fdk with the environment OCI Functions provides, sends the prompt
to the chat route the way API Gateway does, prints the answer, and cleans up. Its calls go where
`make serve`'s go, with the same GENAI_* settings (environment over `.env`): by default to the
signature-verifying local endpoint with a generated resource-principal identity, no cloud account.
"""

from __future__ import annotations

import argparse
import json
import os
import sys

from .agent import FunctionProcess, chat_route
from .gateway import upstream

DEFAULT_PROMPT = "Say hello from OCI Functions"
# How `make run` hands over PROMPT: the environment carries any bytes that make and the shell would rewrite.
PROMPT_ENV = "MAKE_RUN_PROMPT"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--prompt",
        default=os.environ.get(PROMPT_ENV),
        help=f"the prompt to send (default: ${PROMPT_ENV}, else {DEFAULT_PROMPT!r})",
    )
    args = parser.parse_args(argv)
    prompt = {"prompt": args.prompt or DEFAULT_PROMPT}
    route = chat_route()
    with upstream() as (env, where), FunctionProcess(env) as function:
        print(f"POST {route} {json.dumps(prompt)}  (as API Gateway sends it) → {where}", file=sys.stderr, flush=True)
        answer = function.invoke(prompt, path=route)
    print(f"HTTP {answer.http_status}", file=sys.stderr, flush=True)
    print(json.dumps(answer.json(), indent=2, ensure_ascii=False), flush=True)
    return 0 if answer.http_status == 200 else 1


if __name__ == "__main__":
    sys.exit(main())
