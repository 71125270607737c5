"""The API Gateway specification, checked with the oci SDK's own models.

The specification must survive them (the CLI sends what they keep: a misspelt field would be
dropped silently). The Terraform stack that reads the same file is checked in test_stack.py.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import oci
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa

from genai_handler import policies

from .conftest import DEPLOYED_ROUTES

ROOT = Path(__file__).resolve().parent.parent
KIT = ROOT / "policies"
FUNCTION = "ocid1.fnfunc.oc1.us-chicago-1.aaaaaaaafunction"
SPEC_VALUES = {
    "FUNCTION_OCID": FUNCTION,
    "ISSUER": "https://identity.oraclecloud.com/",
    "AUDIENCE": "https://genai-api.example.com/",
    "JWKS_URI": "https://idcs-0123.identity.oraclecloud.com/admin/v1/SigningCert/jwk",
    "CORS_ALLOWED_ORIGIN": "https://app.example.com",
}
# The JWT's subject as API Gateway's request.auth context variable (a value "may include one or
# more expressions enclosed within ${} delimiters": oci SDK SetHeaderPolicyItem.values); in the
# template it is escaped as Terraform's templatefile() requires.
GATEWAY_SUBJECT = "${request.auth[sub]}"
GATEWAY_SUBJECT_ESCAPED = "$" + GATEWAY_SUBJECT
CALLER_HEADER = "X-Genai-Caller"


# --- helpers ------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def deserializer() -> oci.base_client.BaseClient:
    """The SDK's own response deserializer; the key is never used, nothing is sent."""
    signer = oci.auth.signers.SecurityTokenSigner("unused", rsa.generate_private_key(65537, 2048))
    return oci.apigateway.DeploymentClient({"region": "us-chicago-1"}, signer=signer).base_client


def _snake(name: str) -> str:
    return re.sub(r"(?<!^)(?=[A-Z])", "_", name).lower()


