"""One invocation, top to bottom: parse the body, screen it, call the model, shape the answer.

Every failure becomes a documented status and JSON error (errors.py): nothing escapes to the fdk, which
would answer 502 with the exception's text. Names: `response` is what a server sent, `answer` the
caller's JSON, `reply` the fdk Response; `_mono` clocks are time.monotonic(), `_at` ones time.time().
"""

from __future__ import annotations

import io
import json
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from fdk import context
from fdk import response as fdk_response

from . import logs, stored
from .contract import Request, texts
from .errors import HandlerError, InternalError, InvalidRequest, MethodNotAllowed, MisconfiguredError
from .request import parse
from .settings import MAX_DETACHED_CALL_S, Settings
from .upstream import (
    REQUEST_ID_HEADER,
    Attempt,
    StoredResult,
    StreamResult,
    UpstreamResult,
    client_for,
    create_response,
    stream_response,
    usage_counts,
)
from .upstream import prepare as prepare_client  # handler.prepare is the entrypoint's

_DEADLINE_MARGIN_S = 1.0  # answer this long before the platform would kill the call
_DEFAULT_BUDGET_S = 30.0
# No real Fn-Deadline is further away than the longest call: a later one is clamped, a valid one kept.
_MAX_BUDGET_S = MAX_DETACHED_CALL_S
_OPENAI_ROUTE_SUFFIX = "/responses"
_JSON_HEADERS = {"content-type": "application/json"}  # copied for each reply, which adds its own
_EVENT_STREAM = "text/event-stream"
_STREAM_ON_OPENAI_ROUTE = (
    "stream must be false here: streaming is offered on the OpenAI-compatible route (/v1/responses)"
)
_BUG = "the function failed unexpectedly; see its logs by call id"
_settings: Settings | MisconfiguredError | None = None


@dataclass
class _Call:
    """What one invocation learns on its way, for its trace and its log line."""

    start_mono: float
    start_at: float
    deadline_mono: float
    openai_route: bool
    trace: context.TracingContext | None
    caller: str | None = None  # the gateway's X-Genai-Caller
    route: stored.Route | None = None  # a stored response or conversation's route
    kept: StoredResult | None = None  # what OCI answered on that route
    settings: Settings | None = None
    model: str | None = None
    sent: Request | None = None  # what reached the model: the only prompt ever logged
    result: UpstreamResult | StreamResult | None = None
    error: HandlerError | None = None
    screened: dict[str, Any] = field(default_factory=dict)  # the guardrails' verdict for the log line
    attempts: list[Attempt] = field(default_factory=list)

    @property
    def status(self) -> int:
        return self.error.status if self.error else 200

    @property
    def request_id(self) -> str | None:
        """OCI's id of the call that answered: the model's, or a stored object's."""
        return self.result.request_id if self.result else self.kept.request_id if self.kept else None

    @property
    def failure(self) -> HandlerError | None:
        """The error to log and trace: the call's, or what ended a stream answered 200 (its closing event)."""
        return self.error or (self.result.failure if isinstance(self.result, StreamResult) else None)


def handle(ctx: context.InvokeContext, data: io.BytesIO | None = None) -> fdk_response.Response:
    """The fdk entrypoint (func.py re-exports it as `handler`)."""
    start_mono = time.monotonic()
    openai_route = False
    try:
        route = stored.match(ctx.RequestURL())
        openai_route = route is not None or _is_openai_route(ctx)
        return _invoke(ctx, data, start_mono, openai_route, route)
    except Exception:  # a bug while logging, shaping or diagnosing: still the documented shape
        error = InternalError(_BUG)
    # logged outside the except, so a failing log handler cannot print the bug's traceback
    logs.invocation(
        call_id=ctx.CallID(),
        status=error.status,
        error_type=error.type,
        error=error.message,
        latency_ms=logs.ms_since(start_mono),
    )
    return _reply(ctx, None, None, error, openai_route)


