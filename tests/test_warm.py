"""genai_handler.warm, the container's entrypoint: the first call's work is done before the fdk listens,
and nothing that fails there stops the container or changes what a call answers."""

from __future__ import annotations

import io
import json
import os
import shutil
import sys
from pathlib import Path

import pytest
from fdk import customer_code
from fdk.context import InvokeContext

from genai_handler import handler, warm
from genai_handler.local.agent import REPO_ROOT, Invocation, image_entrypoint
from genai_handler.local.endpoint import LocalEndpoint
from genai_handler.local.identity import LocalIdentity

from .conftest import function_env, start_function


def _lines(log: Path) -> list[dict[str, object]]:
    return [json.loads(line) for line in log.read_text().splitlines() if line.startswith("{")]


def _warm_lines(log: Path) -> list[dict[str, object]]:
    return [line for line in _lines(log) if line.get("event") == "warm"]


@pytest.fixture
def log(tmp_path: Path) -> Path:
    return tmp_path / "function.log"


def _first_answer(env: dict[str, str], log: Path) -> Invocation:
    """A container started with `env`, its first call's answer, and the container stopped."""
    function = start_function(env, log)
    try:
        return function.invoke({"prompt": "hi"})
    finally:
        function.stop()


def test_given_the_images_entrypoint_when_read_then_it_is_the_warm_module_before_the_fdk() -> None:
    # when
    entrypoint = image_entrypoint(REPO_ROOT)
    # then the Dockerfile starts the warm module, which hands over to the fdk with the fdk's own arguments
    assert entrypoint == ["python3.12", "-m", "genai_handler.warm", "/function/func.py", "handler"]


def test_given_a_directory_without_a_dockerfile_when_read_then_it_is_the_fn_clis_default(tmp_path: Path) -> None:
    # when / then: what `fn build` writes for `runtime: python` (fnproject/cli langs/python.go)
    assert image_entrypoint(tmp_path) == ["/python/bin/fdk", "/function/func.py", "handler"]


def test_given_a_container_when_it_listens_then_the_client_is_already_built(
    identity: LocalIdentity, endpoint: LocalEndpoint, log: Path
) -> None:
    # given / when the container has started (the agent returns once the fdk listens)
    function = start_function(function_env(identity, endpoint), log)
    try:
        # then the warm-up ended, ready, before the socket opened: its line is already written
        [line] = _warm_lines(log)
        assert isinstance(line["warm_ms"], float) and "error_type" not in line
        # and the first call answers as any
        assert function.invoke({"prompt": "first"}).json()["output_text"] == "Local answer to: first"
    finally:
        function.stop()


def test_given_a_misconfigured_function_when_started_then_it_listens_and_the_first_call_gets_the_documented_error(
    identity: LocalIdentity, endpoint: LocalEndpoint, log: Path
) -> None:
    # given GENAI_PROJECT_OCID missing
    env = function_env(identity, endpoint)
    del env["GENAI_PROJECT_OCID"]
    # when
    answer = _first_answer(env, log)
    # then the container started, said why it is not ready, and the call got the JSON contract's answer
    [line] = _warm_lines(log)
    assert line["error_type"] == "misconfigured"
    assert "GENAI_PROJECT_OCID" in str(line["error"])
    assert answer.http_status == 500
    assert answer.json()["error"]["type"] == "misconfigured"


def test_given_broken_credentials_when_started_then_the_call_reports_them_as_before(
    identity: LocalIdentity, endpoint: LocalEndpoint, log: Path, tmp_path: Path
) -> None:
    # given a key file that is not a key
    env = function_env(identity, endpoint)
    broken = tmp_path / "broken.pem"
    broken.write_text("not a key")
    env["OCI_RESOURCE_PRINCIPAL_PRIVATE_PEM"] = str(broken)
    # when
    answer = _first_answer(env, log)
    # then
    [line] = _warm_lines(log)
    assert line["error_type"] == "misconfigured"
    assert "not a key" not in log.read_text()
    assert answer.http_status == 500 and answer.json()["error"]["type"] == "misconfigured"


def test_given_a_func_py_that_fails_to_import_when_started_then_the_container_still_listens(
    identity: LocalIdentity, endpoint: LocalEndpoint, log: Path, tmp_path: Path
) -> None:
    # given the image's layout with a func.py that raises, its message holding a secret
    function_dir = tmp_path / "function"
    function_dir.mkdir()
    shutil.copy(REPO_ROOT / "Dockerfile", function_dir)
    os.symlink(REPO_ROOT / "genai_handler", function_dir / "genai_handler")
    (function_dir / "func.py").write_text("raise RuntimeError('s3cret in a message')\n")
    # when
    function = start_function(function_env(identity, endpoint), log, function_dir)
    try:
        alive = function.alive()
    finally:
        function.stop()
    # then it listened anyway, and logged the failure's kind only
    assert alive
    [line] = _warm_lines(log)
    assert (line["error_type"], line["error"]) == ("internal_error", "RuntimeError")
    assert "s3cret" not in json.dumps(line)


def test_given_a_warm_call_in_process_when_the_handler_runs_then_it_uses_the_module_the_fdk_imported(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # given a func.py loaded by the fdk's own delayed loader, and a prepare() that records its call
    prepared: list[bool] = []
    logged: list[dict[str, object]] = []
    monkeypatch.setattr(handler, "prepare", lambda: prepared.append(True))
    monkeypatch.setattr(warm.logs, "invocation", lambda **fields: logged.append(fields))
    code = customer_code.Function(str(REPO_ROOT / "func.py"), entrypoint="handler")
    # when
    warm.warm(code)
    # then func.py was imported by that loader (the fdk finds it so), prepare ran, and one line says ready
    assert prepared == [True]
    assert code._delayed_module_class.executed
    assert code.handler() is handler.handle
    [line] = logged
    assert line["event"] == "warm" and "error_type" not in line


@pytest.mark.parametrize(
    ("argv", "message"),
    [([], "usage: python -m genai_handler.warm"), (["/nowhere/func.py"], "Module: /nowhere/func.py doesn't exist")],
    ids=["no arguments", "no such func.py"],
)
def test_given_wrong_arguments_when_run_then_it_exits_as_the_fdk_would(argv: list[str], message: str) -> None:
    # when / then
    with pytest.raises(SystemExit) as exited:
        warm.main(argv)
    assert str(exited.value.code).startswith(message)


def test_given_the_handler_after_prepare_when_called_then_the_answer_is_unchanged(
    identity: LocalIdentity, endpoint: LocalEndpoint, monkeypatch: pytest.MonkeyPatch
) -> None:
    # given the function's environment in this process, prepared as the entrypoint prepares it
    for name, value in function_env(identity, endpoint).items():
        monkeypatch.setenv(name, value)
    monkeypatch.setattr(handler, "_settings", None)
    endpoint.reset()
    opened = endpoint.connections_opened
    handler.prepare()
    # (the warm-up rehearses a request in process: nothing reaches OCI, no connection is opened)
    assert endpoint.requests == [] and endpoint.connections_opened == opened
    headers = {"fn-intent": "httprequest", "fn-http-method": "POST", "fn-http-h-x-genai-caller": "alice"}
    ctx = InvokeContext(
        "app",
        "app",
        "fn",
        "fn",
        "call",
        headers=headers,
        method="POST",
        request_url="/genai/chat",
        fn_format="http-stream",
    )
    # when
    reply = handler.handle(ctx, io.BytesIO(b'{"prompt": "after prepare"}'))
    # then
    assert json.loads(reply.body())["output_text"] == "Local answer to: after prepare"
    assert sys.modules["genai_handler.handler"] is handler
