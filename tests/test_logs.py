"""genai_handler.logs: one JSON line per invocation, third-party loggers quiet."""

from __future__ import annotations

import json
import logging
import warnings

import pytest

from genai_handler import logs


def test_given_a_debug_root_when_configured_then_third_party_loggers_stop_at_warning() -> None:
    # given
    logging.getLogger().setLevel(logging.DEBUG)  # what importing fdk does
    # when
    logs.configure()
    # then
    for name in ("openai", "httpx", "httpx2", "httpcore", "httpcore2", "oci"):
        assert not logging.getLogger(name).isEnabledFor(logging.INFO), name


def test_given_an_empty_field_when_an_invocation_is_logged_then_it_is_one_json_line_without_it(
    capsys: pytest.CaptureFixture[str],
) -> None:
    # given
    logs.logger.handlers.clear()
    logs.configure()
    # when
    logs.invocation(call_id="c1", status=200, error=None, model="m")
    # then
    [line] = capsys.readouterr().err.splitlines()
    assert json.loads(line) == {"call_id": "c1", "status": 200, "model": "m"}


def test_given_configure_when_called_twice_then_one_handler_is_installed() -> None:
    # when
    logs.configure()
    logs.configure()
    # then
    ours = [h for h in logs.logger.handlers if type(h) is logging.StreamHandler]
    assert len(ours) == 1 and logs.logger.propagate is False


def test_given_a_python_warning_when_logged_then_it_is_one_json_line_without_its_text(
    capsys: pytest.CaptureFixture[str],
) -> None:
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


def test_given_a_failing_log_handler_when_an_invocation_is_logged_then_no_traceback_is_printed(
    capsys: pytest.CaptureFixture[str],
) -> None:
    # given
    logs.logger.handlers.clear()
    logs.configure()

    class Broken(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            try:
                raise OSError("disk gone")
            except OSError:
                self.handleError(record)

    logs.logger.addHandler(Broken())
    # when
    try:
        raise ValueError("a bug's secret text")
    except ValueError:
        logs.invocation(call_id="c1", status=500)
    # then
    assert "secret" not in capsys.readouterr().err


@pytest.mark.parametrize("subject", ["ocid1.user.oc1..aaaaexample", "alice@example.com", "José Müller", "a" * 255])
def test_given_a_plausible_caller_when_logged_then_it_is_kept_as_it_is(subject: str) -> None:
    # when / then
    assert logs.caller_fields(subject) == {"caller": subject}


@pytest.mark.parametrize("value", [None, "", []])
def test_given_no_caller_header_when_logged_then_there_is_no_caller(value: object) -> None:
    # when / then
    assert logs.caller_fields(value) == {}


def test_given_a_caller_sent_twice_when_logged_then_it_is_the_last_one_as_overwrite_leaves_it() -> None:
    # when / then
    assert logs.caller_fields(["forged", "alice"]) == {"caller": "alice"}


def test_given_a_hostile_caller_when_logged_then_it_is_cut_escaped_and_flagged(
    capsys: pytest.CaptureFixture[str],
) -> None:
    # given a caller value with a fake log line, terminal escapes, a bidi override and 10 kB of padding
    hostile = 'bob\n{"call_id": "forged", "status": 200}\x1b[2J\u202egnp.exe' + "x" * 10_000
    # when it is logged
    fields = logs.caller_fields(hostile)
    logs.logger.handlers.clear()
    logs.configure()
    logs.invocation(call_id="c1", **fields)
    # then it is one line, flagged, with every non-printable character escaped and at most 255 characters kept
    [line] = capsys.readouterr().err.splitlines()
    logged = json.loads(line)
    assert logged["caller_malformed"] is True
    assert logged["caller"].startswith('bob\\u000a{"call_id": "forged", "status": 200}\\u001b[2J\\u202egnp.exe')
    assert "\n" not in logged["caller"] and "\x1b" not in line and "\u202e" not in line
    assert logged["caller"].endswith("x") and len(logged["caller"]) == 255 + 3 * 5  # three escapes, 6 chars for 1
    assert len(line) < 600


def test_given_a_caller_over_255_characters_when_logged_then_it_is_cut_and_flagged() -> None:
    # when / then
    assert logs.caller_fields("a" * 256) == {"caller": "a" * 255, "caller_malformed": True}


def test_given_a_non_printable_caller_beyond_the_basic_plane_when_logged_then_it_is_escaped_in_full() -> None:
    # when / then
    assert logs.caller_fields("bob\U000e0001") == {"caller": "bob\\U000e0001", "caller_malformed": True}


def test_given_caller_chosen_unprintable_characters_anywhere_when_logged_then_they_are_escaped(
    capsys: pytest.CaptureFixture[str],
) -> None:
    # given
    logs.logger.handlers.clear()
    logs.configure()
    # when
    logs.invocation(error="unknown field(s) a\u2028b\u202ec\x85", prompt={"input\u2029": "line one\nline two\u200f"})
    # then
    raw = capsys.readouterr().err.strip()
    for character in ("\u2028", "\u2029", "\u202e", "\x85", "\u200f"):
        assert character not in raw
    line = json.loads(raw)
    assert line["error"] == "unknown field(s) a\\u2028b\\u202ec\\u0085"
    assert line["prompt"] == {"input\\u2029": "line one\nline two\\u200f"}  # newlines are JSON's to escape


def test_given_mixed_text_when_made_printable_then_printable_text_is_left_and_the_rest_escaped() -> None:
    # when / then
    assert logs.printable("héllo wörld 日本 😀") == "héllo wörld 日本 😀"
    assert logs.printable("a\u202eb\U000e0001") == "a\\u202eb\\U000e0001"
    assert logs.printable("tab\tnew\nline") == "tab\tnew\nline"
    assert logs.printable("tab\t", keep="") == "tab\\u0009"
