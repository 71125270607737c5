"""The upstream call: one OpenAI client per container, the invocation deadline, retries, OCI errors.

The client (signer, connection pool) is kept, so warm invocations reuse one TLS connection. The SDK's
own retries are off, as they know nothing of the deadline: this module retries while the deadline
leaves room, and bounds every socket operation by the time left. Clocks: `_mono` is time.monotonic(),
`_at` time.time(); `_s`/`_ms` are durations.
"""

from __future__ import annotations

import contextlib
import contextvars
import email.utils
import itertools
import json
import math
import random
import re
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

import httpcore2
import httpx2
import openai
from openai._types import RequestOptions

from . import answer, streaming
from .answer import Answer
from .auth import (
    OciInstancePrincipalAuth,
    OciOkeWorkloadIdentityAuth,
    OciResourcePrincipalAuth,
    OciSessionAuth,
    OciUserPrincipalAuth,
    _OciAuth,
)
from .errors import (
    HandlerError,
    NotFound,
    RateLimited,
    UpstreamAuthError,
    UpstreamError,
    UpstreamRejected,
    UpstreamTimeout,
)
from .settings import MAX_SYNC_CALL_S, REGION_NAME, Settings

_BACKOFF_BASE_S = 0.5
_BACKOFF_CAP_S = 8.0
_MIN_ATTEMPT_S = 0.5  # not worth starting an attempt with less time than this
_CONNECT_TIMEOUT_S = 5.0  # a reachable region connects in well under a second; a blackholed route never does
_RETRY_AFTER_CAP_S = MAX_SYNC_CALL_S  # no caller should be told to wait longer than a call may last
_RETRIED_STATUSES = (408, 409)  # like 5xx: the OpenAI SDK retries them too (openai _base_client._should_retry)
REQUEST_ID_HEADER = "opc-request-id"  # OCI's id of one request, for a service request
COMPARTMENT_HEADER = "opc-compartment-id"
_NO_API_KEY = "not-used"  # the OpenAI SDK requires an api_key; a signer replaces it
# OCI's text for an unknown or undeployed model (local/oci_errors.json, model_not_found); only the
# model id and region are taken from it, and only when they look like a model id and a region.
_MODEL_NOT_FOUND = re.compile(
    r"Internal Server Error: Model '(?P<model>[A-Za-z0-9][A-Za-z0-9._:/-]{0,127})' "
    rf"not found or not deployed in region (?P<region>{REGION_NAME})"
)
_IDENTIFIER = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")  # ASCII only: str.isalnum() accepts "²"

# Every message a failed exchange with OCI can give the caller (errors.py's classes carry the status).
_UNREACHABLE = "could not reach OCI Generative AI"
_MODEL_LATE = "the model did not answer before the invocation deadline"
_OCI_LATE = "OCI Generative AI did not answer before the invocation deadline"
_UNREADABLE = "OCI Generative AI sent an answer this function cannot read"
# Absent, expired, deleted or another caller's: one answer, so none can be told from the others.
NO_SUCH = "no stored response, conversation or item by that id for this caller"
_NO_ANSWER = "OCI Generative AI failed to produce an answer{code}; retry later"
_THROTTLED = "OCI Generative AI is throttling requests; retry later"
_FAILED = "OCI Generative AI failed ({described}); retry later"
_REJECTED = "OCI Generative AI rejected the request ({described}{param})"
_REJECTED_FIELDS = "OCI Generative AI rejected the request ({described}); check the model supports the fields sent"
_NOT_IN_REGION = (
    "model {model} is not available in OCI Generative AI region {region}: use a model "
    "this region offers (GENAI_MODEL, GENAI_ALLOWED_MODELS) or another region"
)
_AUTH_HINT = (
    "OCI Generative AI refused the function's identity ({described}): check the dynamic group "
    "matches this function, the policy lets it use generative-ai-family in the project's compartment, "
    "GENAI_PROJECT_OCID and GENAI_REGION; new policies can take a few minutes to apply"
)

_deadline_mono: contextvars.ContextVar[float] = contextvars.ContextVar("genai_deadline", default=math.inf)
_lock = threading.Lock()
_clients: dict[Settings, openai.OpenAI] = {}