def _invoke(
    ctx: context.InvokeContext,
    data: io.BytesIO | None,
    start_mono: float,
    openai_route: bool,
    route: stored.Route | None,
) -> fdk_response.Response:
    start_at, deadline_mono = time.time(), start_mono + _budget(ctx)
    body = data.getvalue() if data else b""
    method = ctx.Method()  # None on a direct `fn invoke`; the caller's method via API Gateway
    if method is None and _is_doctor_request(body):
        return _doctor(ctx, start_mono)  # before the settings: it explains a misconfiguration too
    caller = ctx.HTTPHeaders().get(logs.CALLER_HEADER.lower())
    call = _Call(start_mono, start_at, deadline_mono, openai_route, _trace_context(ctx), caller, route)
    answer = _answer(call, method, body)
    reply = _reply(ctx, answer, call.request_id, call.error, openai_route)
    traced = _report_trace(ctx, call.trace, call) if call.trace is not None else {}
    _log(ctx, call, traced)
    return reply


def _answer(call: _Call, method: str | None, body: bytes) -> dict[str, Any] | bytes | None:
    """Parse, screen, call the model, shape: the caller's answer (for `stream: true`, OCI's events as one
    text/event-stream body: docs/streaming.md), or None with `call.error` set."""
    try:
        settings = call.settings = load_settings()
        if call.route is not None:
            return _kept(call, settings, (method or "POST").upper(), body)
        if method is not None and method.upper() != "POST":
            raise MethodNotAllowed("use POST with a JSON body")
        request = parse(body, settings)
        call.model = request.model
        if request.stream and not call.openai_route:  # the events are the Responses API's, not this route's
            raise InvalidRequest(_STREAM_ON_OPENAI_ROUTE)
        if settings.guardrails_on:
            from .guardrails import screen  # noqa: PLC0415  (off: never imported, nothing on the cold path)

            request = screen(client_for(settings), settings, request, call.deadline_mono, call.screened)
        call.sent = request
        record = call.attempts.append if call.trace is not None else None
        arguments = stored.create_arguments(
            client_for(settings), request, call.caller, method is not None, call.deadline_mono
        )
        if request.stream:
            stream = call.result = stream_response(
                client_for(settings), arguments, call.deadline_mono, settings.max_retries, record
            )
            return stream.body
        call.result = create_response(client_for(settings), arguments, call.deadline_mono, settings.max_retries, record)
        # The OpenAI route answers OCI's JSON as received: dumping the SDK's model of an output
        # item it does not know warns, with the answer's text in the warning.
        return call.result.body if call.openai_route else shape(call.result)
    except HandlerError as exc:
        call.error = exc
    except Exception:  # a bug: answer in the documented shape; log nothing that could leak
        call.error = InternalError(_BUG)
    return None


def _kept(call: _Call, settings: Settings, method: str, body: bytes) -> dict[str, Any]:
    """A stored response or conversation's route, for its owner: OCI's JSON as answered."""
    assert call.route is not None  # noqa: S101  (for the type checker: _answer routes here only then)
    owner = stored.owner_of(call.caller, via_gateway=True)
    client = client_for(settings)

    def screened(request: Request) -> Request:
        if not settings.guardrails_on:
            return request
        from .guardrails import screen  # noqa: PLC0415  (off: never imported)

        return screen(client, settings, request, call.deadline_mono, call.screened)

    call.kept = stored.serve(client, settings, call.route, method, body, owner, call.deadline_mono, screened)
    return call.kept.body


def prepare() -> None:
    """What the first call would build, built now (warm.py, before the fdk listens); the optional
    modules the settings turn on are imported too. Raises what the first call would report."""
    settings = load_settings()
    prepare_client(settings)
    if settings.guardrails_on:
        from . import guardrails  # noqa: F401, PLC0415  (on: imported now rather than on the first call)


def load_settings() -> Settings:
    """Settings read once per container; an invalid configuration is remembered as such."""
    global _settings  # noqa: PLW0603  (per-container cache; tests reset it)
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
    """The caller's answer on the plain route."""
    response = result.response
    return {
        "id": response.id,
        "model": response.model,
        "status": response.status,
        "output_text": response.output_text,
        "usage": response.usage,
        "incomplete_details": response.incomplete_details,
        "request_id": result.request_id,
    }


