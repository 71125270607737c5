"""The API Gateway specification and the Terraform module, checked with independent parsers.

The specification must survive the oci SDK's own models (the CLI sends what they keep: a
misspelt field would be dropped silently), and the Terraform files, parsed with python-hcl2,
must read the same templates and produce the same statements as the renderer.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any, Iterator

import hcl2
import oci
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa

from genai_handler import policies

ROOT = Path(__file__).resolve().parent.parent
KIT = ROOT / "policies"
TF = KIT / "terraform"
FUNCTION = "ocid1.fnfunc.oc1.us-chicago-1.aaaaaaaafunction"
SPEC_VALUES = {
    "FUNCTION_OCID": FUNCTION,
    "ISSUER": "https://identity.oraclecloud.com/",
    "AUDIENCE": "https://genai-api.example.com",
    "JWKS_URI": "https://idcs-0123.identity.oraclecloud.com/admin/v1/SigningCert/jwk",
    "CORS_ALLOWED_ORIGIN": "https://app.example.com",
}
# Settings that must not travel through function config: a secret, and local-only files.
NOT_FUNCTION_CONFIG = {"GENAI_API_KEY", "GENAI_OCI_CONFIG_FILE", "GENAI_OCI_PROFILE"}
PRODUCT_SETTINGS = {
    "GENAI_PROJECT_OCID", "GENAI_REGION", "GENAI_BASE_URL", "GENAI_MODEL", "GENAI_ALLOWED_MODELS",
    "GENAI_AUTH", "GENAI_COMPARTMENT_OCID", "GENAI_MAX_BODY_BYTES", "GENAI_MAX_INPUT_CHARS",
    "GENAI_MAX_OUTPUT_TOKENS", "GENAI_LOG_PROMPTS", "GENAI_ALLOW_STORED_RESPONSES",
}


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


def _literal(value: Any) -> Any:
    """hcl2 keeps the quotes of string literals: '"x"' -> 'x'."""
    return json.loads(value) if isinstance(value, str) and value[:1] == value[-1:] == '"' else value


def _tfvars() -> dict[str, Any]:
    parsed = hcl2.loads((TF / "terraform.tfvars.example").read_text(encoding="utf-8"))
    return {key: _literal(value) for key, value in parsed.items() if not key.startswith("__")}


def _load_tf(name: str) -> dict:
    with open(TF / name, encoding="utf-8") as handle:
        return hcl2.load(handle)


def _unquote(label: str) -> str:
    return label.strip('"')


def _blocks(items: list[dict], kind: str) -> dict[str, dict]:
    """hcl2 keeps labels quoted: {'"oci_x"': {'"name"': body}} -> {'oci_x.name': body}."""
    found: dict[str, dict] = {}
    for item in items:
        for type_label, named in item.items():
            if type_label.startswith("__"):
                continue
            if kind == "resource":
                for name, body in named.items():
                    found[f"{_unquote(type_label)}.{_unquote(name)}"] = body
            else:
                found[_unquote(type_label)] = named
    return found


@pytest.fixture(scope="module")
def main_tf() -> dict:
    return _load_tf("main.tf")


@pytest.fixture(scope="module")
def tf_locals(main_tf: dict) -> dict[str, Any]:
    merged: dict[str, Any] = {}
    for block in main_tf["locals"]:
        merged.update({k: v for k, v in block.items() if not k.startswith("__")})
    return merged


@pytest.fixture(scope="module")
def resources(main_tf: dict) -> dict[str, dict]:
    return _blocks(main_tf["resource"], "resource")


@pytest.fixture(scope="module")
def tf_variables() -> dict[str, dict]:
    return _blocks(_load_tf("variables.tf")["variable"], "variable")


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


def test_given_the_spec_when_deserialized_then_every_route_posts_to_the_function(
    deserializer: oci.base_client.BaseClient,
) -> None:
    # given / when
    instance, _ = _round_trip(deserializer, _spec(), "ApiSpecification")
    # then
    assert {route.path for route in instance.routes} == {"/chat", "/v1/responses"}
    for route in instance.routes:
        assert route.methods == ["POST"]
        assert isinstance(route.backend, oci.apigateway.models.OracleFunctionBackend)
        assert route.backend.function_id == FUNCTION
        assert route.request_policies.authorization.type == "AUTHENTICATION_ONLY"


def test_given_the_spec_when_deserialized_then_a_valid_jwt_is_required(
    deserializer: oci.base_client.BaseClient,
) -> None:
    # given / when
    instance, _ = _round_trip(deserializer, _spec(), "ApiSpecification")
    auth = instance.request_policies.authentication
    # then
    assert isinstance(auth, oci.apigateway.models.JwtAuthenticationPolicy)
    assert auth.is_anonymous_access_allowed is False
    assert (auth.token_header, auth.token_auth_scheme) == ("Authorization", "Bearer")
    assert auth.issuers == [SPEC_VALUES["ISSUER"]] and auth.audiences == [SPEC_VALUES["AUDIENCE"]]
    assert isinstance(auth.public_keys, oci.apigateway.models.RemoteJsonWebKeySet)
    assert auth.public_keys.uri == SPEC_VALUES["JWKS_URI"] and auth.public_keys.is_ssl_verify_disabled is False


def test_given_the_spec_when_deserialized_then_it_is_rate_limited_and_cors_is_explicit(
    deserializer: oci.base_client.BaseClient,
) -> None:
    # given / when
    instance, _ = _round_trip(deserializer, _spec(), "ApiSpecification")
    rate, cors = instance.request_policies.rate_limiting, instance.request_policies.cors
    # then
    assert rate.rate_in_requests_per_second > 0 and rate.rate_key in {"CLIENT_IP", "TOTAL"}
    assert cors.allowed_origins == [SPEC_VALUES["CORS_ALLOWED_ORIGIN"]] and "*" not in cors.allowed_origins
    assert cors.allowed_methods == ["POST"] and cors.is_allow_credentials_enabled is False


def test_given_the_template_when_read_then_placeholders_are_the_documented_ones() -> None:
    # given
    text = (KIT / "apigateway-deployment.json").read_text(encoding="utf-8")
    # when
    found = set(re.findall(r"\$\{([A-Z_]+)\}", text))
    # then
    assert found == set(SPEC_VALUES)
    assert "%{" not in text and "$" not in re.sub(r"\$\{[A-Z_]+\}", "", text)


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
    argv = ["--format", "gateway-spec", "--function-ocid", FUNCTION, "--issuer", SPEC_VALUES["ISSUER"],
            "--audience", SPEC_VALUES["AUDIENCE"], "--jwks-uri", SPEC_VALUES["JWKS_URI"],
            "--cors-allowed-origin", SPEC_VALUES["CORS_ALLOWED_ORIGIN"]]
    # when
    assert policies.main(argv) == 0
    # then
    assert json.loads(capsys.readouterr().out) == _spec()


# --- Terraform ----------------------------------------------------------------------------


def test_given_the_module_when_parsed_then_every_file_loads_and_declares_what_it_creates(
    resources: dict[str, dict],
) -> None:
    # given / when
    outputs = _blocks(_load_tf("outputs.tf")["output"], "output")
    # then
    assert set(resources) == {
        "oci_identity_dynamic_group.functions", "oci_identity_policy.genai", "oci_identity_policy.gateway",
        "oci_functions_application.this", "oci_functions_function.this",
        "oci_apigateway_gateway.this", "oci_apigateway_deployment.this",
    }
    assert "endpoint_url" in outputs and "oci_apigateway_deployment.this.endpoint" in outputs["endpoint_url"]["value"]
    assert all(body.get("description") for body in outputs.values())


def test_given_the_variables_when_parsed_then_each_is_documented_and_the_example_fills_the_required(
    tf_variables: dict[str, dict],
) -> None:
    # given
    example = _tfvars()
    # when
    required = {name for name, body in tf_variables.items() if "default" not in body}
    # then
    assert all(body.get("description") for body in tf_variables.values())
    assert required <= set(example) <= set(tf_variables)


def test_given_the_function_when_parsed_then_its_config_carries_every_setting(
    tf_locals: dict[str, Any], resources: dict[str, dict], tf_variables: dict[str, dict],
) -> None:
    # given
    settings_py = ROOT / "genai_handler" / "settings.py"
    in_code = set(re.findall(r'"(GENAI_[A-Z_]+)"', settings_py.read_text())) if settings_py.exists() else set()
    function = resources["oci_functions_function.this"]
    # when
    configured = tf_locals["genai_settings"]
    # then
    assert PRODUCT_SETTINGS | (in_code - NOT_FUNCTION_CONFIG) <= set(configured)
    assert not NOT_FUNCTION_CONFIG & set(configured)
    for key, expression in configured.items():
        assert expression == "${var.%s}" % key.lower(), key
        assert key.lower() in tf_variables
    assert "local.genai_settings" in function["config"]
    assert (tf_variables["function_memory_in_mbs"]["default"], tf_variables["function_timeout_in_seconds"]["default"]) == (256, 60)
    assert function["image"] == "${var.function_image}"


def _template_reads(expression: str) -> tuple[str, str]:
    """(template file, vars expression) of the one templatefile() call in a local."""
    (call,) = re.findall(r'templatefile\("\$\{local\.kit\}/([^"]+)", (\{[^}]*\}|local\.\w+)\)', expression)
    return call


# The renderer's read_template(): split on newlines, strip, drop blank and # lines.
_LINE_FILTER = 'for line in split("\\n", templatefile('
_LINE_KEEP = 'trimspace(line) if trimspace(line) != "" && !startswith(trimspace(line), "#")]'


@pytest.mark.parametrize(
    "local, template",
    [
        ("function_statements", "function-policy.txt"),
        ("gateway_statements", "gateway-policy.txt"),
        ("compartment_rule", "dynamic-group.txt"),
        ("function_rule", "dynamic-group-one-function.txt"),
    ],
)
def test_given_the_iam_locals_when_parsed_then_they_read_the_renderers_templates_the_same_way(
    tf_locals: dict[str, Any], local: str, template: str,
) -> None:
    # given
    expression = tf_locals[local]
    placeholders = set(re.findall(r"\$\{([A-Z_]+)\}", (KIT / template).read_text()))
    # when
    read, variables = _template_reads(expression)
    supplied = set(tf_locals["policy_values"]) if variables == "local.policy_values" else set(re.findall(r"(\w+) =", variables))
    # then
    assert read == template
    assert placeholders <= supplied
    assert _LINE_FILTER in expression and _LINE_KEEP in expression
    assert expression.startswith("${one(") == ("rule" in local)


def _evaluate(expression: str, tf_locals: dict[str, Any], tfvars: dict[str, Any], variables: dict[str, dict]) -> str:
    """Just enough Terraform to resolve var.x, local.x and coalesce() as used by policy_values."""
    inner = expression[2:-1] if expression.startswith("${") else expression
    if inner.startswith("coalesce("):
        for arg in inner[len("coalesce("):-1].split(", "):
            value = _evaluate(arg, tf_locals, tfvars, variables)
            if value:
                return value
        raise AssertionError(f"coalesce of nothing: {expression}")
    kind, name = inner.split(".", 1)
    if kind == "var":
        return tfvars.get(name, _literal(variables[name].get("default")))
    assert kind == "local", expression
    return _evaluate(tf_locals[name], tf_locals, tfvars, variables)


@pytest.mark.parametrize("gateway, genai", [(False, False), (True, True)])
def test_given_tfvars_when_terraform_fills_the_templates_then_it_grants_what_the_renderer_renders(
    tf_locals: dict[str, Any], resources: dict[str, dict], tf_variables: dict[str, dict], gateway: bool, genai: bool,
) -> None:
    # given
    tfvars = _tfvars()
    if gateway:
        tfvars["gateway_compartment_ocid"] = "ocid1.compartment.oc1..aaaaaaaagateway"
    if genai:
        tfvars["genai_project_compartment_ocid"] = "ocid1.compartment.oc1..aaaaaaaagenai"
    values = {key: _evaluate(expr, tf_locals, tfvars, tf_variables) for key, expr in tf_locals["policy_values"].items()}
    # when
    terraform = {
        "genai": [policies.fill(s, values) for s in policies.read_template("function-policy.txt")],
        "gateway": [policies.fill(s, values) for s in policies.read_template("gateway-policy.txt")],
        "rule": policies.fill(policies.read_template("dynamic-group.txt")[0], values),
    }
    rendered = policies.render(
        tfvars["compartment_ocid"], tfvars["dynamic_group_name"],
        tfvars.get("gateway_compartment_ocid"), tfvars.get("genai_project_compartment_ocid"),
    )
    # then
    by_name = {p.name.removeprefix(f"{tfvars['dynamic_group_name']}-"): p for p in rendered.policies}
    assert terraform["rule"] == rendered.matching_rule
    for key in ("genai", "gateway"):
        resource = resources[f"oci_identity_policy.{key}"]
        assert resource["statements"] == f"${{local.{key if key == 'gateway' else 'function'}_statements}}"
        assert terraform[key] == by_name[key].statements
        assert _evaluate(resource["compartment_id"], tf_locals, tfvars, tf_variables) == by_name[key].compartment_ocid
        name = _literal(resource["name"]).replace("${var.dynamic_group_name}", tfvars["dynamic_group_name"])
        assert name == by_name[key].name


def test_given_the_dynamic_group_when_parsed_then_it_uses_the_template_rules(resources: dict[str, dict]) -> None:
    # given / when
    group = resources["oci_identity_dynamic_group.functions"]
    # then
    assert group["compartment_id"] == "${var.tenancy_ocid}"
    assert group["name"] == "${var.dynamic_group_name}"
    assert group["matching_rule"] == "${var.pin_dynamic_group_to_function ? local.function_rule : local.compartment_rule}"


def _hcl_attributes(block: dict, path: tuple[str, ...] = ()) -> Iterator[tuple[tuple[str, ...], str]]:
    """Attribute paths of a parsed block; `dynamic "x"` content counts as block x[]."""
    for key, value in block.items():
        if key.startswith("__"):
            continue
        if key == "dynamic":
            for dynamic in value:
                for label, body in dynamic.items():
                    (content,) = body["content"]
                    yield from _hcl_attributes(content, (*path, _unquote(label), "[]"))
        elif isinstance(value, list) and value and all(isinstance(v, dict) and v.get("__is_block__") for v in value):
            (inner,) = value
            yield from _hcl_attributes(inner, (*path, key))
        else:
            yield (*path, key), value


def test_given_the_deployment_when_parsed_then_every_spec_field_is_read_from_the_json(
    tf_locals: dict[str, Any], resources: dict[str, dict],
) -> None:
    # given
    (specification,) = resources["oci_apigateway_deployment.this"]["specification"]
    aliases = {f"local.{name}": tf_locals[name][2:-1] for name in ("auth", "rate", "cors")}
    expected = {tuple(_snake(part) for part in path): path for path, _ in _leaves(_spec_template())}
    # when
    found: dict[tuple[str, ...], str] = {}
    for path, expression in _hcl_attributes(specification):
        if path[-1] == "for_each":
            continue
        reference = expression[2:-1]
        for alias, target in aliases.items():
            reference = re.sub(rf"^{re.escape(alias)}\b", target, reference)
        found[path] = reference
    # then: same fields, and each reads exactly its own JSON path
    assert set(found) == set(expected)
    for snake_path, json_path in expected.items():
        if "[]" in json_path:
            index = json_path.index("[]")
            assert found[snake_path] == ".".join(("routes.value", *json_path[index + 1:])), snake_path
        else:
            assert found[snake_path] == ".".join(("local.spec", *json_path)), snake_path
    dynamic = specification["dynamic"][0]['"routes"']
    assert dynamic["for_each"] == "${local.spec.routes}"


def test_given_the_spec_local_when_parsed_then_it_loads_the_json_with_every_placeholder(tf_locals: dict[str, Any]) -> None:
    # given
    expression = tf_locals["spec"]
    # when
    read, variables = _template_reads(expression)
    # then
    assert expression.startswith("${jsondecode(templatefile(")
    assert read == "apigateway-deployment.json"
    assert set(re.findall(r"(\w+) =", variables)) == set(SPEC_VALUES)