@dataclass(frozen=True)
class UpstreamResult:
    """`body` is the response's JSON as OCI sent it: the OpenAI-compatible route returns it as is."""

    response: Answer
    body: dict[str, Any]
    request_id: str | None
    attempts: int
    latency_ms: float


@dataclass(frozen=True)
class StreamResult:
    """A relayed stream: `body` is OCI's events as one text/event-stream body; `response` the final
    event's response, if one came and reads (usage and the answer for the log line); `failure` why the
    stream did not end well: the relay's own closing event ends `body`, or OCI's failed response did."""

    body: bytes
    response: Answer | None
    request_id: str | None
    attempts: int
    latency_ms: float
    failure: HandlerError | None


@dataclass(frozen=True)
class Attempt:
    """One try at the model, as a trace reports it: ids, status and counts, never content.
    `status` is the HTTP status OCI answered, None when no answer came (refused, reset, timeout)."""

    number: int
    model: str
    start_at: float
    duration_s: float
    status: int | None
    request_id: str | None
    usage: dict[str, int] | None
    error_type: str | None


class _Failure(Exception):
    """A failed exchange with OCI: the caller's error, whether another attempt may help, the wait
    OCI asked for (Retry-After) and the HTTP status, if one came. Never leaves this module."""

    def __init__(
        self, error: HandlerError, *, retry: bool = False, asked_s: float | None = None, status: int | None = None
    ) -> None:
        super().__init__(error.message)
        self.error, self.retry, self.asked_s, self.status = error, retry, asked_s, status


@dataclass(frozen=True)
class _Outcome:
    """How one attempt at the model ended: a readable response, a failure, or both (a 200 saying it failed)."""

    status: int | None
    request_id: str | None
    response: Answer | None = None
    body: dict[str, Any] = field(default_factory=dict)
    failure: _Failure | None = None


def client_for(settings: Settings) -> openai.OpenAI:
    """The container's client for these settings, built once."""
    client = _clients.get(settings)
    if client is None:
        with _lock:
            client = _clients.get(settings) or _build_client(settings)
            _clients[settings] = client
    return client


def prepare(settings: Settings) -> None:
    """Build what the first call would: the client (signer, pool, SSL context), the signer's
    credentials and first signature, the SDK's lazily imported responses resource, its platform headers
    (read once, one of them from a `uname -p` subprocess) and its request path. Raises what the call would."""
    client = client_for(settings)
    _ = client.responses.with_raw_response, client.responses.with_streaming_response, client.default_headers
    auth = client._client.auth  # noqa: SLF001  (the signer we gave it)
    if isinstance(auth, _OciAuth):
        auth.warm()
    client.base_url.host.encode("idna")  # as the socket encodes the host: imports the codec on first use
    _rehearse(settings)


def _rehearse(settings: Settings) -> None:
    """One `responses.create` through the SDK to a transport that answers in this process: the SDK reads
    its argument types once (~3 ms of a first call). Nothing leaves the container."""

    def answer(request: httpx2.Request) -> httpx2.Response:
        return httpx2.Response(200, json={"id": "resp_warm", "object": "response", "output": []}, request=request)

    transport = httpx2.MockTransport(answer)
    with openai.OpenAI(
        api_key=_NO_API_KEY, base_url=settings.base_url, http_client=httpx2.Client(transport=transport), max_retries=0
    ) as rehearsal:
        raw = rehearsal.responses.with_raw_response.create(
            model=settings.model, input="warm-up", max_output_tokens=settings.max_output_tokens
        )
        _ = raw.http_response.content


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
    if settings.auth == "oke_workload_identity":
        return OciOkeWorkloadIdentityAuth()
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
    headers = {COMPARTMENT_HEADER: settings.compartment_ocid} if settings.compartment_ocid else None
    return openai.OpenAI(
        api_key=settings.api_key or _NO_API_KEY,
        base_url=settings.base_url,
        project=settings.project_ocid,
        http_client=http_client,
        max_retries=0,
        default_headers=headers,
    )


