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
from .contract import Request, texts
from .errors import HandlerError, InternalError, MethodNotAllowed, MisconfiguredError
from .request import parse
from .settings import Settings
from .upstream import Attempt, UpstreamResult, client_for, create_response, usage_counts

_DEADLINE_MARGIN_S = 1.0  # answer this long before the platform would kill the call
_DEFAULT_BUDGET_S = 30.0
# OCI Functions runs a call for at most 3600 s (detached; 300 s synchronous), so no real
# Fn-Deadline is further away: a later one is clamped rather than shortening a valid one.
_MAX_BUDGET_S = 3600.0
_OPENAI_ROUTE_SUFFIX = "/responses"
_BUG = "the function failed unexpectedly; see its logs by call id"
_settings: Settings | MisconfiguredError | None = None


def handle(ctx: context.InvokeContext, data: io.BytesIO | None = None) -> response.Response:
    """The fdk entrypoint (func.py re-exports it as `handler`)."""
    started = time.monotonic()
    openai_route = False
    try:
        openai_route = _is_openai_route(ctx)
        return _invoke(ctx, data, started, openai_route)
    except Exception:  # a bug while logging, shaping or diagnosing: still the documented shape
        error = InternalError(_BUG)
    # logged outside the except, so a failing log handler cannot print the bug's traceback
    logs.invocation(call_id=ctx.CallID(), status=error.status, error_type=error.type, error=error.message,
                    latency_ms=round((time.monotonic() - started) * 1000, 1))
    return _reply(ctx, None, None, error, openai_route)


def _invoke(ctx: context.InvokeContext, data: io.BytesIO | None, started: float, openai_route: bool) -> response.Response:
    began = time.time()
    deadline = started + _budget(ctx)
    body = data.getvalue() if data else b""
    settings: Settings | None = None
    request: Request | None = None
    sent: Request | None = None  # what reached the model: the only prompt ever logged
    result: UpstreamResult | None = None
    answer: dict[str, Any] | None = None
    error: HandlerError | None = None
    method = ctx.Method()  # None on a direct `fn invoke`; the caller's method via API Gateway
    if method is None and _is_doctor_request(body):
        return _doctor(ctx, started)  # before the settings: it explains a misconfiguration too
    trace = _trace_context(ctx)
    attempts: list[Attempt] = []
    screened: dict[str, Any] = {}  # the guardrails' verdict for the log line
    try:
        settings = load_settings()
        if method is not None and method.upper() != "POST":
            raise MethodNotAllowed("use POST with a JSON body")
        request = parse(body, settings)
        if settings.guardrails_on:
            from .guardrails import screen  # noqa: PLC0415  (off: never imported, nothing on the cold path)

            request = screen(client_for(settings), settings, request, deadline, screened)
        record = attempts.append if trace is not None else None
        sent = request
        result = create_response(client_for(settings), request.arguments(), deadline, settings.max_retries, record)
        # The OpenAI route answers OCI's JSON as received: dumping the SDK's model of an output
        # item it does not know warns, with the answer's text in the warning.
        answer = result.body if openai_route else shape(result)
    except HandlerError as exc:
        error = exc
    except Exception:  # a bug: answer in the documented shape; log nothing that could leak
        error = InternalError(_BUG)
    reply = _reply(ctx, answer, result.request_id if result else None, error, openai_route)
    traced: dict[str, str] = {}
    model = request.model if request else None
    if trace is not None:
        traced = _report_trace(ctx, trace, began, started, deadline, model, error, attempts)
    _log(ctx, started, settings, model, sent, result, error, traced, screened)
    return reply


def load_settings() -> Settings:
    """Settings read once per container; an invalid configuration is remembered as such."""
    global _settings
    if _settings is None:
        logs.configure()
        try:
            _settings = Settings.from_env()
        except MisconfiguredError as exc:
            _settings = exc
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


def _reply(
    ctx: context.InvokeContext,
    answer: dict[str, Any] | None,
    request_id: str | None,
    error: HandlerError | None,
    openai_route: bool,
) -> response.Response:
    headers = {"content-type": "application/json"}
    if error is None and answer is not None:
        status, body = 200, answer
    else:
        error = error or InternalError("the function produced no answer")
        status, body, request_id = error.status, error.to_openai_dict() if openai_route else error.to_dict(), error.request_id
        if error.retry_after is not None:
            headers["retry-after"] = str(error.retry_after)
        if isinstance(error, MethodNotAllowed):
            headers["allow"] = "POST"
    if request_id:
        headers["opc-request-id"] = request_id
        if openai_route:
            headers["x-request-id"] = request_id  # what the OpenAI SDKs expose as `_request_id`
    reply = response.Response(ctx, response_data=json.dumps(body), headers=headers, status_code=status)
    # Through API Gateway the caller's status travels in Fn-Http-Status, set just above. The socket
    # answer stays 200 (the fdk sends 4xx and 500 as 200 anyway): the Fn agent takes a socket 502
    # or 504 for a failed or timed-out function and drops this JSON body.
    reply.status_code = 200
    return reply


