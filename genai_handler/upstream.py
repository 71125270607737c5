"""The upstream call: one OpenAI client per container, the invocation deadline, retries, OCI errors.

The client (and its signer and connection pool) is built on first use and kept, so every warm
invocation reuses one TLS connection. The SDK's own retries are off: they know nothing of the
invocation deadline, so this module retries 408, 409, 429, 5xx, failed answers and connection
failures itself, and only while the deadline leaves room. Every socket operation (connect, TLS,
each write and read) is bounded by the time left, so the deadline bounds the whole exchange:
a route that drops packets or an answer trickling in a byte at a time ends at the deadline.
"""

from __future__ import annotations

import contextvars
import email.utils
import json
import math
import random
import re
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

import httpcore2
import httpx2
import openai
from openai.types.responses import Response, ResponseUsage
from openai.types.responses.response import IncompleteDetails

from .auth import OciInstancePrincipalAuth, OciResourcePrincipalAuth, OciSessionAuth, OciUserPrincipalAuth
from .errors import (
    HandlerError,
    RateLimited,
    UpstreamAuthError,
    UpstreamError,
    UpstreamRejected,
    UpstreamTimeout,
)
from .settings import Settings

_BACKOFF_BASE_S = 0.5
_BACKOFF_CAP_S = 8.0
_MIN_ATTEMPT_S = 0.5  # not worth starting an attempt with less time than this
_CONNECT_TIMEOUT_S = 5.0  # a reachable region connects in well under a second; a blackholed route never does
_RETRY_AFTER_CAP_S = 300.0  # OCI Functions' longest synchronous call: no caller should be told to wait longer
_RETRIED_STATUSES = (408, 409)  # like 5xx: the OpenAI SDK retries them too (openai _base_client._should_retry)
# OCI's text for an unknown or undeployed model (local/oci_errors.json, model_not_found); only the
# model id and region are taken from it, and only when they look like a model id and a region.
_MODEL_NOT_FOUND = re.compile(
    r"Internal Server Error: Model '(?P<model>[A-Za-z0-9][A-Za-z0-9._:/-]{0,127})' "
    r"not found or not deployed in region (?P<region>[a-z]+(?:-[a-z]+)+-[0-9]+)"
)
_IDENTIFIER = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")  # ASCII only: str.isalnum() accepts "²"
_AUTH_HINT = (
    "OCI Generative AI refused the function's identity ({described}): check the dynamic group "
    "matches this function, the policy lets it use generative-ai-family in the project's compartment, "
    "GENAI_PROJECT_OCID and GENAI_REGION; new policies can take a few minutes to apply"
)

_deadline: contextvars.ContextVar[float] = contextvars.ContextVar("genai_deadline", default=math.inf)
_lock = threading.Lock()
_clients: dict[Settings, openai.OpenAI] = {}


@dataclass(frozen=True)
class UpstreamResult:
    """`body` is the answer's JSON as OCI sent it: the OpenAI-compatible route returns it as is."""

    response: Response
    body: dict[str, Any]
    request_id: str | None
    attempts: int
    latency_ms: float


@dataclass(frozen=True)
class Attempt:
    """One try at the model, as a trace reports it: ids, status and counts, never content.
    `status` is the HTTP status OCI answered, None when no answer came (refused, reset, timeout)."""

    number: int
    model: str
    started: float  # time.time()
    duration_s: float
    status: int | None
    request_id: str | None
    usage: dict[str, int] | None
    error_type: str | None


def client_for(settings: Settings) -> openai.OpenAI:
    """The container's client for these settings, built once."""
    client = _clients.get(settings)
    if client is None:
        with _lock:
            client = _clients.get(settings) or _build_client(settings)
            _clients[settings] = client
    return client


def make_auth(settings: Settings) -> httpx2.Auth | None:
    """The request signer for GENAI_AUTH; None for api_key, which the SDK sends as a Bearer token."""
    if settings.auth == "resource_principal":
        return OciResourcePrincipalAuth()
    if settings.auth == "instance_principal":
        return OciInstancePrincipalAuth()
    if settings.auth == "user_principal":
        return OciUserPrincipalAuth(settings.oci_config_file, settings.oci_profile)
    if settings.auth == "session":
        return OciSessionAuth(settings.oci_config_file, settings.oci_profile)
    return None