def _reply(
    ctx: context.InvokeContext,
    answer: dict[str, Any] | bytes | None,
    request_id: str | None,
    error: HandlerError | None,
    openai_route: bool,
) -> fdk_response.Response:
    headers = dict(_JSON_HEADERS)
    data: str | bytes
    if error is None and answer is not None:
        status, body = 200, answer
    else:
        error = error or InternalError("the function produced no answer")
        status, request_id = error.status, error.request_id
        body = error.to_openai_dict() if openai_route else error.to_dict()
        if error.retry_after is not None:
            headers["retry-after"] = str(error.retry_after)
        if isinstance(error, MethodNotAllowed):
            headers["allow"] = ", ".join(error.allow)
    if isinstance(body, bytes):
        headers["content-type"], data = _EVENT_STREAM, body
    else:
        data = json.dumps(body)
    if request_id:
        headers[REQUEST_ID_HEADER] = request_id
        if openai_route:
            headers["x-request-id"] = request_id  # what the OpenAI SDKs expose as `_request_id`
    reply = fdk_response.Response(ctx, response_data=data, headers=headers, status_code=status)
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


def _doctor(ctx: context.InvokeContext, start_mono: float) -> fdk_response.Response:
    """Diagnosis on a direct, IAM-authorised `fn invoke` only: API Gateway calls never get here."""
    from .doctor import diagnose  # noqa: PLC0415  (rarely used; keep it off the cold-start path)

    logs.configure()
    report = diagnose()
    failed = next((check["name"] for check in report["checks"] if not check["ok"]), None)
    logs.invocation(
        call_id=ctx.CallID(), doctor=True, status=200, failed_check=failed, latency_ms=logs.ms_since(start_mono)
    )
    return fdk_response.Response(ctx, response_data=json.dumps(report), headers=dict(_JSON_HEADERS))


def _trace_context(ctx: context.InvokeContext) -> context.TracingContext | None:
    """The fdk's tracing context when OCI wants this call's spans; None by default, at no cost."""
    trace = ctx.TracingContext()
    if trace is None or not trace.is_tracing_enabled() or not trace.is_sampled() or not trace.trace_collector_url():
        return None
    return trace


def _report_trace(ctx: context.InvokeContext, trace: context.TracingContext, call: _Call) -> dict[str, str]:
    """Send the spans before answering (OCI may freeze the container right after), within a bound."""
    try:
        from . import tracing  # noqa: PLC0415  (only when tracing is on: off, the cold path never loads it)

        invocation = tracing.Invocation(
            call_id=ctx.CallID(),
            start_at=call.start_at,
            duration_s=time.monotonic() - call.start_mono,
            status=call.status,
            error_type=call.failure.type if call.failure else None,
            model=call.model,
            attempts=call.attempts,
        )
        return tracing.report(trace, invocation, bound_s=call.deadline_mono - time.monotonic())
    except Exception:  # a trace that cannot be sent never fails the invocation
        return {"trace_report": "failed"}


def _budget(ctx: context.InvokeContext) -> float:
    """Seconds until Fn-Deadline, less a margin; the fdk itself never enforces it."""
    try:
        deadline = datetime.fromisoformat(str(ctx.Deadline()).replace("Z", "+00:00"))
        if deadline.tzinfo is None:
            deadline = deadline.replace(tzinfo=UTC)
        seconds = (deadline - datetime.now(UTC)).total_seconds()
    except (TypeError, ValueError, OverflowError):
        seconds = _DEFAULT_BUDGET_S
    return min(seconds, _MAX_BUDGET_S) - _DEADLINE_MARGIN_S


def _log(ctx: context.InvokeContext, call: _Call, traced: dict[str, str]) -> None:
    prompts = call.settings is not None and call.settings.log_prompts
    result, error = call.result, call.failure
    response = result.response if result else None
    streamed = isinstance(result, StreamResult)
    logs.invocation(
        call_id=ctx.CallID(),
        **logs.caller_fields(call.caller),  # gateway calls only
        **traced,
        route=f"{call.route.template}" if call.route else None,
        request_id=call.request_id or (error.request_id if error else None),
        model=call.model,
        status=call.status,
        stream=streamed or None,
        error_type=error.type if error else None,
        error=error.message if error else None,
        latency_ms=logs.ms_since(call.start_mono),
        upstream_ms=round(result.latency_ms, 1) if result else None,
        attempts=result.attempts if result else None,
        guardrails=call.screened or None,
        usage=usage_counts(response),
        prompt={text.at: text.text for text in texts(call.sent)} if prompts and call.sent else None,
        output_text=response.output_text if prompts and response else None,
    )
