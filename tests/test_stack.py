"""The one-step stack (policies/terraform + schema.yaml), proven without a tenancy.

Every .tf file is parsed with python-hcl2 (not our parser): its references resolve, its IAM
statements are the renderer's and parse with oci-lexer-parser, its function config carries every
setting the code reads, its gateway specification reads every field of the spec file from the
right place, and its names, image and audience are the manual path's (docs/deploy.md).
schema.yaml (PyYAML) declares exactly the stack's variables and outputs with compatible types.
`make stack`'s zip holds what the .tf files read; `make image` prints the URL the stack takes.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path
from typing import Any, Iterator

import hcl2
import pytest
import yaml
from oci_lexer_parser import parse_dynamic_group_matching_rules, parse_policy_statements

from genai_handler import policies
from genai_handler.local import stack
from genai_handler.settings import ENV
from tests.test_deploy_kit import _leaves, _snake, _spec_template

ROOT = Path(__file__).resolve().parent.parent
KIT = ROOT / "policies"
TF = KIT / "terraform"
# Settings that must not travel through function config: a secret, and local-only files.
NOT_FUNCTION_CONFIG = {"GENAI_API_KEY", "GENAI_OCI_CONFIG_FILE", "GENAI_OCI_PROFILE"}
# Read by Resource Manager's subnet pickers only (schema.yaml dependsOn), not by Terraform.
SCHEMA_ONLY = {"existing_vcn_ocid"}
# Terraform type -> schema.yaml types that send a value of that type (OCI docs, "Extend Console
# Pages Using Schema Documents": data types must be consistent with the configuration).
COMPATIBLE = {
    "string": lambda t: t in {"string", "enum", "password"} or t.startswith("oci:"),
    "number": lambda t: t in {"number", "integer"},
    "bool": lambda t: t == "boolean",
}
# The one request policy that is the stack's alone: a usage plan token location makes the gateway
# refuse every non-subscriber, so the spec file (the manual path) must not carry it.
USAGE_PLANS = ("request_policies", "usage_plans")
_REFERENCE = re.compile(r"(?<![\w.])(var|local|data|oci_[a-z_]+)\.([A-Za-z_][\w-]*)(?:\.([A-Za-z_][\w-]*))?")


# --- helpers ------------------------------------------------------------------------------


def _literal(value: Any) -> Any:
    """hcl2 keeps the quotes of string literals: '"x"' -> 'x'."""
    return json.loads(value) if isinstance(value, str) and value[:1] == value[-1:] == '"' else value


def _unquote(label: str) -> str:
    return label.strip('"')


def _parsed() -> dict[str, list]:
    """Every .tf file's top-level blocks, merged by kind."""
    merged: dict[str, list] = {}
    for path in sorted(TF.glob("*.tf")):
        with open(path, encoding="utf-8") as handle:
            for kind, items in hcl2.load(handle).items():
                if not kind.startswith("__"):
                    merged.setdefault(kind, []).extend(items)
    return merged


def _named(items: list[dict], two_labels: bool) -> dict[str, dict]:
    found: dict[str, dict] = {}
    for item in items:
        for first, body in item.items():
            if first.startswith("__"):
                continue
            if two_labels:
                for second, inner in body.items():
                    found[f"{_unquote(first)}.{_unquote(second)}"] = inner
            else:
                found[_unquote(first)] = body
    return found


@pytest.fixture(scope="module")
def tf() -> dict[str, list]:
    return _parsed()


@pytest.fixture(scope="module")
def tf_locals(tf: dict[str, list]) -> dict[str, Any]:
    return {k: v for block in tf["locals"] for k, v in block.items() if not k.startswith("__")}


@pytest.fixture(scope="module")
def resources(tf: dict[str, list]) -> dict[str, dict]:
    return _named(tf["resource"], two_labels=True)


@pytest.fixture(scope="module")
def tf_variables(tf: dict[str, list]) -> dict[str, dict]:
    return _named(tf["variable"], two_labels=False)


