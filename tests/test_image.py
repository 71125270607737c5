"""The function image: requirements.txt is complete and minimal, and the build context is lean."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from genai_handler.local.agent import FunctionProcess
from genai_handler.local.endpoint import LocalEndpoint
from genai_handler.local.identity import LocalIdentity

from .conftest import PROJECT_OCID

ROOT = Path(__file__).parents[1]
_PROBE = r"""
import io, json, sys
from importlib.metadata import packages_distributions
from fdk.context import InvokeContext
import func
ctx = InvokeContext("app", "app", "fn", "fn", "call", headers={}, fn_format="http-stream")
reply = func.handler(ctx, io.BytesIO(b'{"prompt": "which packages?"}'))
owners = packages_distributions()
used = sorted({d for m in list(sys.modules) for d in owners.get(m.split(".")[0], [])})
print(json.dumps({"status": reply.status(), "body": json.loads(reply.body()), "distributions": used}))
"""


def _pinned() -> dict[str, str]:
    pins = {}
    for line in (ROOT / "requirements.txt").read_text().splitlines():
        match = re.fullmatch(r"([A-Za-z0-9_.-]+)==(\S+)", line.strip())
        if match:
            pins[re.sub(r"[-_.]+", "-", match[1]).lower()] = match[2]
    return pins


@pytest.fixture(scope="module")
def image_packages(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """/python as Dockerfile.slim builds it: requirements.txt installed with --no-deps."""
    target = tmp_path_factory.mktemp("python")
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "--quiet", "--disable-pip-version-check", "--no-deps",
         "--target", str(target), "-r", str(ROOT / "requirements.txt")],
        check=True, timeout=600,
    )
    return target


def test_the_slim_package_set_answers_under_the_real_fdk(image_packages: Path, tmp_path: Path) -> None:
    # given only requirements.txt, installed without the fdk's undeclared extras, as /python
    identity = LocalIdentity(tmp_path)
    with LocalEndpoint(trusted_issuer=identity.issuer_public_key, project_ocid=PROJECT_OCID) as endpoint:
        env = {**identity.env(), "GENAI_PROJECT_OCID": PROJECT_OCID, "GENAI_BASE_URL": endpoint.base_url}
        # when the fdk serves an invocation from that layout, then it answers
        with FunctionProcess(env, packages=image_packages) as function:
            answer = function.invoke({"prompt": "from the slim image"})
    assert answer.http_status == 200, answer.body
    assert answer.json()["output_text"] == "Local answer to: from the slim image"


def test_a_real_invocation_imports_only_pinned_distributions(image_packages: Path, tmp_path: Path) -> None:
    # given the function's environment, the local endpoint and the image's package layout
    identity = LocalIdentity(tmp_path)
    with LocalEndpoint(trusted_issuer=identity.issuer_public_key, project_ocid=PROJECT_OCID) as endpoint:
        env = {**identity.env(), "GENAI_PROJECT_OCID": PROJECT_OCID, "GENAI_BASE_URL": endpoint.base_url,
               "PYTHONPATH": f"{ROOT}:{image_packages}", "PATH": "/usr/bin:/bin"}
        # when one invocation runs in a fresh interpreter without the dev environment
        probe = subprocess.run([sys.executable, "-S", "-c", _PROBE], env=env, capture_output=True, text=True,
                               timeout=120, check=True)
    result = json.loads(probe.stdout.splitlines()[-1])
    assert result["status"] == 200, result["body"]
    used = {re.sub(r"[-_.]+", "-", d).lower() for d in result["distributions"]}
    pinned = _pinned()
    # then every distribution it imported is pinned, and every pin is imported but two that are
    # only imported on other paths (jiter: openai's structured-output parsing; pycparser: cffi builds)
    assert used <= set(pinned), used - set(pinned)
    assert set(pinned) - used == {"jiter", "pycparser"}
    # and nothing the fdk drags in without importing it is needed
    assert not used & {"pytest", "pytest-asyncio", "cython", "wheel", "pbr", "iso8601", "oci", "httpx", "requests"}


def test_pins_match_what_the_tests_run_against() -> None:
    from importlib.metadata import version

    for name, pinned in _pinned().items():
        assert version(name) == pinned, name


def test_tests_and_local_tooling_stay_out_of_the_build_context() -> None:
    ignored = (ROOT / ".dockerignore").read_text().split()
    for path in ("tests", "bench", "genai_handler/local", "requirements-dev.txt", ".venv", ".env"):
        assert path in ignored, path
