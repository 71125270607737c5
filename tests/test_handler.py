"""genai_handler.handler, in-process with the fdk's own InvokeContext (end to end: test_function_e2e)."""

from __future__ import annotations

import io
import json
from datetime import datetime, timedelta, timezone

import pytest
from fdk.context import InvokeContext

from genai_handler import handler
from genai_handler.settings import Settings

SETTINGS = Settings(project_ocid="ocid1.generativeaiproject.oc1.us-chicago-1.aaaa", base_url="http://127.0.0.1:9/openai/v1")


def _status(reply) -> int:
    """What API Gateway answers the caller: Fn-Http-Status (the socket status is always 200)."""
    assert reply.status() == 200
    return int(reply.context().GetResponseHeaders()["fn-http-status"])


def _ctx(deadline: str | None = None, method: str | None = "POST", url: str = "/genai/chat") -> InvokeContext:
    headers = {"fn-call-id": "call-1"}
    if method is not None:
        headers.update({"fn-intent": "httprequest", "fn-http-method": method, "fn-http-request-url": url})
    return InvokeContext("app", "app", "fn", "fn", "call-1", deadline=deadline, headers=headers,
                         method=method, request_url=url if method else None, fn_format="http-stream")


@pytest.fixture(autouse=True)
def settings(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(handler, "_settings", SETTINGS)


def test_the_budget_is_the_time_to_fn_deadline_less_the_margin() -> None:
    deadline = (datetime.now(timezone.utc) + timedelta(seconds=20)).isoformat().replace("+00:00", "Z")
    assert 18.5 < handler._budget(_ctx(deadline)) < 19.1


def test_without_fn_deadline_the_fdk_default_applies() -> None:
    assert 28 < handler._budget(_ctx(None)) < 29.1


def test_a_bug_becomes_internal_error_without_its_text(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    def broken(*_: object) -> None:
        raise RuntimeError("secret-token /etc/private.pem")

    monkeypatch.setattr(handler, "build_arguments", broken)
    reply = handler.handle(_ctx(), io.BytesIO(b'{"prompt": "hi"}'))
    assert _status(reply) == 500
    assert json.loads(reply.body())["error"]["type"] == "internal_error"
    assert "secret-token" not in reply.body() and "secret-token" not in capsys.readouterr().err


def test_openai_route_errors_use_the_openai_shape() -> None:
    reply = handler.handle(_ctx(url="/genai/v1/responses"), io.BytesIO(b'{"input": ""}'))
    error = json.loads(reply.body())["error"]
    assert set(error) == {"message", "type", "param", "code"} and error["code"] == "invalid_request"


def test_doctor_is_not_reachable_through_the_gateway() -> None:
    reply = handler.handle(_ctx(), io.BytesIO(b'{"doctor": true}'))
    assert _status(reply) == 400


def test_misconfiguration_is_remembered_and_reported(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(handler, "_settings", None)
    monkeypatch.delenv("GENAI_PROJECT_OCID", raising=False)
    for _ in range(2):
        reply = handler.handle(_ctx(), io.BytesIO(b'{"prompt": "hi"}'))
        assert _status(reply) == 500 and "GENAI_PROJECT_OCID" in reply.body()


def test_the_package_exports_what_it_lists() -> None:
    import genai_handler

    assert sorted(genai_handler.__all__) == sorted(genai_handler._EXPORTS)
    for name in genai_handler.__all__:
        assert getattr(genai_handler, name).__name__ == name