@pytest.fixture(scope="module")
def schema() -> dict[str, Any]:
    return yaml.safe_load((TF / "schema.yaml").read_text(encoding="utf-8"))


def _strings(value: Any) -> Iterator[str]:
    if isinstance(value, dict):
        for key, item in value.items():
            if not key.startswith("__"):
                yield from _strings(item)
    elif isinstance(value, list):
        for item in value:
            yield from _strings(item)
    elif isinstance(value, str):
        yield value


def _tfvars() -> dict[str, Any]:
    parsed = hcl2.loads((TF / "terraform.tfvars.example").read_text(encoding="utf-8"))
    return {key: _literal(value) for key, value in parsed.items() if not key.startswith("__")}


def _func_yaml() -> dict[str, str]:
    return dict(re.findall(r"^(\w+):\s*(\S+)", (ROOT / "func.yaml").read_text(encoding="utf-8"), flags=re.M))


def _evaluate(expression: str, tf_locals: dict[str, Any], tfvars: dict[str, Any], variables: dict[str, dict]) -> Any:
    """Just enough Terraform for var.x, local.x, coalesce() and literals as policy_values uses them."""
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


# --- wiring ---------------------------------------------------------------------------------


def test_given_every_tf_file_when_parsed_then_every_reference_resolves(tf: dict[str, list]) -> None:
    # given
    declared = {
        "var": set(_named(tf["variable"], False)),
        "local": {k for block in tf["locals"] for k in block if not k.startswith("__")},
        "data": set(_named(tf["data"], True)),
        "resource": set(_named(tf["resource"], True)),
    }
    aliases = {_literal(body["alias"]) for p in tf["provider"] for body in p.values() if "alias" in body}
    # when
    used: dict[str, set[str]] = {kind: set() for kind in declared}
    for text in _strings({k: v for k, v in tf.items() if k not in ("variable",)}):
        for kind, name, attr in _REFERENCE.findall(text):
            if kind in ("var", "local"):
                used[kind].add(name)
            elif kind == "data":
                used["data"].add(f"{name}.{attr}")
            else:
                used["resource"].add(f"{kind}.{name}")
        used.setdefault("provider", set()).update(re.findall(r"\boci\.(\w+)", text))
    # then: nothing dangling, nothing declared in vain
    for kind in declared:
        assert used[kind] <= declared[kind], (kind, used[kind] - declared[kind])
    assert used["provider"] <= aliases
    assert declared["var"] - used["var"] == SCHEMA_ONLY
    assert declared["local"] == used["local"]
    assert declared["data"] == used["data"]


def test_given_the_stack_when_parsed_then_it_creates_everything_behind_create_or_reuse_switches(
    resources: dict[str, dict], tf_variables: dict[str, dict],
) -> None:
    # given
    switched = {
        "create_network": ["oci_core_vcn.this", "oci_core_subnet.function", "oci_core_subnet.gateway",
                           "oci_core_internet_gateway.this", "oci_core_route_table.function",
                           "oci_core_security_list.gateway"],
        "create_genai_project": ["oci_generative_ai_project.this"],
        "create_repository": ["oci_artifacts_container_repository.this"],
        "create_iam": ["oci_identity_dynamic_group.functions", "oci_identity_policy.genai", "oci_identity_policy.gateway"],
    }
    # when / then
    for switch, names in switched.items():
        assert tf_variables[switch]["default"] is True
        for name in names:
            assert switch in resources[name]["count"] or "network_count" in resources[name]["count"], name
    for name in ("oci_functions_application.this", "oci_functions_function.this",
                 "oci_apigateway_gateway.this", "oci_apigateway_deployment.this"):
        assert name in resources