def _build_client(settings: Settings) -> openai.OpenAI:
    # keepalive_expiry well above httpx2's 5 s: warm containers may see one call a minute, and a
    # connection the server has closed meanwhile is detected and replaced before reuse.
    limits = httpx2.Limits(max_connections=20, max_keepalive_connections=4, keepalive_expiry=settings.keepalive_s)
    http_client = httpx2.Client(
        auth=make_auth(settings),
        transport=_deadline_transport(limits),
        timeout=httpx2.Timeout(60.0, connect=_CONNECT_TIMEOUT_S),
    )
    headers = {"opc-compartment-id": settings.compartment_ocid} if settings.compartment_ocid else None
    return openai.OpenAI(
        api_key=settings.api_key or "not-used",
        base_url=settings.base_url,
        project=settings.project_ocid,
        http_client=http_client,
        max_retries=0,
        default_headers=headers,
    )


def create_response(
    client: openai.OpenAI,
    arguments: dict[str, Any],
    deadline: float,
    max_retries: int,
    record: Callable[[Attempt], None] | None = None,
) -> UpstreamResult:
    """Call `responses.create` before `deadline` (time.monotonic()), retrying what is worth it.
    `record` is told each attempt's outcome as it ends (the trace's child spans)."""
    token = _deadline.set(deadline)
    started = time.monotonic()
    try:
        for attempt in range(1, max_retries + 2):
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise UpstreamTimeout("the model did not answer before the invocation deadline")
            timeout = httpx2.Timeout(remaining, connect=min(_CONNECT_TIMEOUT_S, remaining))
            began, clock = time.time(), time.monotonic()
            status: int | None = None
            request_id: str | None = None
            response: Response | None = None
            body: dict[str, Any] = {}
            failure: HandlerError | None
            retryable, wait = True, None
            try:
                raw = client.responses.with_raw_response.create(**arguments, timeout=timeout)
            except openai.APITimeoutError as exc:
                if isinstance(exc.__cause__, httpx2.ConnectTimeout):
                    failure = UpstreamError("could not reach OCI Generative AI")
                else:
                    failure, retryable = UpstreamTimeout("the model did not answer before the invocation deadline"), False
            except openai.APIStatusError as exc:
                status = exc.status_code
                failure, retryable, wait = _status_failure(exc)
            except openai.APIConnectionError:
                failure = UpstreamError("could not reach OCI Generative AI")
            else:
                status = raw.http_response.status_code
                request_id = raw.headers.get("opc-request-id")
                try:
                    response, body = _parse(raw)
                    failure = _failed_answer(response, request_id)
                except HandlerError as exc:
                    failure, retryable = exc, False
            if record is not None:
                record(Attempt(
                    number=attempt, model=str(arguments.get("model")), started=began,
                    duration_s=time.monotonic() - clock, status=status,
                    request_id=failure.request_id if failure else request_id,
                    usage=usage_counts(response), error_type=failure.type if failure else None,
                ))
            if failure is None and response is not None:
                latency_ms = (time.monotonic() - started) * 1000
                return UpstreamResult(response, body, request_id, attempt, latency_ms)
            assert failure is not None  # every attempt ends in an answer or a failure
            if not retryable:
                raise failure
            asked = wait  # OCI's Retry-After, if it sent one
            if wait is None:
                wait = min(_BACKOFF_CAP_S, _BACKOFF_BASE_S * 2 ** (attempt - 1)) * random.uniform(0.5, 1.0)
            if attempt > max_retries or time.monotonic() + wait + _MIN_ATTEMPT_S > deadline:
                if isinstance(failure, RateLimited) or asked is not None:
                    failure.retry_after = max(1, math.ceil(wait))
                raise failure
            time.sleep(wait)
        raise AssertionError("unreachable")
    finally:
        _deadline.reset(token)


def usage_counts(response: Response | None) -> dict[str, int] | None:
    """The token counts the log line and the trace report; None without usage."""
    usage = response.usage if response else None
    return usage.model_dump(include={"input_tokens", "output_tokens", "total_tokens"}) if usage else None


