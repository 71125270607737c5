"""`make run`: one prompt through the function, exactly as OCI Functions and API Gateway would run it.

It makes a resource-principal identity, starts the signature-verifying local endpoint, starts
func.py under the real fdk with the environment OCI Functions provides, sends the prompt the
way API Gateway does, prints the answer, and cleans up. No cloud account involved.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass

from .agent import FunctionProcess
from .endpoint import LocalEndpoint
from .identity import LocalIdentity

LOCAL_PROJECT_OCID = "ocid1.generativeaiproject.oc1.us-chicago-1.aaaalocalproject"
DEFAULT_PROMPT = "Say hello from OCI Functions"


@dataclass
class LocalStack:
    identity: LocalIdentity
    endpoint: LocalEndpoint
    function: FunctionProcess


@contextmanager
def local_upstream(settings: Mapping[str, str] | None = None) -> Iterator[tuple[LocalIdentity, LocalEndpoint, dict[str, str]]]:
    """A generated identity, the local endpoint trusting it, and the function environment for both."""
    with tempfile.TemporaryDirectory(prefix="genai-local-") as workdir:
        identity = LocalIdentity(workdir)
        with LocalEndpoint(trusted_issuer=identity.issuer_public_key, project_ocid=LOCAL_PROJECT_OCID) as endpoint:
            env = {
                **identity.env(),
                "GENAI_PROJECT_OCID": LOCAL_PROJECT_OCID,
                "GENAI_BASE_URL": endpoint.base_url,
                **(settings or {}),
            }
            yield identity, endpoint, env


@contextmanager
def local_stack(settings: Mapping[str, str] | None = None, *, python: str = sys.executable) -> Iterator[LocalStack]:
    """Identity + local endpoint + func.py under the fdk, torn down on exit."""
    with local_upstream(settings) as (identity, endpoint, env), FunctionProcess(env, python=python) as function:
        yield LocalStack(identity, endpoint, function)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--prompt", default=DEFAULT_PROMPT, help="the prompt to send")
    args = parser.parse_args(argv)
    with local_stack() as stack:
        print(f"POST /genai {json.dumps({'prompt': args.prompt})}  (as API Gateway sends it)", file=sys.stderr, flush=True)
        answer = stack.function.invoke({"prompt": args.prompt or DEFAULT_PROMPT})
    print(f"HTTP {answer.http_status}", file=sys.stderr, flush=True)
    print(json.dumps(answer.json(), indent=2, ensure_ascii=False), flush=True)
    return 0 if answer.http_status == 200 else 1


if __name__ == "__main__":
    sys.exit(main())