def test_given_the_gateway_subnet_when_parsed_then_only_tcp_443_comes_in(resources: dict[str, dict]) -> None:
    # given
    gateway = resources["oci_core_security_list.gateway"]
    function = resources["oci_core_security_list.function"]
    # when
    (ingress,) = gateway["ingress_security_rules"]
    # then
    assert _literal(ingress["protocol"]) == "6"
    assert (ingress["tcp_options"][0]["min"], ingress["tcp_options"][0]["max"]) == (443, 443)
    assert "ingress_security_rules" not in function
    assert resources["oci_core_subnet.function"]["prohibit_public_ip_on_vnic"] is True


def test_given_the_function_egress_when_parsed_then_it_reaches_all_oracle_services_or_a_nat(
    tf: dict[str, list], resources: dict[str, dict], tf_locals: dict[str, Any],
) -> None:
    # given
    services = _named(tf["data"], True)["oci_core_services.all"]
    # when
    (service_filter,) = services["filter"]
    (rule,) = resources["oci_core_route_table.function"]["route_rules"]
    # then
    assert re.fullmatch(_literal(service_filter["values"][0]), "All ORD Services In Oracle Services Network")
    assert "oci_core_service_gateway.this" in rule["network_entity_id"] and "oci_core_nat_gateway.this" in rule["network_entity_id"]
    assert "local.all_services.cidr_block" in tf_locals["private_egress_to"]


# --- IAM: the renderer's statements --------------------------------------------------------


_LINE_FILTER = 'for line in split("\\n", templatefile('
_LINE_KEEP = 'trimspace(line) if trimspace(line) != "" && !startswith(trimspace(line), "#")]'


def _template_reads(expression: str) -> tuple[str, str]:
    """(template file, vars expression) of the one templatefile() call in a local."""
    (call,) = re.findall(r'templatefile\("\$\{local\.kit\}/([^"]+)", (\{[^}]*\}|local\.\w+)\)', expression)
    return call


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
        tfvars["compartment_ocid"], values["DYNAMIC_GROUP"],
        tfvars.get("gateway_compartment_ocid"), tfvars.get("genai_project_compartment_ocid"),
    )
    # then: the same statements, in the same compartments, and the grammar parses each
    by_name = {p.name.removeprefix(f"{values['DYNAMIC_GROUP']}-"): p for p in rendered.policies}
    assert terraform["rule"] == rendered.matching_rule
    assert parse_dynamic_group_matching_rules(terraform["rule"])["rules"]
    for key in ("genai", "gateway"):
        resource = resources[f"oci_identity_policy.{key}"]
        assert resource["statements"] == f"${{local.{key if key == 'gateway' else 'function'}_statements}}"
        assert terraform[key] == by_name[key].statements
        assert len(parse_policy_statements(terraform[key])["statements"]) == len(terraform[key])
        assert _evaluate(resource["compartment_id"], tf_locals, tfvars, tf_variables) == by_name[key].compartment_ocid
        assert _literal(resource["name"]).replace("${var.dynamic_group_name}", values["DYNAMIC_GROUP"]) == by_name[key].name


def test_given_the_identity_resources_when_parsed_then_they_go_to_the_home_region(
    tf: dict[str, list], resources: dict[str, dict], tf_locals: dict[str, Any],
) -> None:
    # given
    home = next(body for p in tf["provider"] for body in p.values() if _literal(body.get("alias")) == "home")
    # when / then
    assert home["region"] == "${local.home_region}"
    assert "home_region_key" in tf_locals["home_region"]
    for name in ("oci_identity_dynamic_group.functions", "oci_identity_policy.genai", "oci_identity_policy.gateway"):
        assert resources[name]["provider"] == "${oci.home}", name
    group = resources["oci_identity_dynamic_group.functions"]
    assert group["compartment_id"] == "${var.tenancy_ocid}"
    assert group["matching_rule"] == "${var.pin_dynamic_group_to_function ? local.function_rule : local.compartment_rule}"


# --- the function ------------------------------------------------------------------------------