def _snake_keys(value: Any) -> Any:
    if isinstance(value, dict):
        return {_snake(k): _snake_keys(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_snake_keys(v) for v in value]
    return value


def _without_nulls(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _without_nulls(v) for k, v in value.items() if v is not None}
    if isinstance(value, list):
        return [_without_nulls(v) for v in value]
    return value


def _round_trip(client: oci.base_client.BaseClient, data: dict, model: str) -> tuple[Any, dict]:
    """What the SDK keeps of ``data``, in the input's own shape, for a recursive ==."""
    instance = client.deserialize_response_data(json.dumps(data).encode(), model)
    return instance, _without_nulls(oci.util.to_dict(instance))


def _spec_template() -> dict:
    return json.loads((KIT / "apigateway-deployment.json").read_text(encoding="utf-8"))


def _spec() -> dict:
    text = (KIT / "apigateway-deployment.json").read_text(encoding="utf-8")
    return json.loads(policies.fill(text, SPEC_VALUES))


def _leaves(value: Any, path: tuple[str, ...] = ()) -> Iterator[tuple[tuple[str, ...], Any]]:
    """JSON leaf paths; lists of scalars are leaves, lists of objects are walked per item."""
    if isinstance(value, dict):
        for key, item in value.items():
            yield from _leaves(item, (*path, key))
    elif isinstance(value, list) and value and all(isinstance(v, dict) for v in value):
        for item in value:
            yield from _leaves(item, (*path, "[]"))
    else:
        yield path, value


# --- the gateway specification -----------------------------------------------------------


def test_given_the_spec_when_deserialized_by_the_sdk_then_no_field_is_dropped(
    deserializer: oci.base_client.BaseClient,
) -> None:
    # given
    spec = _spec()
    # when
    instance, kept = _round_trip(deserializer, spec, "ApiSpecification")
    # then
    assert isinstance(instance, oci.apigateway.models.ApiSpecification)
    assert kept == _snake_keys(spec)


def test_given_a_misspelt_field_when_deserialized_then_the_comparison_catches_it(
    deserializer: oci.base_client.BaseClient,
) -> None:
    # given
    spec = _spec()
    spec["requestPolicies"]["rateLimiting"]["ratePerSecond"] = 5
    spec["routes"][0]["backend"]["type"] = "ORACLE_FUNCTION_BACKEND"
    # when
    _, kept = _round_trip(deserializer, spec, "ApiSpecification")
    # then
    assert kept != _snake_keys(spec)


def test_given_the_spec_when_deserialized_then_every_route_goes_to_the_function_with_its_methods(
    deserializer: oci.base_client.BaseClient,
) -> None:
    # given / when
    instance, _ = _round_trip(deserializer, _spec(), "ApiSpecification")
    # then
    assert {route.path: route.methods for route in instance.routes} == DEPLOYED_ROUTES
    for route in instance.routes:
        assert isinstance(route.backend, oci.apigateway.models.OracleFunctionBackend)
        assert route.backend.function_id == FUNCTION
        assert route.request_policies.authorization.type == "AUTHENTICATION_ONLY"


def test_given_the_spec_when_deserialized_then_a_valid_jwt_is_required(
    deserializer: oci.base_client.BaseClient,
) -> None:
    # given / when
    instance, _ = _round_trip(deserializer, _spec(), "ApiSpecification")
    auth = instance.request_policies.authentication
    # then: TOKEN_AUTHENTICATION, which Oracle recommends over JWT_AUTHENTICATION for new deployments
    assert isinstance(auth, oci.apigateway.models.TokenAuthenticationPolicy)
    assert auth.is_anonymous_access_allowed is False
    assert (auth.token_header, auth.token_auth_scheme) == ("Authorization", "Bearer")
    keys = auth.validation_policy
    assert isinstance(keys, oci.apigateway.models.TokenAuthenticationRemoteJWKSValidationPolicy)
    assert keys.uri == SPEC_VALUES["JWKS_URI"] and keys.is_ssl_verify_disabled is False
    claims = keys.additional_validation_policy
    assert claims.issuers == [SPEC_VALUES["ISSUER"]] and claims.audiences == [SPEC_VALUES["AUDIENCE"]]


def test_given_the_spec_when_deserialized_then_it_is_rate_limited_and_cors_is_explicit(
    deserializer: oci.base_client.BaseClient,
) -> None:
    # given / when
    instance, _ = _round_trip(deserializer, _spec(), "ApiSpecification")
    rate, cors = instance.request_policies.rate_limiting, instance.request_policies.cors
    # then
    assert rate.rate_in_requests_per_second > 0 and rate.rate_key in {"CLIENT_IP", "TOTAL"}
    assert cors.allowed_origins == [SPEC_VALUES["CORS_ALLOWED_ORIGIN"]] and "*" not in cors.allowed_origins
    assert cors.allowed_methods == ["POST", "GET", "DELETE"] and cors.is_allow_credentials_enabled is False


def test_given_the_template_when_read_then_placeholders_are_the_documented_ones() -> None:
    # given
    text = (KIT / "apigateway-deployment.json").read_text(encoding="utf-8")
    # when
    found = set(re.findall(r"\$\{([A-Z_]+)\}", text))
    # then
    assert found == set(SPEC_VALUES)
    # Besides placeholders, only the gateway's own context variable, escaped for templatefile().
    rest = re.sub(r"\$\{[A-Z_]+\}", "", text).replace(GATEWAY_SUBJECT_ESCAPED, "")
    assert "%{" not in text and "$" not in rest


def test_given_the_custom_authorizer_alternative_when_deserialized_then_nothing_is_dropped(
    deserializer: oci.base_client.BaseClient,
) -> None:
    # given
    text = (KIT / "apigateway-authentication-custom-function.json").read_text(encoding="utf-8")
    auth = json.loads(policies.fill(text, {"AUTHORIZER_FUNCTION_OCID": FUNCTION}))
    # when
    instance, kept = _round_trip(deserializer, auth, "AuthenticationPolicy")
    # then
    assert isinstance(instance, oci.apigateway.models.CustomAuthenticationPolicy)
    assert kept == _snake_keys(auth) and instance.is_anonymous_access_allowed is False


def test_given_the_renderer_when_asked_for_the_spec_then_it_matches_the_template(
    capsys: pytest.CaptureFixture[str],
) -> None:
    # given
    argv = [
        "--format",
        "gateway-spec",
        "--function-ocid",
        FUNCTION,
        "--issuer",
        SPEC_VALUES["ISSUER"],
        "--audience",
        SPEC_VALUES["AUDIENCE"],
        "--jwks-uri",
        SPEC_VALUES["JWKS_URI"],
        "--cors-allowed-origin",
        SPEC_VALUES["CORS_ALLOWED_ORIGIN"],
    ]
    # when
    assert policies.main(argv) == 0
    # then
    assert json.loads(capsys.readouterr().out) == _spec()


# --- who called: the caller header ---------------------------------------------------------


def _gateway_sets_headers(route: Any, incoming: dict[str, str], subject: str) -> dict[str, str]:
    """What a route's setHeaders policy does to a request's headers, as the oci SDK's SetHeaderPolicyItem
    documents ifExists: "OVERWRITE will overwrite the value, APPEND will append to the existing value,
    or SKIP will keep the existing value"."""
    headers = {name.lower(): value for name, value in incoming.items()}
    for item in route.request_policies.header_transformations.set_headers.items:
        value = ",".join(v.replace(GATEWAY_SUBJECT, subject) for v in item.values)
        key = item.name.lower()
        if key not in headers or item.if_exists == "OVERWRITE":
            headers[key] = value
        elif item.if_exists == "APPEND":
            headers[key] = f"{headers[key]},{value}"
    return headers


def test_given_the_spec_when_deserialized_then_every_route_sets_the_caller_from_the_jwt_subject(
    deserializer: oci.base_client.BaseClient,
) -> None:
    # given / when
    instance, _ = _round_trip(deserializer, _spec(), "ApiSpecification")
    # then: one item per route, the subject claim, OVERWRITE (so a caller cannot send its own)
    for route in instance.routes:
        (item,) = route.request_policies.header_transformations.set_headers.items
        assert isinstance(item, oci.apigateway.models.SetHeaderPolicyItem)
        assert (item.name, item.values, item.if_exists) == (CALLER_HEADER, [GATEWAY_SUBJECT], "OVERWRITE")


def test_given_a_forged_caller_header_when_the_route_policy_applies_then_the_subject_replaces_it(
    deserializer: oci.base_client.BaseClient,
) -> None:
    # given: a caller that sends its own X-Genai-Caller
    instance, _ = _round_trip(deserializer, _spec(), "ApiSpecification")
    forged = {CALLER_HEADER: "admin", "Content-Type": "application/json"}
    # when
    seen = [_gateway_sets_headers(route, forged, "alice@example.com") for route in instance.routes]
    # then: the function only ever sees the token's subject
    assert [headers[CALLER_HEADER.lower()] for headers in seen] == ["alice@example.com"] * len(instance.routes)


def test_given_skip_or_append_when_the_route_policy_applies_then_the_forgery_would_survive(
    deserializer: oci.base_client.BaseClient,
) -> None:
    # given: the same spec with a weaker ifExists (what the OVERWRITE assertion protects against)
    spec = _spec()
    for route in spec["routes"]:
        route["requestPolicies"]["headerTransformations"]["setHeaders"]["items"][0]["ifExists"] = "SKIP"
    instance, _ = _round_trip(deserializer, spec, "ApiSpecification")
    # when
    headers = _gateway_sets_headers(instance.routes[0], {CALLER_HEADER: "admin"}, "alice@example.com")
    # then
    assert headers[CALLER_HEADER.lower()] == "admin"
