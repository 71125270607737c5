"""OCI Functions handler that forwards JSON prompts to OCI Generative AI's OpenAI-compatible API.

The public names (`handle`, `Settings`, the auth classes, the errors) are imported on first use, so the
deploy and diagnosis tools (`python -m genai_handler.policies`, `.doctor`) start without the fdk or the
OpenAI SDK.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

_EXPORTS = {
    "handle": "handler",
    "Settings": "settings",
    **dict.fromkeys(
        (
            "OciInstancePrincipalAuth",
            "OciOkeWorkloadIdentityAuth",
            "OciResourcePrincipalAuth",
            "OciSessionAuth",
            "OciUserPrincipalAuth",
        ),
        "auth",
    ),
    **dict.fromkeys(
        (
            "ContentBlocked",
            "HandlerError",
            "InternalError",
            "InvalidRequest",
            "MethodNotAllowed",
            "MisconfiguredError",
            "NotFound",
            "PayloadTooLarge",
            "RateLimited",
            "UpstreamAuthError",
            "UpstreamError",
            "UpstreamRejected",
            "UpstreamTimeout",
        ),
        "errors",
    ),
}
__all__ = [
    "ContentBlocked",
    "HandlerError",
    "InternalError",
    "InvalidRequest",
    "MethodNotAllowed",
    "MisconfiguredError",
    "NotFound",
    "OciInstancePrincipalAuth",
    "OciOkeWorkloadIdentityAuth",
    "OciResourcePrincipalAuth",
    "OciSessionAuth",
    "OciUserPrincipalAuth",
    "PayloadTooLarge",
    "RateLimited",
    "Settings",
    "UpstreamAuthError",
    "UpstreamError",
    "UpstreamRejected",
    "UpstreamTimeout",
    "handle",
]

if TYPE_CHECKING:
    from .auth import (
        OciInstancePrincipalAuth,
        OciOkeWorkloadIdentityAuth,
        OciResourcePrincipalAuth,
        OciSessionAuth,
        OciUserPrincipalAuth,
    )
    from .errors import (
        ContentBlocked,
        HandlerError,
        InternalError,
        InvalidRequest,
        MethodNotAllowed,
        MisconfiguredError,
        NotFound,
        PayloadTooLarge,
        RateLimited,
        UpstreamAuthError,
        UpstreamError,
        UpstreamRejected,
        UpstreamTimeout,
    )
    from .handler import handle
    from .settings import Settings


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f".{_EXPORTS[name]}", __name__), name)