def test_given_the_function_when_parsed_then_its_config_carries_every_setting_from_terraform(
    tf_locals: dict[str, Any], resources: dict[str, dict], tf_variables: dict[str, dict],
) -> None:
    # given
    function = resources["oci_functions_function.this"]
    func_yaml = _func_yaml()
    # when
    configured = tf_locals["genai_settings"]
    # then: every setting the code reads, each from its own variable; unset ones left out
    assert set(configured) == set(ENV) - NOT_FUNCTION_CONFIG
    assert configured.pop("GENAI_PROJECT_OCID") == "${local.genai_project_ocid}"
    for key, expression in configured.items():
        assert expression == "${var.%s}" % key.lower(), key
        assert tf_variables[key.lower()]["default"] is None, key
    assert "local.genai_settings" in function["config"] and "value != null" in function["config"]
    assert function["image"] == "${var.function_image}"
    assert tf_variables["function_memory_in_mbs"]["default"] == int(func_yaml["memory"])
    assert tf_variables["function_timeout_in_seconds"]["default"] == int(func_yaml["timeout"])


def test_given_the_defaults_when_compared_with_the_manual_walkthrough_then_the_names_are_the_same(
    tf_variables: dict[str, dict],
) -> None:
    # given
    walkthrough = (ROOT / "docs" / "deploy.md").read_text(encoding="utf-8")
    defaults = {name: _literal(body.get("default")) for name, body in tf_variables.items()}
    # when
    dg, app, fn = re.search(r"export DG=(\S+) APP=(\S+) FN=(\S+)", walkthrough).groups()
    registry = re.search(r'fn update context registry "\$REGION_KEY\.ocir\.io/\$NAMESPACE/([^"]+)"', walkthrough).group(1)
    gateway = re.search(r"gateway create .*?--display-name (\S+)", walkthrough, flags=re.S).group(1)
    deployment, prefix = re.search(r"deployment create .*?--display-name (\S+) --path-prefix (\S+)", walkthrough, flags=re.S).groups()
    # then
    assert (defaults["dynamic_group_name"], defaults["application_name"]) == (dg, app)
    assert defaults["function_name"] == _func_yaml()["name"] and fn == "genai"
    assert defaults["repository_name"] == f"{registry}/{defaults['function_name']}" == f"{stack.REGISTRY_PATH}/genai"
    assert (defaults["gateway_name"], defaults["deployment_name"], defaults["path_prefix"]) == (gateway, deployment, prefix)


def test_given_the_example_when_read_then_its_image_is_what_make_image_pushes_and_its_audience_keeps_the_slash(
    tf_variables: dict[str, dict],
) -> None:
    # given
    example = _tfvars()
    required = {name for name, body in tf_variables.items() if "default" not in body}
    host, namespace = re.match(r"([a-z0-9-]+)\.ocir\.io/([^/]+)/", example["function_image"]).groups()
    # when
    url = stack.image_url(host, namespace, *stack.func_yaml())
    # then
    assert required <= set(example) <= set(tf_variables)
    assert example["function_image"] == url
    assert stack.region_key(example["region"]) == host
    assert example["identity_domain_url"] and example["token_audience"].endswith("/")


def test_given_an_identity_domain_when_parsed_then_issuer_jwks_and_audience_follow_the_walkthrough(
    tf_locals: dict[str, Any], resources: dict[str, dict],
) -> None:
    # given
    walkthrough = (ROOT / "docs" / "deploy.md").read_text(encoding="utf-8")
    issuer = re.search(r"export ISSUER=(\S+)", walkthrough).group(1)
    jwks = re.search(r"export JWKS_URI=\$DOMAIN_URL(\S+)", walkthrough).group(1)
    # when
    conditions = [p["condition"] for p in resources["oci_apigateway_deployment.this"]["lifecycle"][0]["precondition"]]
    # then
    assert f'"{issuer}"' in tf_locals["token_issuer"]
    assert '"${local.domain_url}%s"' % jwks in tf_locals["token_jwks_uri"]
    assert '${local.domain_url == "" || endswith(var.token_audience, "/")}' in conditions


