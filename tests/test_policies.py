"""The IAM templates and their renderer, checked with an independent OCI policy grammar.

Nothing here can be applied to OCI, so every statement and matching rule goes through
oci-lexer-parser (an ANTLR grammar of OCI policy language, not ours) and least privilege
is asserted on the parsed form, never on our own strings.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from oci_lexer_parser import parse_dynamic_group_matching_rules, parse_policy_statements

from genai_handler import policies

from .conftest import DEPLOYED_ROUTES as ROUTES

ROOT = Path(__file__).resolve().parent.parent
FN_COMPARTMENT = "ocid1.compartment.oc1..aaaaaaaafunctioncompartment"
GATEWAY_COMPARTMENT = "ocid1.compartment.oc1..aaaaaaaagatewaycompartment"
GENAI_COMPARTMENT = "ocid1.compartment.oc1..aaaaaaaagenaicompartment"
FUNCTION = "ocid1.fnfunc.oc1.us-chicago-1.aaaaaaaafunction"
TENANCY = "ocid1.tenancy.oc1..aaaaaaaatenancy"
DG = "genai-functions"


def _statements(text: str | list[str]) -> list[dict[str, Any]]:
    parsed = parse_policy_statements(text)
    assert isinstance(parsed, dict)  # a tuple only with error_mode="report"
    return parsed["statements"]


def _rule(text: str) -> dict[str, Any]:
    parsed = parse_dynamic_group_matching_rules(text)
    assert isinstance(parsed, dict)
    (rule,) = parsed["rules"]
    return rule["expr"]


def _clauses(group: dict[str, Any]) -> dict[str, tuple[str, str]]:
    """Flatten an ALL group into {lhs: (op, value)}; anything else is not what we ship."""
    assert group["type"] == "group" and group["mode"] == "all"
    assert all(item["type"] == "clause" for item in group["items"])
    return {item["node"]["lhs"]: (item["node"]["op"], item["node"]["rhs"]["value"]) for item in group["items"]}


def _label(subject: dict[str, Any]) -> list[str]:
    return [value["label"] if isinstance(value, dict) else value for value in subject["values"]]


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run(
        [sys.executable, "-m", "genai_handler.policies", *args],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env=env,
        timeout=60,
    )


@pytest.fixture(scope="module")
def rendered() -> policies.Rendered:
    return policies.render(FN_COMPARTMENT, DG, GATEWAY_COMPARTMENT, GENAI_COMPARTMENT)


# --- the grammar is a real check --------------------------------------------------


def test_given_malformed_statements_when_parsed_then_the_grammar_rejects_them() -> None:
    # given / when / then
    for bad in (
        "Allow to use functions-family in tenancy",
        "Allow dynamic-group x use generative-ai-family in tenancy",
        "Allow any-user to use functions-family in compartment id ocid1.compartment.oc1..a where ALL {",
    ):
        with pytest.raises(ValueError, match="syntax error while parsing"):
            parse_policy_statements(bad)
    with pytest.raises(ValueError, match="syntax error while parsing matching rules"):
        parse_dynamic_group_matching_rules("ALL {resource.type = 'fnfunc',")


# --- the templates on their own -----------------------------------------------------


@pytest.mark.parametrize(
    "name",
    [
        "dynamic-group.txt",
        "dynamic-group-one-function.txt",
        "function-policy.txt",
        "gateway-policy.txt",
        "deployer-policy.txt",
    ],
)
def test_given_a_template_when_read_then_it_only_uses_placeholders_terraform_can_fill(name: str) -> None:
    # given
    text = (ROOT / "policies" / name).read_text(encoding="utf-8")
    # when
    stray_dollars = re.sub(r"\$\{[A-Z][A-Z0-9_]*\}", "", text)
    # then: templatefile() would treat any other ${ or %{ as an expression
    assert "$" not in stray_dollars and "%{" not in text
    assert text.isascii()


def test_given_the_deployer_policy_when_parsed_then_it_is_labelled_and_scoped() -> None:
    # given
    lines = policies.read_template("deployer-policy.txt")
    values = dict.fromkeys(
        ("FUNCTION_COMPARTMENT_OCID", "GATEWAY_COMPARTMENT_OCID", "NETWORK_COMPARTMENT_OCID", "REPO_COMPARTMENT_OCID"),
        "ocid1.compartment.oc1..aaaaaaaadeploy",
    )
    values["DEPLOYER_GROUP"] = "genai-deployers"
    # when
    parsed = _statements([policies.fill(line, values) for line in lines])
    # then
    assert "FOR THE PEOPLE OR PIPELINE WHO DEPLOY" in (ROOT / "policies" / "deployer-policy.txt").read_text()
    by_resource = {s["resources"]["values"][0]: s for s in parsed}
    assert set(by_resource) == {
        "objectstorage-namespaces",
        "repos",
        "functions-family",
        "metrics",
        "logging-family",
        "virtual-network-family",
        "api-gateway-family",
    }
    for statement in parsed:
        assert statement["resources"]["type"] == "specific"
        assert statement["resources"]["values"] != ["all-resources"]
        if statement["location"]["type"] == "tenancy":
            verb = statement["actions"]["values"]
            assert verb == ["read"], statement
    (faas,) = [s for s in parsed if s["subject"]["type"] == "service"]
    assert _label(faas["subject"]) == ["faas"]
    assert _clauses(faas["conditions"]) == {"request.operation": ("eq", "ListContainerImageSignatures")}
    assert {s["subject"]["type"] for s in parsed} == {"group", "service"}


# --- the rendered statements: least privilege on the parsed form ---------------------


def test_given_separate_compartments_when_rendered_then_the_function_may_only_use_generative_ai(
    rendered: policies.Rendered,
) -> None:
    # given / when
    (policy,) = [p for p in rendered.policies if p.name == f"{DG}-genai"]
    (statement,) = _statements(policy.statements)
    # then
    assert policy.compartment_ocid == GENAI_COMPARTMENT
    assert statement["kind"] == "allow"
    assert statement["subject"]["type"] == "dynamic-group" and _label(statement["subject"]) == [DG]
    assert statement["actions"] == {"type": "verbs", "values": ["use"]}
    assert statement["resources"] == {"type": "specific", "values": ["generative-ai-family"]}
    assert statement["location"] == {"type": "compartment-id", "values": [GENAI_COMPARTMENT]}


def test_given_separate_compartments_when_rendered_then_only_gateways_of_one_compartment_may_invoke(
    rendered: policies.Rendered,
) -> None:
    # given / when
    (policy,) = [p for p in rendered.policies if p.name == f"{DG}-gateway"]
    (statement,) = _statements(policy.statements)
    # then
    assert policy.compartment_ocid == FN_COMPARTMENT
    assert statement["subject"]["type"] == "any-user"
    assert statement["actions"] == {"type": "verbs", "values": ["use"]}
    assert statement["resources"] == {"type": "specific", "values": ["functions-family"]}
    assert statement["location"] == {"type": "compartment-id", "values": [FN_COMPARTMENT]}
    assert _clauses(statement["conditions"]) == {
        "request.principal.type": ("eq", "ApiGateway"),
        "request.resource.compartment.id": ("eq", GATEWAY_COMPARTMENT),
    }


def test_given_any_inputs_when_rendered_then_nothing_is_tenancy_wide_or_manage(rendered: policies.Rendered) -> None:
    # given
    pinned = policies.render(FN_COMPARTMENT, DG, function_ocid=FUNCTION)
    # when
    parsed = _statements(rendered.statements) + _statements(pinned.statements)
    # then
    for statement in parsed:
        assert statement["location"]["type"] == "compartment-id"
        assert "manage" not in statement["actions"]["values"]
        assert "all-resources" not in statement["resources"]["values"]
        assert statement["subject"]["type"] in {"dynamic-group", "any-user"}
        if statement["subject"]["type"] == "any-user":
            assert statement["conditions"] is not None


def test_given_a_compartment_when_rendered_then_the_matching_rule_is_its_functions(rendered: policies.Rendered) -> None:
    # given / when
    expr = _rule(rendered.matching_rule)
    # then
    assert _clauses(expr) == {
        "resource.type": ("eq", "fnfunc"),
        "resource.compartment.id": ("eq", FN_COMPARTMENT),
    }


def test_given_a_function_ocid_when_rendered_then_the_matching_rule_is_pinned_to_it() -> None:
    # given / when
    pinned = policies.render(FN_COMPARTMENT, DG, function_ocid=FUNCTION)
    # then
    assert _clauses(_rule(pinned.matching_rule)) == {"resource.type": ("eq", "fnfunc"), "resource.id": ("eq", FUNCTION)}


def test_given_one_compartment_when_rendered_then_every_scope_defaults_to_it() -> None:
    # given / when
    rendered = policies.render(FN_COMPARTMENT, DG)
    # then
    parsed = _statements(rendered.statements)
    assert {s["location"]["values"][0] for s in parsed} == {FN_COMPARTMENT}
    assert _clauses(parsed[1]["conditions"])["request.resource.compartment.id"] == ("eq", FN_COMPARTMENT)
    assert {p.compartment_ocid for p in rendered.policies} == {FN_COMPARTMENT}


# --- output formats -------------------------------------------------------------------


def test_given_json_format_when_run_then_each_policy_keeps_its_name_compartment_and_description(
    rendered: policies.Rendered,
) -> None:
    # given three compartments: the policies must each say where they are attached
    args = [
        "--compartment-ocid",
        FN_COMPARTMENT,
        "--dynamic-group",
        DG,
        "--gateway-compartment-ocid",
        GATEWAY_COMPARTMENT,
        "--genai-compartment-ocid",
        GENAI_COMPARTMENT,
        "--format",
        "json",
    ]
    # when
    result = _run(*args)
    # then
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == {
        "dynamic_group": {"name": DG, "matching_rule": rendered.matching_rule},
        "policies": [
            {
                "name": p.name,
                "compartment": p.compartment_ocid,
                "description": p.description,
                "statements": p.statements,
            }
            for p in rendered.policies
        ],
    }
    by_name = {p["name"]: p for p in json.loads(result.stdout)["policies"]}
    assert by_name[f"{DG}-genai"]["compartment"] == GENAI_COMPARTMENT
    assert by_name[f"{DG}-gateway"]["compartment"] == FN_COMPARTMENT
    assert all(_statements(p["statements"]) for p in by_name.values())


def test_given_oci_cli_format_when_split_like_a_shell_then_the_arguments_round_trip(
    rendered: policies.Rendered,
    capsys: pytest.CaptureFixture[str],
) -> None:
    # given
    args = [
        "--compartment-ocid",
        FN_COMPARTMENT,
        "--dynamic-group",
        DG,
        "--gateway-compartment-ocid",
        GATEWAY_COMPARTMENT,
        "--genai-compartment-ocid",
        GENAI_COMPARTMENT,
        "--tenancy-ocid",
        TENANCY,
        "--format",
        "oci-cli",
    ]
    # when
    assert policies.main(args) == 0
    commands = [shlex.split(line) for line in capsys.readouterr().out.splitlines() if not line.startswith("#")]
    # then
    dg, *policy_commands = commands
    assert dg[:4] == ["oci", "iam", "dynamic-group", "create"]
    dg_opts = dict(zip(dg[4::2], dg[5::2], strict=True))
    assert dg_opts == {
        "--compartment-id": TENANCY,
        "--name": DG,
        "--description": dg_opts["--description"],
        "--matching-rule": rendered.matching_rule,
    }
    assert len(policy_commands) == len(rendered.policies)
    for command, policy in zip(policy_commands, rendered.policies, strict=True):
        assert command[:4] == ["oci", "iam", "policy", "create"]
        opts = dict(zip(command[4::2], command[5::2], strict=True))
        assert opts["--compartment-id"] == policy.compartment_ocid
        assert opts["--name"] == policy.name and opts["--description"]
        assert json.loads(opts["--statements"]) == policy.statements


def test_given_no_tenancy_when_oci_cli_format_then_the_commands_use_a_shell_variable(
    capsys: pytest.CaptureFixture[str],
) -> None:
    # given / when
    assert policies.main(["--compartment-ocid", FN_COMPARTMENT, "--dynamic-group", DG, "--format", "oci-cli"]) == 0
    out = capsys.readouterr().out
    # then
    assert '--compartment-id "$TENANCY_OCID"' in out
    assert out.splitlines()[0].startswith("# Set TENANCY_OCID")


def test_given_text_format_when_run_then_every_statement_is_shown(
    rendered: policies.Rendered,
    capsys: pytest.CaptureFixture[str],
) -> None:
    # given / when
    policies.main(
        [
            "--compartment-ocid",
            FN_COMPARTMENT,
            "--dynamic-group",
            DG,
            "--gateway-compartment-ocid",
            GATEWAY_COMPARTMENT,
            "--genai-compartment-ocid",
            GENAI_COMPARTMENT,
        ]
    )
    out = capsys.readouterr().out
    # then
    for text in [rendered.matching_rule, *rendered.statements, *(p.compartment_ocid for p in rendered.policies)]:
        assert text in out


# --- refusals ---------------------------------------------------------------------------

_GOOD = {"--compartment-ocid": FN_COMPARTMENT, "--dynamic-group": DG}
_REFUSED = [
    {"--compartment-ocid": "ocid1.compartment.oc1..aaaa' , request.principal.type = 'x"},
    {"--compartment-ocid": "ocid1.instance.oc1..aaaaaaaa"},
    {"--compartment-ocid": "compartment-name"},
    {"--dynamic-group": "genai to manage all-resources in tenancy //"},
    {"--dynamic-group": "has space"},
    {"--dynamic-group": "x" * 91},
    {"--dynamic-group": "9starts-with-digit"},
    {"--gateway-compartment-ocid": "ocid1.compartment.oc1..aaaa\nAllow any-user to manage all-resources in tenancy"},
    {"--genai-compartment-ocid": ""},
    {"--function-ocid": "ocid1.compartment.oc1..aaaaaaaa"},
    {"--format": "yaml"},
    {"--compartment-ocid": None},
]


@pytest.mark.parametrize("override", _REFUSED, ids=lambda o: next(iter(o)))
def test_given_malformed_input_when_main_runs_then_it_exits_2_with_one_line(
    override: dict[str, str | None],
    capsys: pytest.CaptureFixture[str],
) -> None:
    # given
    options = {**_GOOD, **override}
    argv = [arg for key, value in options.items() if value is not None for arg in (key, value)]
    # when
    code = _exit_code(argv)
    captured = capsys.readouterr()
    # then
    assert code == 2
    assert captured.out == ""
    assert len(captured.err.strip().splitlines()) == 1 and "error:" in captured.err


def _exit_code(argv: list[str]) -> int | str | None:
    """argparse refusals raise SystemExit; ours return 2: the user sees the same either way."""
    try:
        return policies.main(argv)
    except SystemExit as exc:
        return exc.code


@pytest.mark.parametrize(
    "argv",
    [
        ["--compartment-ocid", "ocid1.compartment.oc1..x'y", "--dynamic-group", DG],
        ["--compartment-ocid", FN_COMPARTMENT, "--dynamic-group", "bad name"],
        ["--compartment-ocid", FN_COMPARTMENT],
        ["--compartment-ocid", FN_COMPARTMENT, "--dynamic-group", DG, "--format", "xml"],
        [
            "--format",
            "gateway-spec",
            "--function-ocid",
            FUNCTION,
            "--issuer",
            "http://insecure.example.com",
            "--audience",
            "a",
            "--jwks-uri",
            "https://idp.example.com/jwks",
            "--cors-allowed-origin",
            "https://a.example",
        ],
        # any origin: the one origin rule (tests/test_stack.py runs its whole table here, in schema.yaml and Terraform)
        [
            "--format",
            "gateway-spec",
            "--function-ocid",
            FUNCTION,
            "--issuer",
            "https://idp.example.com",
            "--audience",
            "a",
            "--jwks-uri",
            "https://idp.example.com/jwks",
            "--cors-allowed-origin",
            "*",
        ],
    ],
)
def test_given_malformed_input_when_run_as_a_process_then_exit_2_one_line_no_traceback(argv: list[str]) -> None:
    # given / when
    result = _run(*argv)
    # then
    assert result.returncode == 2
    assert result.stdout == ""
    assert len(result.stderr.strip().splitlines()) == 1
    assert "Traceback" not in result.stderr and "error:" in result.stderr


# --- the gateway specification through the renderer -------------------------------------


_ISSUER = "https://identity.oraclecloud.com/"
_JWKS_URI = "https://idcs-1.identity.oraclecloud.com/admin/v1/SigningCert/jwk"
_ORIGIN = "https://app.example.com"


def test_given_gateway_values_when_rendered_then_every_placeholder_is_filled() -> None:
    # given
    audience = "api://genai?team='a'&x=1"
    # when
    spec = policies.render_gateway_spec(FUNCTION, _ISSUER, audience, _JWKS_URI, _ORIGIN)
    # then
    assert "${" not in json.dumps(spec).replace("${request.auth[sub]}", "")
    claims = spec["requestPolicies"]["authentication"]["validationPolicy"]["additionalValidationPolicy"]
    assert claims == {"issuers": [_ISSUER], "audiences": [audience]}
    assert {route["backend"]["functionId"] for route in spec["routes"]} == {FUNCTION}


def test_given_the_spec_when_rendered_then_the_gateway_validates_tokens_as_oracle_recommends_for_new_deployments() -> (
    None
):
    """Oracle recommends TOKEN_AUTHENTICATION, not JWT_AUTHENTICATION, for new deployments ("Validating
    Tokens to Add Authentication and Authorization to API Deployments", docs.oracle.com/en-us/iaas/Content/
    APIGateway/Tasks/apigatewayusingjwttokens.htm). Field names: the oci SDK's TokenAuthenticationPolicy,
    TokenAuthenticationRemoteJWKSValidationPolicy and AdditionalValidationPolicy."""
    # given
    audience = "https://genai-api.example.com/"
    # when
    auth = policies.render_gateway_spec(FUNCTION, _ISSUER, audience, _JWKS_URI, _ORIGIN)["requestPolicies"][
        "authentication"
    ]
    # then
    assert auth == {
        "type": "TOKEN_AUTHENTICATION",
        "isAnonymousAccessAllowed": False,
        "tokenHeader": "Authorization",
        "tokenAuthScheme": "Bearer",
        "maxClockSkewInSeconds": 60,
        "validationPolicy": {
            "type": "REMOTE_JWKS",
            "uri": _JWKS_URI,
            "isSslVerifyDisabled": False,
            "maxCacheDurationInHours": 1,
            "additionalValidationPolicy": {"issuers": [_ISSUER], "audiences": [audience]},
        },
    }


def test_given_the_spec_file_when_filled_by_hand_then_the_renderer_prints_the_same_spec(
    capsys: pytest.CaptureFixture[str],
) -> None:
    # given: what Terraform's templatefile() would make of the file
    values = {
        "FUNCTION_OCID": FUNCTION,
        "ISSUER": _ISSUER,
        "AUDIENCE": "https://genai-api.example.com/",
        "JWKS_URI": _JWKS_URI,
        "CORS_ALLOWED_ORIGIN": _ORIGIN,
    }
    template = (ROOT / "policies" / "apigateway-deployment.json").read_text(encoding="utf-8")
    # when
    code = policies.main(
        [
            "--format",
            "gateway-spec",
            "--function-ocid",
            FUNCTION,
            "--issuer",
            _ISSUER,
            "--audience",
            values["AUDIENCE"],
            "--jwks-uri",
            _JWKS_URI,
            "--cors-allowed-origin",
            _ORIGIN,
        ]
    )
    # then
    assert code == 0
    assert json.loads(capsys.readouterr().out) == json.loads(policies.fill(template, values))
    assert set(re.findall(r"\$\{([A-Z_]+)\}", template)) == set(values)


def test_given_the_custom_authorizer_block_when_filled_then_it_replaces_the_token_check_one_for_one() -> None:
    # given
    text = (ROOT / "policies" / "apigateway-authentication-custom-function.json").read_text(encoding="utf-8")
    # when
    block = json.loads(policies.fill(text, {"AUTHORIZER_FUNCTION_OCID": FUNCTION}))
    spec = policies.render_gateway_spec(FUNCTION, _ISSUER, "aud", _JWKS_URI, _ORIGIN)
    # then: same header, anonymous access still off
    auth = spec["requestPolicies"]["authentication"]
    assert block["type"] == "CUSTOM_AUTHENTICATION" and block["functionId"] == FUNCTION
    assert (block["tokenHeader"], block["isAnonymousAccessAllowed"]) == (auth["tokenHeader"], False)


def test_given_the_gateways_own_context_variable_when_filled_then_it_is_unescaped_as_templatefile_does() -> None:
    # given: Terraform's templatefile() reads "$${" as a literal "${" and fills ${NAME}
    text = '{"caller": "$${request.auth[sub]}", "fn": "${FUNCTION_OCID}", "literal": "$$${FUNCTION_OCID}"}'
    # when
    filled = json.loads(policies.fill(text, {"FUNCTION_OCID": FUNCTION}))
    # then
    assert filled == {"caller": "${request.auth[sub]}", "fn": FUNCTION, "literal": "$${FUNCTION_OCID}"}


def test_given_the_renderer_when_asked_for_the_spec_then_every_route_overwrites_the_caller_header() -> None:
    # given / when
    spec = policies.render_gateway_spec(FUNCTION, _ISSUER, "aud", _JWKS_URI, _ORIGIN)
    # then
    for route in spec["routes"]:
        items = route["requestPolicies"]["headerTransformations"]["setHeaders"]["items"]
        assert items == [{"name": "X-Genai-Caller", "values": ["${request.auth[sub]}"], "ifExists": "OVERWRITE"}]


# --- the routes ------------------------------------------------------------------------------------

# OCI API Gateway's route path syntax ("Adding Path Parameters and Wildcards to Route Paths",
# docs.oracle.com/en-us/iaas/Content/APIGateway/Tasks/apigatewayaddingparamswildcards.htm): a path
# parameter is a name in curly brackets that stands for exactly one whole segment; the name may hold
# upper- and lower-case letters, digits and `_`, nothing else. `{name*}` (a wildcard over the rest of
# the path) is not used here: each stored object has its own exact route.
_ROUTE_SEGMENT = re.compile(r"[A-Za-z0-9._~-]+|\{[A-Za-z0-9_]+\}")
# The methods the oci SDK's ApiSpecificationRoute.methods documents.
_ROUTE_METHODS = {"ANY", "HEAD", "GET", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"}


def _rendered_spec() -> dict[str, Any]:
    return policies.render_gateway_spec(FUNCTION, _ISSUER, "aud", _JWKS_URI, _ORIGIN)


def test_given_the_spec_when_rendered_then_it_routes_the_responses_and_conversations_an_openai_sdk_calls() -> None:
    # given / when
    spec = _rendered_spec()
    # then: each path once, with exactly its methods
    assert {route["path"]: route["methods"] for route in spec["routes"]} == ROUTES
    assert len(spec["routes"]) == len(ROUTES)


def test_given_every_route_path_when_checked_then_it_is_written_in_api_gateways_path_syntax() -> None:
    # given / when
    spec = _rendered_spec()
    # then
    for route in spec["routes"]:
        path = route["path"]
        assert path.startswith("/") and not path.endswith("/"), path
        assert all(_ROUTE_SEGMENT.fullmatch(segment) for segment in path[1:].split("/")), path
        parameters = re.findall(r"\{(\w+)\}", path)
        assert len(parameters) == len(set(parameters)), path
        assert route["methods"] and set(route["methods"]) <= _ROUTE_METHODS, path
        assert len(route["methods"]) == len(set(route["methods"])), path


def test_given_the_spec_format_when_every_route_repeats_its_policies_then_they_are_identical() -> None:
    """A deployment specification has no shared route policies (authorization and header transformations
    belong to each route; oci.apigateway.models.ApiSpecificationRequestPolicies holds neither), so every
    route repeats them: none may drift, or one route would take a caller the others refuse or lose the
    caller header the function scopes stored objects by."""
    # given
    spec = _rendered_spec()
    # when
    policies_and_backends = [(route["requestPolicies"], route["backend"]) for route in spec["routes"]]
    # then
    (route_policies, backend) = policies_and_backends[0]
    assert route_policies == {
        "authorization": {"type": "AUTHENTICATION_ONLY"},
        "headerTransformations": {
            "setHeaders": {
                "items": [{"name": "X-Genai-Caller", "values": ["${request.auth[sub]}"], "ifExists": "OVERWRITE"}]
            }
        },
    }
    assert backend == {"type": "ORACLE_FUNCTIONS_BACKEND", "functionId": FUNCTION}
    assert all(pair == (route_policies, backend) for pair in policies_and_backends)
    assert set(spec["routes"][0]) == {"path", "methods", "requestPolicies", "backend"}
    assert all(set(route) == set(spec["routes"][0]) for route in spec["routes"])


def test_given_the_routes_methods_when_a_browser_preflights_then_cors_allows_each_of_them() -> None:
    # given
    spec = _rendered_spec()
    # when
    routed = {method for route in spec["routes"] for method in route["methods"]}
    # then: a page may call every route, and nothing is allowed that no route takes
    assert spec["requestPolicies"]["cors"]["allowedMethods"] == ["POST", "GET", "DELETE"]
    assert set(spec["requestPolicies"]["cors"]["allowedMethods"]) == routed
