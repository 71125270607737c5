"""OCI Functions handler that forwards JSON prompts to OCI Generative AI's OpenAI-compatible API.

The public surface: `handle` (the fdk entrypoint), `Settings`, the auth classes, and the error
hierarchy (documented in `genai_handler.errors`).
"""

from .auth import OciInstancePrincipalAuth, OciResourcePrincipalAuth, OciSessionAuth, OciUserPrincipalAuth
from .errors import (
    HandlerError,
    InternalError,
    InvalidRequest,
    MethodNotAllowed,
    MisconfiguredError,
    PayloadTooLarge,
    RateLimited,
    UpstreamAuthError,
    UpstreamError,
    UpstreamRejected,
    UpstreamTimeout,
)
from .handler import handle
from .settings import Settings

__all__ = [
    "HandlerError", "InternalError", "InvalidRequest", "MethodNotAllowed", "MisconfiguredError",
    "OciInstancePrincipalAuth", "OciResourcePrincipalAuth", "OciSessionAuth", "OciUserPrincipalAuth",
    "PayloadTooLarge", "RateLimited", "Settings", "UpstreamAuthError", "UpstreamError",
    "UpstreamRejected", "UpstreamTimeout", "handle",
]
