"""Every way an invocation can fail, each with its HTTP status and JSON error type.

HandlerError                      base; never raised itself
├── InvalidRequest          400   invalid_request: the body breaks the request contract
├── UpstreamRejected        400   upstream_rejected: the model service refused a valid request
├── ContentBlocked          400   content_blocked: guardrails flagged the request (GENAI_GUARDRAILS=block)
├── NotFound                404   not_found: no stored response or conversation of this caller by that id
│                                 (absent, expired, deleted or another caller's: one answer for all)
├── MethodNotAllowed        405   method_not_allowed: a method the route does not take (adds `Allow`)
├── PayloadTooLarge         413   payload_too_large: body over GENAI_MAX_BODY_BYTES
├── RateLimited             429   rate_limited: OCI throttled and the deadline allows no retry
├── MisconfiguredError      500   misconfigured: a setting or the credentials are wrong
├── InternalError           500   internal_error: a bug in this function
├── UpstreamAuthError       502   upstream_auth: OCI answered 401/403/404 (IAM, project, region)
├── UpstreamError           502   upstream_error: OCI 5xx/408/409 or an answer saying it failed
│                                 (after retries), OCI unreachable (refused, reset, connect
│                                 timeout), an unreadable answer, a model not deployed in the region
└── UpstreamTimeout         504   timeout: no answer before the invocation deadline
"""

from __future__ import annotations


class HandlerError(Exception):
    """An error with a documented status; `message` is written for the caller: never exception
    text, paths, tokens or keys."""

    status: int = 500
    type: str = "internal_error"

    def __init__(self, message: str, *, request_id: str | None = None, retry_after: int | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.request_id = request_id
        self.retry_after = retry_after

    def to_dict(self) -> dict[str, object]:
        """The caller's error: `{"error": {"type", "message", "request_id"}}`."""
        return {"error": {"type": self.type, "message": self.message, "request_id": self.request_id}}

    def to_openai_dict(self) -> dict[str, object]:
        """The same error in OpenAI's shape, `{"error": {"message", "type", "param", "code"}}`, for the
        OpenAI-compatible route: the OpenAI SDKs turn it into their exceptions."""
        return {"error": {"message": self.message, "type": self.type, "param": None, "code": self.type}}


class InvalidRequest(HandlerError):
    status, type = 400, "invalid_request"


class UpstreamRejected(HandlerError):
    status, type = 400, "upstream_rejected"


class ContentBlocked(HandlerError):
    """The message names the checks that fired, never the text that fired them."""

    status, type = 400, "content_blocked"


class NotFound(HandlerError):
    status, type = 404, "not_found"


class MethodNotAllowed(HandlerError):
    """`allow` lists the route's methods, for the `Allow` header."""

    status, type = 405, "method_not_allowed"

    def __init__(self, message: str, *, allow: tuple[str, ...] = ("POST",), request_id: str | None = None) -> None:
        super().__init__(message, request_id=request_id)
        self.allow = allow


class PayloadTooLarge(HandlerError):
    status, type = 413, "payload_too_large"


class RateLimited(HandlerError):
    status, type = 429, "rate_limited"


class MisconfiguredError(HandlerError):
    status, type = 500, "misconfigured"


class InternalError(HandlerError):
    status, type = 500, "internal_error"


class UpstreamAuthError(HandlerError):
    status, type = 502, "upstream_auth"


class UpstreamError(HandlerError):
    status, type = 502, "upstream_error"


class UpstreamTimeout(HandlerError):
    status, type = 504, "timeout"
