"""Shared fixtures: a local identity, the signature-verifying endpoint, and func.py under the fdk."""

from __future__ import annotations

import functools
import importlib
import importlib.util
import io
import os
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from types import ModuleType

import pytest

from genai_handler.local.agent import REPO_ROOT, FunctionProcess
from genai_handler.local.endpoint import LocalEndpoint
from genai_handler.local.gateway import LocalGateway
from genai_handler.local.identity import LocalIdentity
from genai_handler.local.spawn import Template

PROJECT_OCID = "ocid1.generativeaiproject.oc1.us-chicago-1.aaaalocalproject"


# Where API Gateway sends callers (policies/apigateway-deployment.json, under /genai): plain prompts, the
# OpenAI-compatible Responses API, and the stored responses and conversations an OpenAI SDK asks for.
DEPLOYED_ROUTES = {
    "/chat": ["POST"],
    "/v1/responses": ["POST"],
    "/v1/responses/{id}": ["GET", "DELETE"],
    "/v1/responses/{id}/input_items": ["GET"],
    "/v1/responses/{id}/cancel": ["POST"],
    "/v1/conversations": ["POST"],
    "/v1/conversations/{id}": ["GET", "POST", "DELETE"],
    "/v1/conversations/{id}/items": ["GET", "POST"],
    "/v1/conversations/{id}/items/{item_id}": ["GET", "DELETE"],
}


@pytest.fixture(scope="module")
def identity(tmp_path_factory: pytest.TempPathFactory) -> LocalIdentity:
    return LocalIdentity(tmp_path_factory.mktemp("identity"))


@pytest.fixture(scope="module")
def endpoint(identity: LocalIdentity) -> Iterator[LocalEndpoint]:
    with LocalEndpoint(trusted_issuer=identity.issuer_public_key, project_ocid=PROJECT_OCID) as server:
        yield server


@pytest.fixture
def rp_identity(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> LocalIdentity:
    """A fresh resource principal v2.2 in this process's environment, as OCI Functions sets it."""
    identity = LocalIdentity(tmp_path / "rp")
    for name, value in identity.env().items():
        monkeypatch.setenv(name, value)
    return identity


@pytest.fixture
def upstream(endpoint: LocalEndpoint) -> LocalEndpoint:
    """The module's endpoint, with no faults or recorded requests left over from other tests."""
    endpoint.reset()
    return endpoint


def wait_until_recorded(endpoint: LocalEndpoint, count: int, timeout_s: float = 10.0) -> bool:
    """Waits until `endpoint` has recorded `count` requests. It records a request when it answers, so
    one it was told to delay lands after the caller gave up: waited for here, it cannot land in the
    next test's record (xdist moves tests between workers, so any test may be next)."""
    until = time.monotonic() + timeout_s
    while len(endpoint.requests) < count and time.monotonic() < until:
        time.sleep(0.01)
    return len(endpoint.requests) >= count


def function_env(identity: LocalIdentity, endpoint: LocalEndpoint, **settings: str) -> dict[str, str]:
    """What OCI Functions would give the function: its identity plus the function config."""
    return {**identity.env(), "GENAI_PROJECT_OCID": PROJECT_OCID, "GENAI_BASE_URL": endpoint.base_url, **settings}


# The tests' function processes are forked from one interpreter per pytest process that imported the SDK
# once (genai_handler/local/spawn.py): a second of CPU saved on each of some fifty starts. The image's own
# start, a new interpreter, is tested by test_image and the bench.
TEMPLATE = Template()


def start_function(env: dict[str, str], log_path: Path, function_dir: Path = REPO_ROOT) -> FunctionProcess:
    log = open(log_path, "ab")  # noqa: SIM115  (closed with the process)
    function = FunctionProcess(env, function_dir=function_dir, python=sys.executable, log=log, template=TEMPLATE)
    function.start()
    return function


@pytest.fixture(scope="module")
def function_log(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("fn") / "function.log"


@pytest.fixture(scope="module")
def function(identity: LocalIdentity, endpoint: LocalEndpoint, function_log: Path) -> Iterator[FunctionProcess]:
    """func.py under the real fdk, shared by a test module: a warm container, as one answered call
    leaves it (the entrypoint builds the client before the fdk listens; the call opens the connection),
    so no test's deadline pays for what the first call would."""
    process = start_function(function_env(identity, endpoint), function_log)
    warm = process.invoke({"prompt": "warm?"})
    assert warm.http_status == 200, warm.body
    yield process
    process.stop()


@pytest.fixture(scope="module")
def agents_sdk() -> ModuleType:
    """The OpenAI Agents SDK, imported by the tests that run it: 1.5 s of every pytest process's
    collection if a test module imported it."""
    return importlib.import_module("agents")


@pytest.fixture
def misconfigured_function(
    identity: LocalIdentity, endpoint: LocalEndpoint, tmp_path: Path
) -> Iterator[FunctionProcess]:
    """func.py under the fdk with GENAI_PROJECT_OCID missing; its log is tmp_path / "log"."""
    env = function_env(identity, endpoint)
    del env["GENAI_PROJECT_OCID"]
    process = start_function(env, tmp_path / "log")
    yield process
    process.stop()


@functools.cache
def bench_module() -> ModuleType:
    """bench/bench.py (not a package), loaded once per process: its helpers are tested, and its staging of
    the image's /function is what the image tests build too."""
    spec = importlib.util.spec_from_file_location("bench_under_test", REPO_ROOT / "bench" / "bench.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while being defined
    spec.loader.exec_module(module)
    return module


def pytest_configure(config: pytest.Config) -> None:
    os.environ.setdefault("PYTHONDONTWRITEBYTECODE", "1")


def pytest_unconfigure(config: pytest.Config) -> None:
    TEMPLATE.close()


# `make test` hands whole modules to its workers (pytest-xdist --dist loadfile, so a module's
# function, endpoint and identity are built once), in collection order. These take longest
# (installs, virtualenvs, waits for deadlines), so they go first and no worker is left with one at the end.
LONGEST_FIRST = (  # seconds each took in one `make test` run, 2026-12-03
    "test_makefile.py",  # 56
    "test_e2e_faults.py",  # 52
    "test_local_gateway.py",  # 37
    "test_image.py",  # 34
    "test_upstream.py",  # 33
    "test_e2e_log_hygiene.py",  # 28
    "test_auth_oke.py",  # 27
    "test_e2e_operations.py",  # 27
    "test_e2e_fuzz.py",  # 24
    "test_doctor.py",  # 24
    "test_e2e_guardrails.py",  # 22
    "test_local_endpoint.py",  # 22
    "test_auth.py",  # 21
    "test_e2e_agents.py",  # 18
)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    first = {name: rank for rank, name in enumerate(LONGEST_FIRST)}
    items.sort(key=lambda item: first.get(item.path.name, len(first)))  # stable: the rest keep their order


@contextmanager
def token_gateway(
    identity: LocalIdentity, endpoint: LocalEndpoint, log_dir: Path, token: str
) -> Iterator[LocalGateway]:
    """The local API Gateway, requiring `token`, in front of the function against `endpoint`; the
    function's log goes to a file in `log_dir`, the gateway's console nowhere."""
    with (
        open(log_dir / "function.log", "ab") as log,
        LocalGateway(
            function_env(identity, endpoint), token=token, function_log=log, console=io.StringIO(), template=TEMPLATE
        ) as gw,
    ):
        yield gw