def post_oci(client: openai.OpenAI, url: str, body: dict[str, Any], deadline: float) -> tuple[Any, str | None]:
    """One signed JSON POST to another OCI Generative AI API (ApplyGuardrails) on the client's pooled
    connections and signer, ended by `deadline`: (the answer's JSON, its opc-request-id). OCI's
    errors map as for the model; one attempt, so the model keeps the rest of the deadline."""
    token = _deadline.set(deadline)
    try:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise UpstreamTimeout("OCI Generative AI did not answer before the invocation deadline")
        headers = {"authorization": f"Bearer {client.api_key}"} if client.api_key != "not-used" else None
        timeout = httpx2.Timeout(remaining, connect=min(_CONNECT_TIMEOUT_S, remaining))
        try:
            response = client._client.post(url, json=body, headers=headers, timeout=timeout)  # noqa: SLF001
        except httpx2.ConnectTimeout:
            raise UpstreamError("could not reach OCI Generative AI") from None
        except httpx2.TimeoutException:
            raise UpstreamTimeout("OCI Generative AI did not answer before the invocation deadline") from None
        except httpx2.HTTPError:
            raise UpstreamError("could not reach OCI Generative AI") from None
        request_id = response.headers.get("opc-request-id")
        if response.status_code >= 400:
            raise _status_failure(openai.APIStatusError("", response=response, body=None))[0]
        try:
            return response.json(), request_id
        except ValueError:
            raise UpstreamError("OCI Generative AI sent an answer this function cannot read", request_id=request_id) from None
    finally:
        _deadline.reset(token)


def _parse(raw: Any) -> tuple[Response, dict[str, Any]]:
    """The SDK builds its models without validating them, so the fields read later are checked here."""
    request_id = raw.headers.get("opc-request-id")
    try:
        body = json.loads(raw.http_response.content)
        response = raw.parse()
        if not isinstance(body, dict) or not isinstance(response, Response):
            raise TypeError
        if not isinstance(response.usage, (ResponseUsage, type(None))):
            raise TypeError
        if not isinstance(response.incomplete_details, (IncompleteDetails, type(None))):
            raise TypeError
        _ = response.output_text  # a wrong-shaped output fails here, not while shaping the reply
        return response, body
    except HandlerError:
        raise
    except Exception:
        raise UpstreamError("OCI Generative AI sent an answer this function cannot read", request_id=request_id) from None


def _failed_answer(response: Response, request_id: str | None) -> UpstreamError | None:
    """A 200 whose answer says it failed (`status: failed` or an `error`) is a retryable upstream failure."""
    if response.status != "failed" and response.error is None:
        return None
    code = getattr(response.error, "code", None)
    described = f" ({code})" if isinstance(code, str) and _IDENTIFIER.fullmatch(code) else ""
    return UpstreamError(f"OCI Generative AI failed to produce an answer{described}; retry later", request_id=request_id)


def _status_failure(exc: openai.APIStatusError) -> tuple[HandlerError, bool, float | None]:
    """Map an OCI error answer to ours: the error, whether to retry, and the wait OCI asked for."""
    status = exc.status_code
    request_id = exc.response.headers.get("opc-request-id")
    code = oci_error_code(exc.response)
    described = f"HTTP {status}{' ' + code if code and code != str(status) else ''}"
    if status == 429:
        return RateLimited("OCI Generative AI is throttling requests; retry later", request_id=request_id), \
            True, _retry_after(exc.response)
    missing = _model_not_found(exc.response) if status == 500 else None
    if missing is not None:
        return UpstreamError(missing, request_id=request_id), False, None
    if status >= 500 or status in _RETRIED_STATUSES:
        return UpstreamError(f"OCI Generative AI failed ({described}); retry later", request_id=request_id), \
            True, _retry_after(exc.response)
    if status in (401, 403, 404):
        return UpstreamAuthError(_AUTH_HINT.format(described=described), request_id=request_id), False, None
    param = _openai_error_field(exc.response, "param")
    if code and code != str(status):
        detail = f"{described}{', param ' + param if param else ''}"
        message = f"OCI Generative AI rejected the request ({detail})"
    else:
        message = f"OCI Generative AI rejected the request ({described}); check the model supports the fields sent"
    return UpstreamRejected(message, request_id=request_id), False, None


def oci_error_code(response: httpx2.Response) -> str:
    """The error code in an OCI body (`{"code": ...}`, e.g. NotAuthorizedOrNotFound or "500") or an
    OpenAI-shaped one (`{"error": {"code" or "type": ...}}`), if it looks like a code; else ""."""
    try:
        body = response.json()
    except Exception:
        return ""
    if not isinstance(body, dict):
        return ""
    if isinstance(body.get("error"), dict):
        return _openai_error_field(response, "code") or _openai_error_field(response, "type")
    return _identifier(body.get("code"))


def _openai_error_field(response: httpx2.Response, name: str) -> str:
    try:
        error = response.json().get("error")
    except Exception:
        return ""
    return _identifier(error.get(name)) if isinstance(error, dict) else ""