def _is_openai_route(ctx: context.InvokeContext) -> bool:
    """API Gateway routes .../v1/responses here for callers that use an OpenAI SDK."""
    url = ctx.RequestURL() or ""
    return url.split("?", 1)[0].rstrip("/").endswith(_OPENAI_ROUTE_SUFFIX)


def _is_doctor_request(body: bytes) -> bool:
    return body.strip() in (b'{"doctor": true}', b'{"doctor":true}')


def _doctor(ctx: context.InvokeContext, started: float) -> response.Response:
    """Diagnosis on a direct, IAM-authorised `fn invoke` only: API Gateway calls never get here."""
    from .doctor import diagnose  # noqa: PLC0415  (rarely used; keep it off the cold-start path)

    logs.configure()
    report = diagnose()
    failed = next((check["name"] for check in report["checks"] if not check["ok"]), None)
    logs.invocation(call_id=ctx.CallID(), doctor=True, status=200, failed_check=failed,
                    latency_ms=round((time.monotonic() - started) * 1000, 1))
    return response.Response(ctx, response_data=json.dumps(report), headers={"content-type": "application/json"})


def _trace_context(ctx: context.InvokeContext) -> context.TracingContext | None:
    """The fdk's tracing context when OCI wants this call's spans; None by default, at no cost."""
    trace = ctx.TracingContext()
    if trace is None or not trace.is_tracing_enabled() or not trace.is_sampled() or not trace.trace_collector_url():
        return None
    return trace


def _report_trace(
    ctx: context.InvokeContext,
    trace: context.TracingContext,
    began: float,
    started: float,
    deadline: float,
    model: str | None,
    error: HandlerError | None,
    attempts: list[Attempt],
) -> dict[str, str]:
    """Send the spans before answering (OCI may freeze the container right after), within a bound."""
    try:
        from . import tracing  # noqa: PLC0415  (only when tracing is on: off, the cold path never loads it)

        invocation = tracing.Invocation(
            call_id=ctx.CallID(), started=began, duration_s=time.monotonic() - started,
            status=error.status if error else 200, error_type=error.type if error else None, model=model,
            attempts=attempts,
        )
        return tracing.report(trace, invocation, bound_s=deadline - time.monotonic())
    except Exception:  # a trace that cannot be sent never fails the invocation
        return {"trace_report": "failed"}


def _budget(ctx: context.InvokeContext) -> float:
    """Seconds until Fn-Deadline, less a margin; the fdk itself never enforces it."""
    try:
        deadline = datetime.fromisoformat(str(ctx.Deadline()).replace("Z", "+00:00"))
        if deadline.tzinfo is None:
            deadline = deadline.replace(tzinfo=timezone.utc)
        seconds = (deadline - datetime.now(timezone.utc)).total_seconds()
    except (TypeError, ValueError, OverflowError):
        seconds = _DEFAULT_BUDGET_S
    return min(seconds, _MAX_BUDGET_S) - _DEADLINE_MARGIN_S


def _log(
    ctx: context.InvokeContext,
    started: float,
    settings: Settings | None,
    model: str | None,
    sent: Request | None,
    result: UpstreamResult | None,
    error: HandlerError | None,
    traced: dict[str, str],
    screened: dict[str, Any],
) -> None:
    prompts = settings is not None and settings.log_prompts
    answer = result.response if result else None
    logs.invocation(
        call_id=ctx.CallID(),
        **logs.caller_fields(ctx.HTTPHeaders().get(logs.CALLER_HEADER.lower())),  # gateway calls only
        **traced,
        request_id=result.request_id if result else error.request_id if error else None,
        model=model,
        status=error.status if error else 200,
        error_type=error.type if error else None,
        error=error.message if error else None,
        latency_ms=round((time.monotonic() - started) * 1000, 1),
        upstream_ms=round(result.latency_ms, 1) if result else None,
        attempts=result.attempts if result else None,
        guardrails=screened or None,
        usage=usage_counts(answer),
        prompt={text.at: text.text for text in texts(sent)} if prompts and sent else None,
        output_text=answer.output_text if prompts and answer else None,
    )