def test_given_the_image_check_when_parsed_then_it_expects_the_tag_make_image_pushes(tf: dict[str, list], tf_locals: dict[str, Any]) -> None:
    # given
    (check,) = _named(tf["check"], False).values()
    # when
    condition = check["assert"][0]["condition"]
    # then
    assert 'startswith(var.function_image, "${local.image_repository}:")' in condition
    assert _literal(tf_locals["image_repository"]) == (
        "${local.region_key}.ocir.io/${data.oci_objectstorage_namespace.this.namespace}/${var.repository_name}"
    )


# --- the gateway deployment ---------------------------------------------------------------------


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
        if path[-1] == "for_each" or path[:2] == USAGE_PLANS:
            continue
        reference = expression[2:-1]
        for alias, target in aliases.items():
            reference = re.sub(rf"^{re.escape(alias)}\b", target, reference)
        found[path] = reference
    # then: same fields (routes, token authentication, rate limit, CORS), each from its own JSON path
    assert set(found) == set(expected)
    for snake_path, json_path in expected.items():
        if "[]" in json_path:
            # inside `dynamic "x"`, a field is x.value.<its path below the innermost list>
            index = len(json_path) - 1 - json_path[::-1].index("[]")
            iterator = snake_path[index - 1]
            assert found[snake_path] == ".".join((f"{iterator}.value", *json_path[index + 1:])), snake_path
        else:
            assert found[snake_path] == ".".join(("local.spec", *json_path)), snake_path
    routes = specification["dynamic"][0]['"routes"']
    assert routes["for_each"] == "${local.spec.routes}"
    (route_policies,) = routes["content"][0]["request_policies"]
    (headers,) = route_policies["header_transformations"][0]["set_headers"]
    assert headers["dynamic"][0]['"items"']["for_each"] == "${routes.value.requestPolicies.headerTransformations.setHeaders.items}"


def test_given_the_deployment_when_parsed_then_every_route_overwrites_the_caller_header_with_the_subject(
    tf_locals: dict[str, Any], resources: dict[str, dict],
) -> None:
    # given: the spec file as Terraform's templatefile() reads it ("$${" is a literal "${")
    spec = json.loads(policies.fill((KIT / "apigateway-deployment.json").read_text(encoding="utf-8"),
                                    {name: "x" for name in re.findall(r"(\w+) =", _template_reads(tf_locals["spec"])[1])}))
    (specification,) = resources["oci_apigateway_deployment.this"]["specification"]
    # when
    items = [item for route in spec["routes"] for item in route["requestPolicies"]["headerTransformations"]["setHeaders"]["items"]]
    content = specification["dynamic"][0]['"routes"']["content"][0]
    (item_block,) = content["request_policies"][0]["header_transformations"][0]["set_headers"][0]["dynamic"]
    # then: every route, the subject claim, OVERWRITE; the block copies each field as it is
    assert len(items) == len(spec["routes"]) == 2
    assert all(item == {"name": "X-Genai-Caller", "values": ["${request.auth[sub]}"], "ifExists": "OVERWRITE"} for item in items)
    assert item_block['"items"']["content"][0]["if_exists"] == "${items.value.ifExists}"


def test_given_the_spec_local_when_parsed_then_it_loads_the_json_with_every_placeholder(tf_locals: dict[str, Any]) -> None:
    # given
    expression = tf_locals["spec"]
    placeholders = set(re.findall(r"\$\{([A-Z_]+)\}", (KIT / "apigateway-deployment.json").read_text()))
    # when
    read, variables = _template_reads(expression)
    # then
    assert expression.startswith("${jsondecode(templatefile(")
    assert read == "apigateway-deployment.json"
    assert set(re.findall(r"(\w+) =", variables)) == placeholders


# --- Resource Manager: schema.yaml ------------------------------------------------------------------