def create_response(
    client: openai.OpenAI,
    arguments: dict[str, Any],
    deadline_mono: float,
    max_retries: int,
    record: Callable[[Attempt], None] | None = None,
) -> UpstreamResult:
    """Call `responses.create` before `deadline_mono`, retrying what is worth it (408, 409, 429, 5xx,
    failed answers, connection failures). `record` is told each attempt as it ends (the trace's spans)."""
    start_mono = time.monotonic()
    with _deadline(deadline_mono):
        for number in range(1, max_retries + 2):
            outcome = _attempt(client, arguments, deadline_mono, number, record)
            if outcome.failure is not None:
                time.sleep(_pause_s(outcome.failure, number, max_retries, deadline_mono))
            elif outcome.response is not None:
                latency_ms = (time.monotonic() - start_mono) * 1000
                return UpstreamResult(outcome.response, outcome.body, outcome.request_id, number, latency_ms)
    raise AssertionError("unreachable")


def stream_response(
    client: openai.OpenAI,
    arguments: dict[str, Any],
    deadline_mono: float,
    max_retries: int,
    record: Callable[[Attempt], None] | None = None,
) -> StreamResult:
    """`responses.create` with `stream: true` before `deadline_mono`: retried as create_response is
    until OCI's first event arrives, then relayed (streaming.relay) without retries, as a stream
    already under way would be. Every socket read ends by the deadline, and so does the relay."""
    start_mono = time.monotonic()
    with _deadline(deadline_mono):
        for number in range(1, max_retries + 2):
            start_at, attempt_mono = time.time(), time.monotonic()
            status: int | None = None
            request_id: str | None = None
            try:
                timeout = _timeout(deadline_mono, _MODEL_LATE)
                with (
                    _mapped(_MODEL_LATE),
                    client.responses.with_streaming_response.create(**arguments, stream=True, timeout=timeout) as raw,
                ):
                    status, request_id = raw.status_code, raw.headers.get(REQUEST_ID_HEADER)
                    relayed = _relay(raw.http_response, request_id, deadline_mono)
            except _Failure as failed:
                _record(record, arguments, number, start_at, attempt_mono, failed.status or status, request_id, None)
                failed.error.request_id = failed.error.request_id or request_id
                time.sleep(_pause_s(failed, number, max_retries, deadline_mono))
                continue
            response = _final_response(relayed.final)
            failure = relayed.failure or _final_failure(relayed.final, request_id)
            error = failure.type if failure else None
            _record(record, arguments, number, start_at, attempt_mono, status, request_id, response, error)
            latency_ms = (time.monotonic() - start_mono) * 1000
            return StreamResult(relayed.body, response, request_id, number, latency_ms, failure)
    raise AssertionError("unreachable")


def _relay(response: httpx2.Response, request_id: str | None, deadline_mono: float) -> streaming.Relayed:
    """Read OCI's first event (a failure before it is a _Failure, retried as any), then relay the rest."""
    if response.headers.get("content-type", "").partition(";")[0].strip() != "text/event-stream":
        raise _Failure(UpstreamError(_UNREADABLE, request_id=request_id))
    events = streaming.events(response.iter_bytes())
    try:
        first = next(events, None)
    except streaming.Unreadable:
        raise _Failure(UpstreamError(_UNREADABLE, request_id=request_id)) from None
    if first is None:
        raise _Failure(UpstreamError(_UNREADABLE, request_id=request_id))
    return streaming.relay(_read_on(itertools.chain([first], events), request_id), deadline_mono, _MODEL_LATE)


def _read_on(events: Iterator[streaming.Event], request_id: str | None) -> Iterator[streaming.Event]:
    """The events, each failure to read one as the caller's error (the relay's closing event)."""
    try:
        with _mapped(_MODEL_LATE):
            yield from events
    except _Failure as failure:
        failure.error.request_id = request_id
        raise failure.error from None
    except streaming.Unreadable:
        raise UpstreamError(_UNREADABLE, request_id=request_id) from None


def _final_response(final: dict[str, Any] | None) -> Answer | None:
    """The final event's response, if its fields read later have their shapes."""
    body = final.get("response") if final else None
    if not isinstance(body, dict) or not isinstance(body.get("output"), list):
        return None
    try:
        return answer.read(body)
    except answer.Unreadable:
        return None


