"""genai_handler.logs: one JSON line per invocation, third-party loggers quiet."""

from __future__ import annotations

import json
import logging

import pytest

from genai_handler import logs


def test_third_party_loggers_stop_at_warning_even_under_a_debug_root() -> None:
    logging.getLogger().setLevel(logging.DEBUG)  # what importing fdk does
    logs.configure()
    for name in ("openai", "httpx", "httpx2", "httpcore", "httpcore2", "oci"):
        assert not logging.getLogger(name).isEnabledFor(logging.INFO), name


def test_invocation_is_one_json_line_without_empty_fields(capsys: pytest.CaptureFixture[str]) -> None:
    logs.logger.handlers.clear()
    logs.configure()
    logs.invocation(call_id="c1", status=200, error=None, model="m")
    [line] = capsys.readouterr().err.splitlines()
    assert json.loads(line) == {"call_id": "c1", "status": 200, "model": "m"}


def test_configure_is_idempotent() -> None:
    logs.configure()
    logs.configure()
    ours = [h for h in logs.logger.handlers if type(h) is logging.StreamHandler]
    assert len(ours) == 1 and logs.logger.propagate is False
