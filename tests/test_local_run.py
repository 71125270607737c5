"""`make run` (genai_handler.local.run), run as the Makefile runs it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from genai_handler.local.agent import REPO_ROOT, routes
from genai_handler.settings import DEFAULT_MODEL


def _make_run(tmp_path: Path, prompt: str, **settings: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("GENAI_")}
    env.update({"PYTHONPATH": str(REPO_ROOT), "PYTHONUNBUFFERED": "1", **settings})
    return subprocess.run(
        [sys.executable, "-m", "genai_handler.local.run", "--prompt", prompt],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120,
    )


def _log_lines(stderr: str) -> list[dict]:
    return [json.loads(line) for line in stderr.splitlines() if line.startswith('{"call_id"')]


@pytest.mark.skipif((REPO_ROOT / ".env").exists(), reason="a .env at the repo root would choose where make run's calls go")
def test_make_run_prints_and_invokes_the_real_chat_route(tmp_path: Path) -> None:
    done = _make_run(tmp_path, "hello route")
    assert done.returncode == 0, done.stderr
    [request_line] = [line for line in done.stderr.splitlines() if line.startswith("POST ")]
    route = request_line.split()[1]
    assert route in routes() and route.endswith("/chat")
    assert "local endpoint" in request_line  # where its calls went, as make serve says
    assert json.loads(done.stdout)["output_text"] == "Local answer to: hello route"


@pytest.mark.skipif((REPO_ROOT / ".env").exists(), reason="a .env at the repo root would choose where make run's calls go")
def test_make_run_honours_genai_settings_from_the_environment_as_make_serve_does(tmp_path: Path) -> None:
    # given GENAI_* settings in the environment, as `GENAI_MODEL=... make run` sets them
    model = f"{DEFAULT_MODEL}-from-environment"
    done = _make_run(tmp_path, "a logged prompt", GENAI_MODEL=model, GENAI_LOG_PROMPTS="true")
    # then the function ran with them: its log line names that model and carries the prompt
    [line] = _log_lines(done.stderr)
    assert line["model"] == model and line["input"] == "a logged prompt"
