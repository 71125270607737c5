"""One invocation, top to bottom: parse the body, call the model, shape the answer.

Every failure becomes a documented status and JSON error (see errors.py); nothing escapes to
the fdk, which would answer 502 with the exception's text.
"""

from __future__ import annotations

import io
import json
import time
from datetime import datetime, timezone
from typing import Any

from fdk import context, response

from . import logs
from .errors import HandlerError, InternalError, MethodNotAllowed, MisconfiguredError
from .request import build_arguments, parse_body
from .settings import Settings
from .upstream import UpstreamResult, client_for, create_response

_DEADLINE_MARGIN_S = 1.0  # answer this long before the platform would kill the call
_DEFAULT_BUDGET_S = 30.0
_settings: Settings | MisconfiguredError | None = None


def handle(ctx: context.InvokeContext, data: io.BytesIO | None = None) -> response.Response:
    """The fdk entrypoint (func.py re-exports it as `handler`)."""
    started = time.monotonic()
    deadline = started + _budget(ctx)
    settings: Settings | None = None
    arguments: dict[str, Any] = {}
    result: UpstreamResult | None = None
    try:
        settings = load_settings()
        if (ctx.Method() or "POST").upper() != "POST":
            raise MethodNotAllowed("use POST with a JSON body")
        arguments = build_arguments(parse_body(data.getvalue() if data else b"", settings), settings)
        result = create_response(client_for(settings), arguments, deadline, settings.max_retries)
        status, body, headers = 200, shape(result), {"opc-request-id": result.request_id or ""}
    except HandlerError as exc:
        status, body, headers = exc.status, exc.to_dict(), _error_headers(exc)
    except Exception:  # a bug: answer in the documented shape, log no details that could leak
        exc = InternalError("the function failed unexpectedly; see its logs by call id")
        status, body, headers = exc.status, exc.to_dict(), {}
    _log(ctx, started, status, body, settings, arguments, result)
    headers["content-type"] = "application/json"
    return response.Response(ctx, response_data=json.dumps(body), headers=headers, status_code=status)


def load_settings() -> Settings:
    """Settings read once per container; an invalid configuration is remembered as such."""
    global _settings
    if _settings is None:
        try:
            _settings = Settings.from_env()
        except MisconfiguredError as exc:
            _settings = exc
        logs.configure()
    if isinstance(_settings, MisconfiguredError):
        raise _settings
    return _settings


def shape(result: UpstreamResult) -> dict[str, Any]:
    """The caller's answer; `output_text` is an SDK property, so it is added by hand."""
    answer = result.response
    return {
        "id": answer.id,
        "model": answer.model,
        "status": answer.status,
        "output_text": answer.output_text,
        "usage": answer.usage.model_dump() if answer.usage else None,
        "incomplete_details": answer.incomplete_details.model_dump() if answer.incomplete_details else None,
        "request_id": result.request_id,
    }


def _budget(ctx: context.InvokeContext) -> float:
    """Seconds until Fn-Deadline, less a margin; the fdk itself never enforces it."""
    try:
        deadline = datetime.fromisoformat(str(ctx.Deadline()).replace("Z", "+00:00"))
        if deadline.tzinfo is None:
            deadline = deadline.replace(tzinfo=timezone.utc)
        seconds = (deadline - datetime.now(timezone.utc)).total_seconds()
    except (TypeError, ValueError):
        seconds = _DEFAULT_BUDGET_S
    return seconds - _DEADLINE_MARGIN_S


def _error_headers(exc: HandlerError) -> dict[str, str]:
    headers = {}
    if exc.request_id:
        headers["opc-request-id"] = exc.request_id
    if exc.retry_after is not None:
        headers["retry-after"] = str(exc.retry_after)
    if isinstance(exc, MethodNotAllowed):
        headers["allow"] = "POST"
    return headers


def _log(
    ctx: context.InvokeContext,
    started: float,
    status: int,
    body: dict[str, Any],
    settings: Settings | None,
    arguments: dict[str, Any],
    result: UpstreamResult | None,
) -> None:
    error = body.get("error")
    prompts = settings is not None and settings.log_prompts
    logs.configure()
    logs.invocation(
        call_id=ctx.CallID(),
        request_id=body.get("request_id") or (error or {}).get("request_id"),
        model=arguments.get("model"),
        status=status,
        error_type=error["type"] if error else None,
        error=error["message"] if error else None,
        latency_ms=round((time.monotonic() - started) * 1000, 1),
        upstream_ms=round(result.latency_ms, 1) if result else None,
        attempts=result.attempts if result else None,
        usage=body.get("usage"),
        input=arguments.get("input") if prompts else None,
        instructions=arguments.get("instructions") if prompts else None,
        output_text=body.get("output_text") if prompts else None,
    )
