"""genai_handler.errors: every error has its documented status, type and JSON shape."""

from __future__ import annotations

import pytest

from genai_handler import errors

DOCUMENTED = {
    errors.InvalidRequest: (400, "invalid_request"),
    errors.UpstreamRejected: (400, "upstream_rejected"),
    errors.ContentBlocked: (400, "content_blocked"),
    errors.NotFound: (404, "not_found"),
    errors.MethodNotAllowed: (405, "method_not_allowed"),
    errors.PayloadTooLarge: (413, "payload_too_large"),
    errors.RateLimited: (429, "rate_limited"),
    errors.MisconfiguredError: (500, "misconfigured"),
    errors.InternalError: (500, "internal_error"),
    errors.UpstreamAuthError: (502, "upstream_auth"),
    errors.UpstreamError: (502, "upstream_error"),
    errors.UpstreamTimeout: (504, "timeout"),
}


@pytest.mark.parametrize(("cls", "expected"), DOCUMENTED.items())
def test_given_each_error_when_made_then_it_has_its_documented_status_type_and_shape(
    cls: type[errors.HandlerError], expected: tuple[int, str]
) -> None:
    # when
    error = cls("what happened", request_id="ABC")
    # then
    assert (error.status, error.type) == expected
    assert error.to_dict() == {"error": {"type": expected[1], "message": "what happened", "request_id": "ABC"}}


def test_given_the_modules_docstring_when_read_then_it_lists_every_error() -> None:
    # when / then
    for cls, (status, type_) in DOCUMENTED.items():
        assert f"{cls.__name__}" in errors.__doc__ and f"{status}   {type_}" in errors.__doc__
    assert set(DOCUMENTED) == set(errors.HandlerError.__subclasses__())
