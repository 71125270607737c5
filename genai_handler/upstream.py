"""The upstream call: one OpenAI client per container, the invocation deadline, retries, OCI errors.

The client (and its signer and connection pool) is built on first use and kept, so every warm
invocation reuses one TLS connection. The SDK's own retries are off: they know nothing of the
invocation deadline, so this module retries 429, 5xx and connection failures itself, and only
while the deadline leaves room.
"""

from __future__ import annotations

import contextvars
import email.utils
import math
import random
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx2
import openai
from openai.types.responses import Response

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
    response: Response
    request_id: str | None
    attempts: int
    latency_ms: float


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
        transport=_DeadlineTransport(httpx2.HTTPTransport(limits=limits)),
        timeout=httpx2.Timeout(60.0, connect=5.0),
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


def create_response(client: openai.OpenAI, arguments: dict[str, Any], deadline: float, max_retries: int) -> UpstreamResult:
    """Call `responses.create` before `deadline` (time.monotonic()), retrying what is worth it."""
    token = _deadline.set(deadline)
    started = time.monotonic()
    try:
        for attempt in range(1, max_retries + 2):
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise UpstreamTimeout("the model did not answer before the invocation deadline")
            try:
                raw = client.responses.with_raw_response.create(**arguments, timeout=remaining)
            except openai.APITimeoutError:
                raise UpstreamTimeout("the model did not answer before the invocation deadline") from None
            except openai.APIStatusError as exc:
                failure, wait = _status_failure(exc)
            except openai.APIConnectionError:
                failure, wait = UpstreamError("could not reach OCI Generative AI"), None
            else:
                latency_ms = (time.monotonic() - started) * 1000
                return UpstreamResult(_parse(raw), raw.headers.get("opc-request-id"), attempt, latency_ms)
            if not isinstance(failure, (RateLimited, UpstreamError)):
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


def _parse(raw: Any) -> Response:
    request_id = raw.headers.get("opc-request-id")
    try:
        response = raw.parse()
        if not isinstance(response, Response):
            raise TypeError
        _ = response.output_text  # a wrong-shaped answer fails here, not while shaping the reply
        return response
    except HandlerError:
        raise
    except Exception:
        raise UpstreamError("OCI Generative AI sent an answer this function cannot read", request_id=request_id) from None


def _status_failure(exc: openai.APIStatusError) -> tuple[HandlerError, float | None]:
    """Map an OCI error answer to ours, with the wait OCI asked for (Retry-After), if any."""
    status = exc.status_code
    request_id = exc.response.headers.get("opc-request-id")
    code = oci_error_code(exc.response)
    described = f"HTTP {status}{' ' + code if code else ''}"
    if status == 429:
        return RateLimited("OCI Generative AI is throttling requests; retry later", request_id=request_id), \
            _retry_after(exc.response)
    if status >= 500:
        return UpstreamError(f"OCI Generative AI failed ({described}); retry later", request_id=request_id), \
            _retry_after(exc.response)
    if status in (401, 403, 404):
        return UpstreamAuthError(_AUTH_HINT.format(described=described), request_id=request_id), None
    message = f"OCI Generative AI rejected the request ({described}); check the model supports the fields sent"
    return UpstreamRejected(message, request_id=request_id), None


def oci_error_code(response: httpx2.Response) -> str:
    """OCI's error code (e.g. NotAuthorizedOrNotFound), if the body has one that looks like a code."""
    try:
        code = response.json().get("code", "")
    except Exception:
        return ""
    return code if isinstance(code, str) and code.isalnum() and len(code) <= 64 else ""


def _retry_after(response: httpx2.Response) -> float | None:
    value = response.headers.get("retry-after", "").strip()
    if value.isdigit():
        return float(value)
    try:
        return max(0.0, email.utils.parsedate_to_datetime(value).timestamp() - time.time())
    except (TypeError, ValueError, IndexError):
        return None


class _DeadlineStream(httpx2.SyncByteStream):
    """Stops reading a body that trickles in past the deadline (socket timeouts are per read)."""

    def __init__(self, stream: httpx2.SyncByteStream, deadline: float) -> None:
        self._stream = stream
        self._deadline = deadline

    def __iter__(self) -> Iterator[bytes]:
        for chunk in self._stream:
            if time.monotonic() > self._deadline:
                raise httpx2.ReadTimeout("invocation deadline passed")
            yield chunk

    def close(self) -> None:
        self._stream.close()


class _DeadlineTransport(httpx2.BaseTransport):
    def __init__(self, inner: httpx2.BaseTransport) -> None:
        self._inner = inner

    def handle_request(self, request: httpx2.Request) -> httpx2.Response:
        response = self._inner.handle_request(request)
        deadline = _deadline.get()
        if math.isfinite(deadline):
            response.stream = _DeadlineStream(response.stream, deadline)  # type: ignore[arg-type]
        return response

    def close(self) -> None:
        self._inner.close()