def _identifier(value: object) -> str:
    if isinstance(value, int) and not isinstance(value, bool):
        value = str(value)
    return value if isinstance(value, str) and _IDENTIFIER.fullmatch(value) else ""


def model_not_deployed(response: httpx2.Response) -> tuple[str, str] | None:
    """(model, region) when the body is OCI's answer for an unknown or undeployed model: a 500
    that retrying never fixes. Only text matching OCI's exact wording is read (the doctor uses it too)."""
    try:
        message = response.json().get("message")
    except Exception:
        return None
    found = _MODEL_NOT_FOUND.fullmatch(message) if isinstance(message, str) else None
    return (found["model"], found["region"]) if found else None


def _model_not_found(response: httpx2.Response) -> str | None:
    """The caller's message for OCI's model-not-found answer, else None."""
    missing = model_not_deployed(response)
    if missing is None:
        return None
    return (f"model {missing[0]} is not available in OCI Generative AI region {missing[1]}: use a model "
            "this region offers (GENAI_MODEL, GENAI_ALLOWED_MODELS) or another region")


def _retry_after(response: httpx2.Response) -> float | None:
    """Seconds or an HTTP date (RFC 9110), capped; anything else is ignored."""
    value = response.headers.get("retry-after", "").strip()
    if value.isascii() and value.isdigit():
        return min(float(value), _RETRY_AFTER_CAP_S)
    try:
        seconds = email.utils.parsedate_to_datetime(value).timestamp() - time.time()
    except (TypeError, ValueError, IndexError, OverflowError):
        return None
    return min(max(0.0, seconds), _RETRY_AFTER_CAP_S)


def _bounded(timeout: float | None, error: type[Exception]) -> float | None:
    """The socket timeout for one operation: never past the invocation deadline."""
    deadline = _deadline.get()
    if not math.isfinite(deadline):
        return timeout
    remaining = deadline - time.monotonic()
    if remaining <= 0:
        raise error("invocation deadline passed")
    return remaining if timeout is None else min(timeout, remaining)


class _DeadlineStream(httpcore2.NetworkStream):
    """A connection whose every read and write ends by the deadline: socket timeouts are per
    operation, so a status line, headers or body trickling in a byte at a time would not."""

    def __init__(self, inner: httpcore2.NetworkStream) -> None:
        self._inner = inner

    def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        return self._inner.read(max_bytes, _bounded(timeout, httpcore2.ReadTimeout))

    def write(self, buffer: bytes, timeout: float | None = None) -> None:
        self._inner.write(buffer, _bounded(timeout, httpcore2.WriteTimeout))

    def close(self) -> None:
        self._inner.close()

    def start_tls(self, ssl_context: Any, server_hostname: str | None = None, timeout: float | None = None) -> httpcore2.NetworkStream:
        return _DeadlineStream(self._inner.start_tls(ssl_context, server_hostname, _bounded(timeout, httpcore2.ConnectTimeout)))

    def get_extra_info(self, info: str) -> Any:
        return self._inner.get_extra_info(info)


class _DeadlineBackend(httpcore2.NetworkBackend):
    def __init__(self) -> None:
        self._inner = httpcore2.SyncBackend()

    def connect_tcp(
        self, host: str, port: int, timeout: float | None = None, local_address: str | None = None,
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore2.NetworkStream:
        bounded = _bounded(timeout, httpcore2.ConnectTimeout)
        return _DeadlineStream(self._inner.connect_tcp(host, port, bounded, local_address, socket_options))

    def connect_unix_socket(
        self, path: str, timeout: float | None = None, socket_options: Iterable[Any] | None = None
    ) -> httpcore2.NetworkStream:
        bounded = _bounded(timeout, httpcore2.ConnectTimeout)
        return _DeadlineStream(self._inner.connect_unix_socket(path, bounded, socket_options))

    def sleep(self, seconds: float) -> None:
        self._inner.sleep(seconds)


def _deadline_transport(limits: httpx2.Limits) -> httpx2.HTTPTransport:
    """httpx2's transport whose new connections keep the deadline. HTTPTransport takes no network
    backend, so its pool's is swapped before any connection exists (httpx2/httpcore2 2.16, pinned;
    the deadline tests fail if this stops taking effect)."""
    transport = httpx2.HTTPTransport(limits=limits)
    transport._pool._network_backend = _DeadlineBackend()  # type: ignore[union-attr]  # noqa: SLF001
    return transport
