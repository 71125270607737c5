"""`make run` (genai_handler.local.run), run as the Makefile runs it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from genai_handler.local.agent import REPO_ROOT, routes
from genai_handler.local.run import PROMPT_ENV
from genai_handler.settings import DEFAULT_MODEL

# A .env at the repo root would choose where make run's calls go.
no_dotenv = pytest.mark.skipif((REPO_ROOT / ".env").exists(), reason="a .env at the repo root chooses the upstream")


def _make_run(tmp_path: Path, prompt: str, **settings: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("GENAI_") and k != PROMPT_ENV}
    env.update({"PYTHONPATH": str(REPO_ROOT), "PYTHONUNBUFFERED": "1", **settings})
    return subprocess.run(
        [sys.executable, "-m", "genai_handler.local.run", "--prompt", prompt],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def _log_lines(stderr: str) -> list[dict]:
    return [json.loads(line) for line in stderr.splitlines() if line.startswith('{"call_id"')]


@no_dotenv
def test_given_a_prompt_when_make_run_runs_then_it_invokes_the_real_chat_route_and_prints(tmp_path: Path) -> None:
    # when
    done = _make_run(tmp_path, "hello route")
    # then
    assert done.returncode == 0, done.stderr
    [request_line] = [line for line in done.stderr.splitlines() if line.startswith("POST ")]
    route = request_line.split()[1]
    assert route in routes() and route.endswith("/chat")
    assert "local endpoint" in request_line  # where its calls went, as make serve says
    assert json.loads(done.stdout)["output_text"] == "Local answer to: hello route"


@no_dotenv
def test_given_genai_settings_in_the_environment_when_make_run_runs_then_it_honours_them_as_make_serve(
    tmp_path: Path,
) -> None:
    # given GENAI_* settings in the environment, as `GENAI_MODEL=... make run` sets them
    model = f"{DEFAULT_MODEL}-from-environment"
    # when
    done = _make_run(tmp_path, "a logged prompt", GENAI_MODEL=model, GENAI_LOG_PROMPTS="true")
    # then the function ran with them: its log line names that model and carries the prompt
    [line] = _log_lines(done.stderr)
    assert line["model"] == model and line["prompt"] == {"prompt": "a logged prompt"}


@no_dotenv
def test_given_a_prompt_from_make_and_one_from_the_flag_when_run_then_the_flag_wins(tmp_path: Path) -> None:
    # when the module runs with --prompt, inside a `make run` that passed PROMPT through the environment
    done = _make_run(tmp_path, "from the flag", **{PROMPT_ENV: "from make"})
    # then
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["output_text"] == "Local answer to: from the flag"