def test_given_the_schema_when_loaded_then_it_declares_exactly_the_stacks_variables_with_compatible_types(
    schema: dict[str, Any], tf_variables: dict[str, dict],
) -> None:
    # given
    declared = schema["variables"]
    # when
    mismatched = {
        name: (tf_variables[name]["type"], spec["type"])
        for name, spec in declared.items()
        if name in tf_variables and not COMPATIBLE[tf_variables[name]["type"].strip("${}")](spec["type"])
    }
    # then
    assert schema["schemaVersion"] == "1.1.0"
    assert set(declared) == set(tf_variables)
    assert not mismatched
    for name, spec in declared.items():
        has_default = "default" in tf_variables[name]
        assert spec.get("required", False) == (not has_default) or "default" in spec, name
        if not has_default:
            assert spec.get("required") is True, name
        if "default" in spec:
            assert spec["default"] == _literal(tf_variables[name]["default"]), name


def test_given_the_schema_when_loaded_then_each_variable_is_in_one_group_and_enums_match_validations(
    schema: dict[str, Any], tf_variables: dict[str, dict],
) -> None:
    # given
    grouped = [name for group in schema["variableGroups"] for name in group["variables"]]
    # when
    enums = {name: spec["enum"] for name, spec in schema["variables"].items() if spec["type"] == "enum"}
    # then
    assert sorted(grouped) == sorted(schema["variables"])
    assert schema["variables"]["compartment_ocid"]["type"] == "oci:identity:compartment:id"
    assert schema["variables"]["region"]["type"] == "oci:identity:region:name"
    for name, values in enums.items():
        (validation,) = tf_variables[name]["validation"]
        allowed, checked = re.fullmatch(r"\$\{contains\((\[.*\]), var\.(\w+)\)\}", validation["condition"]).groups()
        assert (json.loads(allowed), checked) == (values, name)


def test_given_the_schema_when_loaded_then_its_references_and_outputs_match_the_stack(
    schema: dict[str, Any], tf: dict[str, list],
) -> None:
    # given
    outputs = _named(tf["output"], False)
    text = (TF / "schema.yaml").read_text(encoding="utf-8")
    # when
    references = set(re.findall(r"\$\{(\w+)\}", text))
    visible = {v for spec in schema["variables"].values() for v in re.findall(r"\b[a-z_]+\b", json.dumps(spec.get("visible", "")))}
    # then
    assert references <= set(schema["variables"])
    assert visible - {"not", "eq", "and", "or", "true", "false"} <= set(schema["variables"])
    assert set(schema["outputs"]) == set(outputs)
    assert sorted(o for g in schema["outputGroups"] for o in g["outputs"]) == sorted(outputs)
    assert {"endpoint_url", "function_ocid", "curl_command"} <= set(outputs)
    assert all(body.get("description") for body in outputs.values())


# --- make stack / make image ---------------------------------------------------------------------