def _final_failure(final: dict[str, Any] | None, request_id: str | None) -> HandlerError | None:
    """OCI's own closing event said the response failed (response.failed or error): for the log line,
    as a non-streamed failed answer is; the caller has OCI's event itself."""
    if final is None or final.get("type") not in ("response.failed", "error"):
        return None
    response = final.get("response")
    error = response.get("error") if isinstance(response, dict) else final
    code = _identifier(error.get("code")) if isinstance(error, dict) else ""
    return UpstreamError(_NO_ANSWER.format(code=f" ({code})" if code else ""), request_id=request_id)


def _record(  # noqa: PLR0913, PLR0917  (one attempt's facts, as Attempt has them)
    record: Callable[[Attempt], None] | None,
    arguments: dict[str, Any],
    number: int,
    start_at: float,
    start_mono: float,
    status: int | None,
    request_id: str | None,
    response: Answer | None,
    error_type: str | None = None,
) -> None:
    if record is not None:
        duration_s = time.monotonic() - start_mono
        model = str(arguments.get("model"))
        usage = usage_counts(response)
        record(Attempt(number, model, start_at, duration_s, status, request_id, usage, error_type))


def _attempt(
    client: openai.OpenAI,
    arguments: dict[str, Any],
    deadline_mono: float,
    number: int,
    record: Callable[[Attempt], None] | None,
) -> _Outcome:
    """One try at the model, told to `record` as it ends."""
    timeout = _timeout(deadline_mono, _MODEL_LATE)
    start_at, start_mono = time.time(), time.monotonic()
    outcome = _ask_model(client, arguments, timeout)
    if record is not None:
        failure = outcome.failure.error if outcome.failure else None
        record(
            Attempt(
                number=number,
                model=str(arguments.get("model")),
                start_at=start_at,
                duration_s=time.monotonic() - start_mono,
                status=outcome.status,
                request_id=outcome.request_id,
                usage=usage_counts(outcome.response),
                error_type=failure.type if failure else None,
            )
        )
    return outcome


def _ask_model(client: openai.OpenAI, arguments: dict[str, Any], timeout: httpx2.Timeout) -> _Outcome:
    """One `responses.create`; every way it can end, as an outcome rather than an exception."""
    try:
        with _mapped(_MODEL_LATE):
            raw = client.responses.with_raw_response.create(**arguments, timeout=timeout)
    except _Failure as failure:
        return _Outcome(failure.status, failure.error.request_id, failure=failure)
    status, request_id = raw.http_response.status_code, raw.headers.get(REQUEST_ID_HEADER)
    try:
        response, body = _parse(raw, request_id)
    except _Failure as failure:
        return _Outcome(status, request_id, failure=failure)
    return _Outcome(status, request_id, response, body, _reported_failure(response, request_id))


def _pause_s(failure: _Failure, number: int, max_retries: int, deadline_mono: float) -> float:
    """The wait before attempt `number + 1`; raises the failure's error when no attempt is worth it.
    Given up on, the caller is told OCI's wait, or for throttling the backoff's."""
    if not failure.retry:
        raise failure.error
    wait_s = failure.asked_s
    if wait_s is None:
        jitter = random.uniform(0.5, 1.0)  # noqa: S311  (spreads retries, not a secret)
        wait_s = min(_BACKOFF_CAP_S, _BACKOFF_BASE_S * 2 ** (number - 1)) * jitter
    if number > max_retries or time.monotonic() + wait_s + _MIN_ATTEMPT_S > deadline_mono:
        if isinstance(failure.error, RateLimited) or failure.asked_s is not None:
            failure.error.retry_after = max(1, math.ceil(wait_s))
        raise failure.error
    return wait_s


def usage_counts(response: Answer | None) -> dict[str, Any] | None:
    """The token counts the log line and the trace report; None without usage."""
    return response.counts if response else None


