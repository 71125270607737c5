"""genai_handler.logs: one JSON line per invocation, third-party loggers quiet."""

from __future__ import annotations

import json
import logging
import warnings

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


def test_a_python_warning_becomes_one_json_line_without_its_text(capsys: pytest.CaptureFixture[str]) -> None:
    # given our logging is configured, when code warns with data in the message
    logs.logger.handlers.clear()
    with warnings.catch_warnings():
        warnings.simplefilter("always")
        logs.configure()
        warnings.warn("serialized value: the model's secret answer", UserWarning, stacklevel=1)
    # then one JSON line names the category and place, and the text is not logged
    [line] = capsys.readouterr().err.splitlines()
    fields = json.loads(line)
    assert fields["warning"] == "UserWarning" and fields["where"].startswith(__file__)
    assert "secret answer" not in line


def test_a_failing_log_handler_prints_no_traceback(capsys: pytest.CaptureFixture[str]) -> None:
    logs.logger.handlers.clear()
    logs.configure()

    class Broken(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            try:
                raise OSError("disk gone")
            except OSError:
                self.handleError(record)

    logs.logger.addHandler(Broken())
    try:
        raise ValueError("a bug's secret text")
    except ValueError:
        logs.invocation(call_id="c1", status=500)
    assert "secret" not in capsys.readouterr().err