def test_given_make_stack_when_run_then_the_zip_holds_the_schema_the_tf_and_everything_they_read(
    tmp_path: Path, tf_locals: dict[str, Any],
) -> None:
    # given
    reads = {_template_reads(tf_locals[name])[0] for name in
             ("function_statements", "gateway_statements", "compartment_rule", "function_rule", "spec")}
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    # when
    result = subprocess.run(["make", "--no-print-directory", "stack"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    with zipfile.ZipFile(ROOT / "dist" / "genai-stack.zip") as archive:
        names = set(archive.namelist())
        archive.extractall(tmp_path)
    # then: schema.yaml at the root beside the .tf files, and ${local.kit} resolves to that root
    assert result.returncode == 0, result.stderr
    assert names == {p.name for p in TF.glob("*.tf")} | {"schema.yaml"} | reads
    assert 'fileexists("${path.module}/function-policy.txt") ? path.module : "${path.module}/.."' in tf_locals["kit"]
    assert (tmp_path / "function-policy.txt").is_file() and not (TF / "function-policy.txt").exists()
    for name in reads:
        assert (tmp_path / name).read_bytes() == (KIT / name).read_bytes()


def test_given_the_same_sources_when_zipped_twice_then_the_bytes_are_the_same(tmp_path: Path) -> None:
    # given / when
    stack.build_zip(tmp_path / "a.zip")
    stack.build_zip(tmp_path / "b.zip")
    # then
    assert (tmp_path / "a.zip").read_bytes() == (tmp_path / "b.zip").read_bytes()


@pytest.mark.parametrize("region", ["us-chicago-1", "ord", "ORD"])
def test_given_func_yaml_and_a_region_when_asked_for_the_url_then_it_is_fn_builds_tag(region: str) -> None:
    # given
    func_yaml = _func_yaml()
    # when
    url = stack.image_url(region, "mytenancy", *stack.func_yaml())
    # then: <FN_REGISTRY>/<name>:<version>, registry <key>.ocir.io/<namespace>/genai
    assert url == f"ord.ocir.io/mytenancy/genai/{func_yaml['name']}:{func_yaml['version']}"


@pytest.mark.parametrize("region, namespace", [("mars-north-1", "ns"), ("us-chicago-1", ""), ("us-chicago-1", "a/b")])
def test_given_a_bad_input_when_asked_for_the_url_then_it_is_refused(region: str, namespace: str) -> None:
    with pytest.raises(stack.StackError):
        stack.image_url(region, namespace, "genai", "0.1.0")


def test_given_no_fn_cli_when_make_image_runs_then_it_fails_in_one_line_naming_the_tool(tmp_path: Path) -> None:
    # given: a PATH with make, its shell and python3 only
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for tool in ("make", "bash"):
        (bin_dir / tool).symlink_to(shutil.which(tool))
    (bin_dir / "python3").symlink_to(os.path.realpath(sys.executable))
    env = {"PATH": str(bin_dir), "PYTHONPATH": str(ROOT), "HOME": str(tmp_path)}
    # when
    result = subprocess.run(["make", "--no-print-directory", "image", "REGION=us-chicago-1", "NAMESPACE=mytenancy"],
                            cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    # then
    errors = [line for line in result.stderr.splitlines() if "error:" in line]
    assert result.returncode != 0 and result.stdout.strip() == "python3 -m genai_handler.local.stack image --region \"us-chicago-1\" --namespace \"mytenancy\""
    assert len(errors) == 1 and "fn and docker not found" in errors[0] and "Traceback" not in result.stderr


def test_given_make_image_without_its_inputs_when_run_then_one_line_names_every_one_missing(
    capsys: pytest.CaptureFixture[str],
) -> None:
    # given `make image` typed bare: REGION and NAMESPACE are empty
    code = stack.main(["image", "--region", "", "--namespace", " "])
    # then one line names both, with a command that gives the namespace
    [line] = capsys.readouterr().err.splitlines()
    assert code == 2 and "REGION and NAMESPACE" in line and "oci os ns get" in line


def test_given_print_url_when_run_then_only_the_url_is_printed(capsys: pytest.CaptureFixture[str]) -> None:
    # given / when
    code = stack.main(["image", "--region", "us-chicago-1", "--namespace", "mytenancy", "--print-url"])
    # then
    assert code == 0
    assert capsys.readouterr().out == stack.image_url("us-chicago-1", "mytenancy", *stack.func_yaml()) + "\n"


def test_given_the_stack_page_when_read_then_its_button_opens_the_zip_make_stack_builds_and_its_names_are_the_defaults(
    tf_variables: dict[str, dict],
) -> None:
    # given
    page = (ROOT / "docs" / "deploy-stack.md").read_text(encoding="utf-8")
    defaults = {name: _literal(body.get("default")) for name, body in tf_variables.items()}
    # when
    (zip_url,) = re.findall(r"\(https://cloud\.oracle\.com/resourcemanager/stacks/create\?zipUrl=(\S+?)\)", page)
    # then
    assert zip_url.endswith("/releases/latest/download/" + stack.DEFAULT_ZIP.name)
    for name in ("application_name", "function_name", "dynamic_group_name", "gateway_name", "deployment_name", "path_prefix"):
        assert f"`{defaults[name]}`" in page, name
    assert "Verify on first deploy" in page and "Pick one for a function" in page