def post_oci(client: openai.OpenAI, url: str, body: dict[str, Any], deadline_mono: float) -> tuple[Any, str | None]:
    """One signed JSON POST to another OCI Generative AI API (ApplyGuardrails) on the client's pooled
    connections and signer, ended by `deadline_mono`: (the response's JSON, its opc-request-id). OCI's
    errors map as for the model; one attempt, so the model keeps the rest of the deadline."""
    with _deadline(deadline_mono):
        timeout = _timeout(deadline_mono, _OCI_LATE)
        headers = {"authorization": f"Bearer {client.api_key}"} if client.api_key != _NO_API_KEY else None
        pool = client._client  # noqa: SLF001  (the SDK's pooled, signed client)
        try:
            with _mapped(_OCI_LATE):
                response = pool.post(url, json=body, headers=headers, timeout=timeout)
            request_id = response.headers.get(REQUEST_ID_HEADER)
            if response.status_code >= 400:
                raise _status_failure(response)
            return _json(response, request_id), request_id
        except _Failure as failure:
            raise failure.error from None


@dataclass(frozen=True)
class StoredResult:
    """OCI's answer on a stored-object route: its JSON as sent, and its opc-request-id."""

    body: dict[str, Any]
    request_id: str | None


def stored_call(  # noqa: PLR0913  (one HTTP call's parts)
    client: openai.OpenAI,
    method: str,
    path: str,
    deadline_mono: float,
    *,
    body: dict[str, Any] | None = None,
    query: dict[str, Any] | None = None,
) -> StoredResult:
    """One call to a stored response or conversation (`path` under the base URL, built from checked
    ids) on the client's pooled connections, signer and project header. A 404 is NotFound, whatever
    OCI's body; other errors map as for the model. One attempt: the caller may repeat a read."""
    with _deadline(deadline_mono):
        options: RequestOptions = {"timeout": _timeout(deadline_mono, _OCI_LATE), "params": query or {}}
        try:
            with _mapped(_OCI_LATE):
                if method == "GET":
                    response = client.get(path, cast_to=httpx2.Response, options=options)
                elif method == "DELETE":
                    response = client.delete(path, cast_to=httpx2.Response, options=options)
                else:
                    response = client.post(path, cast_to=httpx2.Response, body=body or {}, options=options)
        except _Failure as failure:
            if failure.status == 404:
                raise NotFound(NO_SUCH, request_id=failure.error.request_id) from None
            raise failure.error from None
        request_id = response.headers.get(REQUEST_ID_HEADER)
        try:
            found = _json(response, request_id)
            if not isinstance(found, dict):
                raise _Failure(UpstreamError(_UNREADABLE, request_id=request_id))
        except _Failure as failure:
            raise failure.error from None
        return StoredResult(found, request_id)


@contextlib.contextmanager
def _deadline(deadline_mono: float) -> Iterator[None]:
    """Every socket operation inside ends by `deadline_mono` (see _bounded)."""
    token = _deadline_mono.set(deadline_mono)
    try:
        yield
    finally:
        _deadline_mono.reset(token)


def _timeout(deadline_mono: float, late: str) -> httpx2.Timeout:
    """The SDK's timeout for one request: the time left, connecting within the connect timeout."""
    remaining_s = deadline_mono - time.monotonic()
    if remaining_s <= 0:
        raise UpstreamTimeout(late)
    return httpx2.Timeout(remaining_s, connect=min(_CONNECT_TIMEOUT_S, remaining_s))


# What went wrong on the way to OCI -> (the error, whether to retry), first match wins: the order of
# httpx's own map_exceptions. A connect timeout is unreachable (retried); any other timeout ends the
# call (the deadline has passed); anything else the transport raises is unreachable (retried).
_TRANSPORT: tuple[tuple[type[Exception], type[HandlerError], str | None, bool], ...] = (
    (httpx2.ConnectTimeout, UpstreamError, _UNREACHABLE, True),
    (httpx2.TimeoutException, UpstreamTimeout, None, False),
    (openai.APITimeoutError, UpstreamTimeout, None, False),
    (httpx2.HTTPError, UpstreamError, _UNREACHABLE, True),
    (openai.APIConnectionError, UpstreamError, _UNREACHABLE, True),
)


@contextlib.contextmanager
def _mapped(late: str) -> Iterator[None]:
    """OCI's error answers and transport failures, from the SDK or from httpx2, as a _Failure;
    `late` is the message for a deadline that passed. Anything else passes through."""
    try:
        yield
    except openai.APIStatusError as exc:
        raise _status_failure(exc.response) from None
    except (openai.APIConnectionError, httpx2.HTTPError) as exc:
        cause = exc.__cause__ if isinstance(exc, openai.APIConnectionError) else None
        seen = cause if isinstance(cause, httpx2.HTTPError) else exc  # the SDK wraps httpx2's exceptions
        _, error, message, retry = next(row for row in _TRANSPORT if isinstance(seen, row[0]))
        raise _Failure(error(message or late), retry=retry) from None


def _json(response: httpx2.Response, request_id: str | None) -> Any:
    """The response's JSON; a body that is not JSON is an unreadable answer."""
    try:
        return response.json()
    except ValueError:
        raise _Failure(UpstreamError(_UNREADABLE, request_id=request_id)) from None


def _parse(raw: Any, request_id: str | None) -> tuple[Answer, dict[str, Any]]:
    """OCI's JSON and what the function reads of it (answer.py: no SDK model is built); a wrong-shaped
    field fails here, not while shaping the reply."""
    try:
        body = json.loads(raw.http_response.content)
        return answer.read(body), body
    except (ValueError, RecursionError):  # not JSON or too deep, or answer.Unreadable
        raise _Failure(UpstreamError(_UNREADABLE, request_id=request_id)) from None


def _reported_failure(response: Answer, request_id: str | None) -> _Failure | None:
    """A 200 whose response says it failed (`status: failed` or an `error`) is a retryable upstream failure."""
    if not response.failed:
        return None
    code = response.error_code
    described = f" ({code})" if isinstance(code, str) and _IDENTIFIER.fullmatch(code) else ""
    return _Failure(UpstreamError(_NO_ANSWER.format(code=described), request_id=request_id), retry=True)


def _status_failure(response: httpx2.Response) -> _Failure:
    """Map an OCI error answer to ours: the error, whether to retry, and the wait OCI asked for."""
    status = response.status_code
    request_id = response.headers.get(REQUEST_ID_HEADER)
    code = oci_error_code(response)
    described = f"HTTP {status}{' ' + code if code and code != str(status) else ''}"
    if status == 429:
        return _Failure(
            RateLimited(_THROTTLED, request_id=request_id), retry=True, asked_s=_retry_after(response), status=status
        )
    missing = model_not_deployed(response) if status == 500 else None
    if missing is not None:
        message = _NOT_IN_REGION.format(model=missing[0], region=missing[1])
        return _Failure(UpstreamError(message, request_id=request_id), status=status)
    if status >= 500 or status in _RETRIED_STATUSES:
        return _Failure(
            UpstreamError(_FAILED.format(described=described), request_id=request_id),
            retry=True,
            asked_s=_retry_after(response),
            status=status,
        )
    if status in (401, 403, 404):
        return _Failure(UpstreamAuthError(_AUTH_HINT.format(described=described), request_id=request_id), status=status)
    if code and code != str(status):
        param = _openai_error_field(response, "param")
        message = _REJECTED.format(described=described, param=f", param {param}" if param else "")
    else:
        message = _REJECTED_FIELDS.format(described=described)
    return _Failure(UpstreamRejected(message, request_id=request_id), status=status)


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
    deadline_mono = _deadline_mono.get()
    if not math.isfinite(deadline_mono):
        return timeout
    remaining = deadline_mono - time.monotonic()
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

    def start_tls(
        self, ssl_context: Any, server_hostname: str | None = None, timeout: float | None = None
    ) -> httpcore2.NetworkStream:
        bounded = _bounded(timeout, httpcore2.ConnectTimeout)
        return _DeadlineStream(self._inner.start_tls(ssl_context, server_hostname, bounded))

    def get_extra_info(self, info: str) -> Any:
        return self._inner.get_extra_info(info)


class _DeadlineBackend(httpcore2.NetworkBackend):
    def __init__(self) -> None:
        self._inner = httpcore2.SyncBackend()

    def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
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
    transport._pool._network_backend = _DeadlineBackend()  # noqa: SLF001  (no public way to set it)
    return transport
