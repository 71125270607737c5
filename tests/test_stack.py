"""The one-step stack (policies/terraform + schema.yaml), proven without a tenancy.

Every .tf file is parsed with python-hcl2 (not our parser): its references resolve, its IAM
statements are the renderer's and parse with oci-lexer-parser, its function config carries every
setting the code reads, its gateway specification reads every field of the spec file from the
right place, and its names, image and audience are the manual path's (docs/deploy.md).
The expressions a test needs are evaluated over python-hcl2's parse tree, and again by
`terraform` where it is installed. Guardrails run where the policy grants them in either project
layout, and the CORS origin has one rule in the renderer, schema.yaml and variables.tf.
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
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

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


def _func_yaml() -> dict[str, Any]:
    """func.yaml read by PyYAML, the reference the stdlib reader in stack.py is checked against."""
    return yaml.safe_load((ROOT / "func.yaml").read_text(encoding="utf-8"))


def _found(match: re.Match[str] | None) -> re.Match[str]:
    """A match the test needs: the test fails here, not with an AttributeError, when there is none."""
    assert match is not None
    return match


def _policy_statements(text: str | list[str]) -> list[dict[str, Any]]:
    """oci-lexer-parser's statements; with its default error_mode ("raise") it returns the payload alone."""
    parsed = parse_policy_statements(text)
    assert isinstance(parsed, dict)
    return parsed["statements"]


def _matching_rules(text: str) -> list[dict[str, Any]]:
    parsed = parse_dynamic_group_matching_rules(text)
    assert isinstance(parsed, dict)
    return parsed["rules"]


_HCL_ESCAPE = re.compile(r'\\(["\\nrt])|\$\$\{|%%\{')
_HCL_UNESCAPED = {'"': '"', "\\": "\\", "n": "\n", "r": "\r", "t": "\t"}


class _HclError(AssertionError):
    """Terraform would refuse the expression (or it uses a form this evaluator does not know)."""


def _coalesce(*values: Any) -> Any:
    """Terraform's coalesce(): the first argument that is neither null nor "", else an error."""
    for value in values:
        if value is not None and value != "":
            return value
    raise _HclError("coalesce: no non-null, non-empty-string arguments")


def _equal(left: Any, right: Any) -> bool:
    """Terraform's ==: no conversion between types (1 == true and "1" == 1 are false)."""
    numbers = all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in (left, right))
    return left == right if numbers else type(left) is type(right) and left == right


def _bool(value: Any) -> bool:
    if not isinstance(value, bool):
        raise _HclError(f"a condition must be true or false, not {value!r}")
    return value


_HCL_FUNCTIONS = {"coalesce": _coalesce, "lower": str.lower}
_HCL_OPERATORS = {
    "==": _equal,
    "!=": lambda a, b: not _equal(a, b),
    "&&": lambda a, b: _bool(a) and _bool(b),
    "||": lambda a, b: _bool(a) or _bool(b),
}


# python-hcl2 parses with lark: a node's children are subtrees and tokens, and tokens are str.
Tree = Any


def _trees(node: Tree) -> list[Tree]:
    return [child for child in node.children if not isinstance(child, str)]


def _name(node: Tree) -> str:
    """The text of an identifier node, or of the expr_term holding only one."""
    while node.data != "identifier":
        (node,) = _trees(node)
    return str(node.children[0])


def _hcl_node(node: Tree, lookup: Callable[[str, str], Any]) -> Any:
    """Evaluate one node of python-hcl2's parse tree; any form not listed fails the test rather than guess."""
    kind, trees = node.data, _trees(node)
    if kind == "expr_term":  # also "( expression )"
        (inner,) = trees
        return _hcl_node(inner, lookup)
    if kind == "literal_value":
        return {"null": None, "true": True, "false": False}[str(node.children[0])]
    if kind in ("int_lit", "float_lit"):
        return json.loads(str(node.children[0]))
    if kind == "string":
        return "".join(_hcl_string_part(part, lookup) for part in trees)
    if kind == "tuple":
        return [_hcl_node(item, lookup) for item in trees]
    if kind == "get_attr_expr_term":
        base, attribute = trees
        return lookup(_name(base), _name(attribute))
    if kind == "function_call":
        function = _HCL_FUNCTIONS.get(_name(trees[0])) or _unknown(_name(trees[0]))
        return function(*[_hcl_node(arg, lookup) for tree in trees[1:] for arg in _trees(tree)])
    if kind == "conditional":
        condition, when_true, when_false = trees
        return _hcl_node(when_true if _bool(_hcl_node(condition, lookup)) else when_false, lookup)
    if kind == "binary_op":
        left, (operator, right) = trees[0], _trees(trees[1])
        return _HCL_OPERATORS[str(operator.children[0])](_hcl_node(left, lookup), _hcl_node(right, lookup))
    if kind == "unary_op" and str(node.children[0]) == "!":
        return not _bool(_hcl_node(trees[0], lookup))
    raise _HclError(f"no evaluator for {kind}")


def _unknown(function: str) -> Any:
    raise _HclError(f"no evaluator for {function}()")


def _hcl_string_part(part: Tree, lookup: Callable[[str, str], Any]) -> str:
    (piece,) = part.children
    if not isinstance(piece, str):  # ${ interpolation }
        return str(_hcl_node(_trees(piece)[0], lookup))
    return _HCL_ESCAPE.sub(lambda m: _HCL_UNESCAPED[m.group(1)] if m.group(1) else m.group(0)[1:], str(piece))


def _unwrap(expression: str) -> str:
    """python-hcl2 writes an expression as "${...}"; Terraform source has it bare."""
    return expression[2:-1] if expression.startswith("${") and expression.endswith("}") else expression


def _hcl(expression: str, lookup: Callable[[str, str], Any]) -> Any:
    """One expression as python-hcl2 serialises it ("${...}", or a quoted template), evaluated."""
    tree = hcl2.parses_to_tree(f"x = {_unwrap(expression)}\n")
    (attribute,) = tree.find_data("attribute")
    return _hcl_node(_trees(attribute)[-1], lookup)


def _evaluate(expression: str, tf_locals: dict[str, Any], tfvars: dict[str, Any], variables: dict[str, dict]) -> Any:
    """Just enough Terraform for the stack's locals: var.x (tfvars, else the default), local.x, literals,
    coalesce(), lower(), ==, !=, &&, ||, ! and ? : (cross-checked by `terraform` where installed)."""

    def lookup(kind: str, name: str) -> Any:
        if kind == "var":
            return tfvars[name] if name in tfvars else _literal(variables[name].get("default"))
        if kind == "local":
            return _hcl(tf_locals[name], lookup)
        raise _HclError(f"no evaluator for {kind}.{name}")

    return _hcl(expression, lookup)


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
    resources: dict[str, dict],
    tf_variables: dict[str, dict],
) -> None:
    # given
    switched = {
        "create_network": [
            "oci_core_vcn.this",
            "oci_core_subnet.function",
            "oci_core_subnet.gateway",
            "oci_core_internet_gateway.this",
            "oci_core_route_table.function",
            "oci_core_security_list.gateway",
        ],
        "create_genai_project": ["oci_generative_ai_project.this"],
        "create_repository": ["oci_artifacts_container_repository.this"],
        "create_iam": [
            "oci_identity_dynamic_group.functions",
            "oci_identity_policy.genai",
            "oci_identity_policy.gateway",
        ],
    }
    # when / then
    for switch, names in switched.items():
        assert tf_variables[switch]["default"] is True
        for name in names:
            assert switch in resources[name]["count"] or "network_count" in resources[name]["count"], name
    for name in (
        "oci_functions_application.this",
        "oci_functions_function.this",
        "oci_apigateway_gateway.this",
        "oci_apigateway_deployment.this",
    ):
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
    tf: dict[str, list],
    resources: dict[str, dict],
    tf_locals: dict[str, Any],
) -> None:
    # given
    services = _named(tf["data"], True)["oci_core_services.all"]
    # when
    (service_filter,) = services["filter"]
    (rule,) = resources["oci_core_route_table.function"]["route_rules"]
    # then
    assert re.fullmatch(_literal(service_filter["values"][0]), "All ORD Services In Oracle Services Network")
    assert (
        "oci_core_service_gateway.this" in rule["network_entity_id"]
        and "oci_core_nat_gateway.this" in rule["network_entity_id"]
    )
    assert "local.all_services.cidr_block" in tf_locals["private_egress_to"]


# --- IAM: the renderer's statements --------------------------------------------------------


_LINE_FILTER = 'for line in split("\\n", templatefile('
_LINE_KEEP = 'trimspace(line) if trimspace(line) != "" && !startswith(trimspace(line), "#")]'


def _template_reads(expression: str) -> tuple[str, str]:
    """(template file, vars expression) of the one templatefile() call in a local."""
    (call,) = re.findall(r'templatefile\("\$\{local\.kit\}/([^"]+)", (\{[^}]*\}|local\.\w+)\)', expression)
    return call


@pytest.mark.parametrize(
    ("local", "template"),
    [
        ("function_statements", "function-policy.txt"),
        ("gateway_statements", "gateway-policy.txt"),
        ("compartment_rule", "dynamic-group.txt"),
        ("function_rule", "dynamic-group-one-function.txt"),
    ],
)
def test_given_the_iam_locals_when_parsed_then_they_read_the_renderers_templates_the_same_way(
    tf_locals: dict[str, Any],
    local: str,
    template: str,
) -> None:
    # given
    expression = tf_locals[local]
    placeholders = set(re.findall(r"\$\{([A-Z_]+)\}", (KIT / template).read_text()))
    # when
    read, variables = _template_reads(expression)
    supplied = (
        set(tf_locals["policy_values"])
        if variables == "local.policy_values"
        else set(re.findall(r"(\w+) =", variables))
    )
    # then
    assert read == template
    assert placeholders <= supplied
    assert _LINE_FILTER in expression and _LINE_KEEP in expression
    assert expression.startswith("${one(") == ("rule" in local)


@pytest.mark.parametrize(("gateway", "genai"), [(False, False), (True, True)])
def test_given_tfvars_when_terraform_fills_the_templates_then_it_grants_what_the_renderer_renders(
    tf_locals: dict[str, Any],
    resources: dict[str, dict],
    tf_variables: dict[str, dict],
    gateway: bool,
    genai: bool,
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
    }
    rule = policies.fill(policies.read_template("dynamic-group.txt")[0], values)
    rendered = policies.render(
        tfvars["compartment_ocid"],
        values["DYNAMIC_GROUP"],
        tfvars.get("gateway_compartment_ocid"),
        tfvars.get("genai_project_compartment_ocid"),
    )
    # then: the same statements, in the same compartments, and the grammar parses each
    by_name = {p.name.removeprefix(f"{values['DYNAMIC_GROUP']}-"): p for p in rendered.policies}
    assert rule == rendered.matching_rule
    assert _matching_rules(rule)
    for key in ("genai", "gateway"):
        resource = resources[f"oci_identity_policy.{key}"]
        assert resource["statements"] == f"${{local.{key if key == 'gateway' else 'function'}_statements}}"
        assert terraform[key] == by_name[key].statements
        assert len(_policy_statements(terraform[key])) == len(terraform[key])
        assert _evaluate(resource["compartment_id"], tf_locals, tfvars, tf_variables) == by_name[key].compartment_ocid
        assert (
            _literal(resource["name"]).replace("${var.dynamic_group_name}", values["DYNAMIC_GROUP"])
            == by_name[key].name
        )


# --- guardrails: ApplyGuardrails runs where the grant is ---------------------------------------------


THIRD_COMPARTMENT = "ocid1.compartment.oc1..aaaaaaaathirdcompartment"
# Where the Generative AI project lives: the function's own compartment (the default), or another one.
LAYOUTS = {"project-beside-the-function": None, "project-elsewhere": "ocid1.compartment.oc1..aaaaaaaaprojectelsewhere"}
GUARDRAILS_CHECK = "guardrails_run_where_the_grant_is"
CONFIG_FILTER = '${{for key, value in local.genai_settings : key => tostring(value) if value != null && value != ""}}'
Evaluate = Callable[[str, dict[str, Any]], Any]


@pytest.fixture(scope="module")
def evaluate(tf_locals: dict[str, Any], tf_variables: dict[str, dict]) -> Evaluate:
    """One of the stack's expressions, evaluated for the given tfvars."""
    return lambda expression, tfvars: _evaluate(expression, tf_locals, tfvars, tf_variables)


def _layout(layout: str, **variables: Any) -> dict[str, Any]:
    tfvars = _tfvars()
    if LAYOUTS[layout]:
        tfvars["genai_project_compartment_ocid"] = LAYOUTS[layout]
    return {**tfvars, **variables}


def _config_value(key: str, tf_locals: dict[str, Any], evaluate: Evaluate, tfvars: dict[str, Any]) -> str | None:
    """One entry of the function's config as the stack writes it (CONFIG_FILTER): left out when null or ""."""
    value = evaluate(tf_locals["genai_settings"][key], tfvars)
    return None if value is None or value == "" else str(value)


def _granted(tf_locals: dict[str, Any], evaluate: Evaluate, tfvars: dict[str, Any]) -> set[str]:
    """Compartments where the stack's policy lets the function use generative-ai-family, read from the
    statements as oci-lexer-parser parses them."""
    values = {key: evaluate(expression, tfvars) for key, expression in tf_locals["policy_values"].items()}
    statements = [policies.fill(s, values) for s in policies.read_template("function-policy.txt")]
    return {
        compartment
        for statement in _policy_statements(statements)
        if statement["resources"]["values"] == ["generative-ai-family"]
        and statement["location"]["type"] == "compartment-id"
        for compartment in statement["location"]["values"]
    }


def _apply_guardrails_compartment(
    tf_locals: dict[str, Any],
    resources: dict[str, dict],
    evaluate: Evaluate,
    tfvars: dict[str, Any],
) -> str:
    """guardrails._compartment: GENAI_COMPARTMENT_OCID, else the resource principal's res_compartment,
    the compartment of the function, which is its application's."""
    configured = _config_value("GENAI_COMPARTMENT_OCID", tf_locals, evaluate, tfvars)
    return configured or evaluate(resources["oci_functions_application.this"]["compartment_id"], tfvars)


def _guardrails_check(tf: dict[str, list]) -> str:
    return _named(tf["check"], False)[GUARDRAILS_CHECK]["assert"][0]["condition"]


@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("mode", ["inform", "block", "Block"])
@pytest.mark.parametrize("given", [None, ""], ids=["unset", "blank-in-resource-manager"])
def test_given_guardrails_on_in_either_layout_when_configured_then_apply_guardrails_runs_where_it_is_granted(
    tf: dict[str, list],
    tf_locals: dict[str, Any],
    resources: dict[str, dict],
    evaluate: Evaluate,
    layout: str,
    mode: str,
    given: str | None,
) -> None:
    # given guardrails on, and no genai_compartment_ocid
    tfvars = _layout(layout, genai_guardrails=mode, genai_compartment_ocid=given)
    assert resources["oci_functions_function.this"]["config"] == CONFIG_FILTER
    # when
    runs_in = _apply_guardrails_compartment(tf_locals, resources, evaluate, tfvars)
    # then: the policy grants generative-ai-family there, and the stack's check has nothing to warn about
    assert runs_in in _granted(tf_locals, evaluate, tfvars)
    assert _config_value("GENAI_GUARDRAILS", tf_locals, evaluate, tfvars) == mode
    assert evaluate(_guardrails_check(tf), tfvars) is True


@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("mode", [None, "", "off", "OFF"])
def test_given_guardrails_off_when_the_stack_configures_the_function_then_no_compartment_is_added(
    tf: dict[str, list],
    tf_locals: dict[str, Any],
    evaluate: Evaluate,
    layout: str,
    mode: str | None,
) -> None:
    # given
    tfvars = _layout(layout, genai_guardrails=mode)
    # when
    configured = _config_value("GENAI_COMPARTMENT_OCID", tf_locals, evaluate, tfvars)
    # then: opc-compartment-id stays unsent, as before guardrails existed
    assert configured is None
    assert evaluate(_guardrails_check(tf), tfvars) is True


@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("granted", [True, False], ids=["the-granted-compartment", "a-third-compartment"])
def test_given_a_genai_compartment_ocid_and_guardrails_when_configured_then_it_is_used_and_warned_about_unless_granted(
    tf: dict[str, list],
    tf_locals: dict[str, Any],
    resources: dict[str, dict],
    evaluate: Evaluate,
    layout: str,
    granted: bool,
) -> None:
    # given
    (grant,) = _granted(tf_locals, evaluate, _layout(layout))
    tfvars = _layout(layout, genai_guardrails="block", genai_compartment_ocid=grant if granted else THIRD_COMPARTMENT)
    # when
    runs_in = _apply_guardrails_compartment(tf_locals, resources, evaluate, tfvars)
    # then: the user's choice wins; a compartment without the stack's grant is a warning (a parent's grant
    # would cover it, which Terraform cannot see)
    assert runs_in == tfvars["genai_compartment_ocid"]
    assert evaluate(_guardrails_check(tf), tfvars) is granted


def _references(expression: str, kind: str) -> set[str]:
    return {name for found, name, _ in _REFERENCE.findall(expression) if found == kind}


def _scratch_module(
    folder: Path,
    expressions: list[str],
    tf_locals: dict[str, Any],
    variables: dict[str, dict],
) -> set[str]:
    """A module holding only what `expressions` read from the stack: those locals as the stack writes them,
    and the variables they read (typed, default null). Returns the variables' names."""
    needed: set[str] = set()
    pending = list(expressions)
    while pending:
        for name in _references(pending.pop(), "local") - needed:
            needed.add(name)
            pending.append(tf_locals[name])
    read = {name for e in [*expressions, *(tf_locals[n] for n in needed)] for name in _references(e, "var")}
    text = "".join(f'variable "{n}" {{\n  type = {variables[n]["type"]}\n  default = null\n}}\n' for n in sorted(read))
    text += "locals {\n" + "".join(f"  {n} = {_unwrap(tf_locals[n])}\n" for n in sorted(needed)) + "}\n"
    (folder / "main.tf").write_text(text, encoding="utf-8")
    return read


def _terraform(folder: Path, *args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "TF_IN_AUTOMATION": "1", "CHECKPOINT_DISABLE": "1", "TF_CLI_CONFIG_FILE": os.devnull}
    return subprocess.run(
        ["terraform", *args, "-no-color"], cwd=folder, input=stdin, env=env, capture_output=True, text=True, timeout=60
    )


@pytest.mark.skipif(
    shutil.which("terraform") is None,
    reason="terraform is not installed: the offline tests above evaluate the same expressions in Python",
)
def test_given_terraform_when_it_evaluates_the_guardrails_expressions_then_it_agrees_with_the_offline_evaluator(
    tmp_path: Path,
    tf: dict[str, list],
    tf_locals: dict[str, Any],
    tf_variables: dict[str, dict],
    evaluate: Evaluate,
) -> None:
    # given the stack's own expressions, in a module that needs no provider
    expressions = {
        "config": tf_locals["genai_settings"]["GENAI_COMPARTMENT_OCID"],
        "granted": tf_locals["policy_values"]["GENAI_COMPARTMENT_OCID"],
        "check": _guardrails_check(tf),
    }
    read = _scratch_module(tmp_path, list(expressions.values()), tf_locals, tf_variables)
    assert _terraform(tmp_path, "init", "-input=false", "-backend=false").returncode == 0
    fields = ", ".join(f"{key} = {_unwrap(e)}" for key, e in expressions.items())
    console = f"jsonencode({{{fields}}})\n"
    for layout in LAYOUTS:
        for mode in (None, "", "off", "inform", "Block"):
            for given in (None, "", THIRD_COMPARTMENT):
                tfvars = _layout(layout, genai_guardrails=mode, genai_compartment_ocid=given)
                values = {name: tfvars[name] for name in read if tfvars.get(name) is not None}
                (tmp_path / "case.tfvars.json").write_text(json.dumps(values), encoding="utf-8")
                # when
                result = _terraform(tmp_path, "console", "-var-file=case.tfvars.json", stdin=console)
                # then
                assert result.returncode == 0, result.stderr
                expected = {key: evaluate(e, tfvars) for key, e in expressions.items()}
                assert json.loads(json.loads(result.stdout)) == expected, (layout, mode, given)


def test_given_the_identity_resources_when_parsed_then_they_go_to_the_home_region(
    tf: dict[str, list],
    resources: dict[str, dict],
    tf_locals: dict[str, Any],
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
    assert (
        group["matching_rule"] == "${var.pin_dynamic_group_to_function ? local.function_rule : local.compartment_rule}"
    )


# --- the function ------------------------------------------------------------------------------


def test_given_the_function_when_parsed_then_its_config_carries_every_setting_from_terraform(
    tf_locals: dict[str, Any],
    resources: dict[str, dict],
    tf_variables: dict[str, dict],
) -> None:
    # given
    function = resources["oci_functions_function.this"]
    func_yaml = _func_yaml()
    # when
    configured = tf_locals["genai_settings"]
    # then: every setting the code reads, each from its own variable; unset ones left out
    assert set(configured) == set(ENV) - NOT_FUNCTION_CONFIG
    assert configured.pop("GENAI_PROJECT_OCID") == "${local.genai_project_ocid}"
    # the guardrails tests below prove where it points when its variable is left empty
    assert configured.pop("GENAI_COMPARTMENT_OCID") == "${local.genai_compartment_setting}"
    assert tf_variables["genai_compartment_ocid"]["default"] is None
    for key, expression in configured.items():
        assert expression == f"${{var.{key.lower()}}}", key
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
    dg, app, fn = _found(re.search(r"export DG=(\S+) APP=(\S+) FN=(\S+)", walkthrough)).groups()
    registry = _found(
        re.search(r'fn update context registry "\$REGION_KEY\.ocir\.io/\$NAMESPACE/([^"]+)"', walkthrough)
    ).group(1)
    gateway = _found(re.search(r"gateway create .*?--display-name (\S+)", walkthrough, flags=re.S)).group(1)
    deployment, prefix = _found(
        re.search(r"deployment create .*?--display-name (\S+) --path-prefix (\S+)", walkthrough, flags=re.S)
    ).groups()
    # then
    assert (defaults["dynamic_group_name"], defaults["application_name"]) == (dg, app)
    assert defaults["function_name"] == _func_yaml()["name"] and fn == "genai"
    assert defaults["repository_name"] == f"{registry}/{defaults['function_name']}" == f"{stack.REGISTRY_PATH}/genai"
    assert (defaults["gateway_name"], defaults["deployment_name"], defaults["path_prefix"]) == (
        gateway,
        deployment,
        prefix,
    )


def test_given_the_example_then_its_image_is_empty_for_the_first_apply_and_the_comment_is_what_make_image_pushes(
    tf_variables: dict[str, dict],
) -> None:
    # given the example, as a new user copies it
    example = _tfvars()
    text = (TF / "terraform.tfvars.example").read_text(encoding="utf-8")
    required = {name for name, body in tf_variables.items() if "default" not in body}
    # when the second apply's URL is read from the comment beside function_image
    line = next(line for line in text.splitlines() if line.startswith("function_image"))
    commented = _found(re.search(r'#.*"(([a-z0-9-]+)\.ocir\.io/([^/]+)/[^"]+)"', line))
    url, host, namespace = commented.groups()
    # then the first apply leaves the image empty, as the comment at the top says,
    # and the URL in the comment is exactly what `make image` prints
    assert required <= set(example) <= set(tf_variables)
    assert example["function_image"] == ""
    function = stack.read_func_yaml()
    assert url == stack.image_url(host, namespace, function.name, function.version)
    assert stack.region_key(example["region"]) == host
    assert example["identity_domain_url"] and example["token_audience"].endswith("/")


def test_given_an_identity_domain_when_parsed_then_issuer_jwks_and_audience_follow_the_walkthrough(
    tf_locals: dict[str, Any],
    resources: dict[str, dict],
) -> None:
    # given
    walkthrough = (ROOT / "docs" / "deploy.md").read_text(encoding="utf-8")
    issuer = _found(re.search(r"export ISSUER=(\S+)", walkthrough)).group(1)
    jwks = _found(re.search(r"export JWKS_URI=\$DOMAIN_URL(\S+)", walkthrough)).group(1)
    # when
    conditions = [p["condition"] for p in resources["oci_apigateway_deployment.this"]["lifecycle"][0]["precondition"]]
    # then
    assert f'"{issuer}"' in tf_locals["token_issuer"]
    assert f'"${{local.domain_url}}{jwks}"' in tf_locals["token_jwks_uri"]
    assert '${local.domain_url == "" || endswith(var.token_audience, "/")}' in conditions


def test_given_the_image_check_when_parsed_then_it_expects_the_tag_make_image_pushes(
    tf: dict[str, list], tf_locals: dict[str, Any]
) -> None:
    # given
    check = _named(tf["check"], False)["image_is_the_manual_paths"]
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
    tf_locals: dict[str, Any],
    resources: dict[str, dict],
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
            assert found[snake_path] == ".".join((f"{iterator}.value", *json_path[index + 1 :])), snake_path
        else:
            assert found[snake_path] == ".".join(("local.spec", *json_path)), snake_path
    routes = specification["dynamic"][0]['"routes"']
    assert routes["for_each"] == "${local.spec.routes}"
    (route_policies,) = routes["content"][0]["request_policies"]
    (headers,) = route_policies["header_transformations"][0]["set_headers"]
    assert (
        headers["dynamic"][0]['"items"']["for_each"]
        == "${routes.value.requestPolicies.headerTransformations.setHeaders.items}"
    )


def test_given_the_deployment_when_parsed_then_every_route_overwrites_the_caller_header_with_the_subject(
    tf_locals: dict[str, Any],
    resources: dict[str, dict],
) -> None:
    # given: the spec file as Terraform's templatefile() reads it ("$${" is a literal "${")
    spec = json.loads(
        policies.fill(
            (KIT / "apigateway-deployment.json").read_text(encoding="utf-8"),
            dict.fromkeys(re.findall(r"(\w+) =", _template_reads(tf_locals["spec"])[1]), "x"),
        )
    )
    (specification,) = resources["oci_apigateway_deployment.this"]["specification"]
    # when
    items = [
        item
        for route in spec["routes"]
        for item in route["requestPolicies"]["headerTransformations"]["setHeaders"]["items"]
    ]
    content = specification["dynamic"][0]['"routes"']["content"][0]
    (item_block,) = content["request_policies"][0]["header_transformations"][0]["set_headers"][0]["dynamic"]
    # then: one item on every route, the subject claim, OVERWRITE; the block copies each field as it is
    assert len(spec["routes"]) >= 9
    assert [
        len(route["requestPolicies"]["headerTransformations"]["setHeaders"]["items"]) for route in spec["routes"]
    ] == [1] * len(spec["routes"])
    assert all(
        item == {"name": "X-Genai-Caller", "values": ["${request.auth[sub]}"], "ifExists": "OVERWRITE"}
        for item in items
    )
    assert item_block['"items"']["content"][0]["if_exists"] == "${items.value.ifExists}"


def test_given_the_spec_local_when_parsed_then_it_loads_the_json_with_every_placeholder(
    tf_locals: dict[str, Any],
) -> None:
    # given
    expression = tf_locals["spec"]
    placeholders = set(re.findall(r"\$\{([A-Z_]+)\}", (KIT / "apigateway-deployment.json").read_text()))
    # when
    read, variables = _template_reads(expression)
    # then
    assert expression.startswith("${jsondecode(templatefile(")
    assert read == "apigateway-deployment.json"
    assert set(re.findall(r"(\w+) =", variables)) == placeholders


@pytest.mark.skipif(
    shutil.which("terraform") is None,
    reason="terraform is not installed: the renderer's fill() stands in for templatefile() above",
)
def test_given_terraform_when_it_reads_the_spec_as_the_stack_does_then_it_gets_the_renderers_routes(
    tmp_path: Path, tf_locals: dict[str, Any]
) -> None:
    # given the spec file beside a module that reads it with the stack's own templatefile() call
    read, variables = _template_reads(tf_locals["spec"])
    values = {name: f"value-of-{name}" for name in re.findall(r"(\w+) =", variables)}
    shutil.copy(KIT / read, tmp_path / read)
    (tmp_path / "main.tf").write_text("", encoding="utf-8")
    assert _terraform(tmp_path, "init", "-input=false", "-backend=false").returncode == 0
    fields = ", ".join(f'{name} = "{value}"' for name, value in values.items())
    console = f'jsonencode(jsondecode(templatefile("${{path.module}}/{read}", {{{fields}}})))\n'
    # when
    result = _terraform(tmp_path, "console", stdin=console)
    # then: the same routes, path parameters and methods, as the renderer and the local gateway read them
    assert result.returncode == 0, result.stderr
    spec = json.loads(json.loads(result.stdout))
    assert spec == json.loads(policies.fill((KIT / read).read_text(encoding="utf-8"), values))
    assert "/v1/conversations/{id}/items/{item_id}" in {route["path"] for route in spec["routes"]}


# --- Resource Manager: schema.yaml ------------------------------------------------------------------


def test_given_the_schema_when_loaded_then_it_declares_exactly_the_stacks_variables_with_compatible_types(
    schema: dict[str, Any],
    tf_variables: dict[str, dict],
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
    schema: dict[str, Any],
    tf_variables: dict[str, dict],
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
        allowed, checked = _found(
            re.fullmatch(r"\$\{contains\((\[.*\]), var\.(\w+)\)\}", validation["condition"])
        ).groups()
        assert (json.loads(allowed), checked) == (values, name)


def test_given_the_schema_when_loaded_then_its_references_and_outputs_match_the_stack(
    schema: dict[str, Any],
    tf: dict[str, list],
) -> None:
    # given
    outputs = _named(tf["output"], False)
    text = (TF / "schema.yaml").read_text(encoding="utf-8")
    # when
    references = set(re.findall(r"\$\{(\w+)\}", text))
    visible = {
        v
        for spec in schema["variables"].values()
        for v in re.findall(r"\b[a-z_]+\b", json.dumps(spec.get("visible", "")))
    }
    # then
    assert references <= set(schema["variables"])
    assert visible - {"not", "eq", "and", "or", "true", "false"} <= set(schema["variables"])
    assert set(schema["outputs"]) == set(outputs)
    assert sorted(o for g in schema["outputGroups"] for o in g["outputs"]) == sorted(outputs)
    assert {"endpoint_url", "function_ocid", "curl_command"} <= set(outputs)
    assert all(body.get("description") for body in outputs.values())


# --- the CORS origin: one rule in the renderer, schema.yaml and variables.tf ---------------------------

# One origin as a browser sends it in `Origin` (RFC 6454 section 6.1; the oci SDK's CorsPolicy: "All other
# origins must be qualified with the scheme, full hostname, and port if necessary"). Each row: the value,
# whether the rule takes it, and why. Anything the gateway could only match as a wildcard, or never match
# because a browser never sends it that way, is refused.
ORIGINS = [
    ("https://app.example.com", True, "a host name"),
    ("http://localhost:3000", True, "http and a port, for a local app"),
    ("http://localhost", True, "a single-label host"),
    ("http://127.0.0.1:8080", True, "an IPv4 address"),
    ("https://app.example.com:8443", True, "a port"),
    ("https://app.example.com:65535", True, "the highest port"),
    ("https://app.example.com:443", True, "a default port: valid, though a browser omits it (docs say so)"),
    ("https://a-b.xn--bcher-kva.example", True, "hyphens and an IDN in punycode"),
    ("*", False, "any origin"),
    ("null", False, "the file: origin"),
    ("", False, "empty"),
    ("https://*.example.com", False, "a wildcard host"),
    ("https://app.example.com/", False, "a trailing slash"),
    ("https://app.example.com/app", False, "a path"),
    ("https://app.example.com?x=1", False, "a query"),
    ("https://app.example.com#x", False, "a fragment"),
    ("https://user@app.example.com", False, "user info"),
    ("https://user:pw@app.example.com", False, "user info with a password"),
    ("app.example.com", False, "no scheme"),
    ("//app.example.com", False, "a scheme-relative URL"),
    ("ftp://app.example.com", False, "another scheme"),
    ("HTTPS://APP.EXAMPLE.COM", False, "upper case: a browser sends scheme and host in lower case"),
    ("https://App.example.com", False, "an upper-case letter in the host"),
    ("https://app.example.com:99999", False, "a port above 65535"),
    ("https://app.example.com:0", False, "port 0"),
    ("https://app.example.com:0443", False, "a port with a leading zero"),
    ("https://app.example.com:", False, "an empty port"),
    ("http://[::1]:8080", False, "an IPv6 literal: use a host name"),
    ("https://app..example.com", False, "an empty label"),
    ("https://-app.example.com", False, "a label starting with a hyphen"),
    ("https://app-.example.com", False, "a label ending with a hyphen"),
    ("https://app.example.com.", False, "a trailing dot"),
    ("https://app_1.example.com", False, "an underscore"),
    ("https://" + "a" * 64 + ".example.com", False, "a label over 63 characters"),
    ("https://bücher.example", False, "a Unicode host: a browser sends punycode"),
    ("https://app.example.com\n", False, "a trailing newline"),
    (" https://app.example.com", False, "a leading space"),
    ("https://app.example.com https://b.example.com", False, "two origins"),
    ('https://app.example.com"', False, "a quote"),
]

FUNCTION_OCID = "ocid1.fnfunc.oc1.us-chicago-1.aaaaaaaafunction"
# The validation block's condition as python-hcl2 writes it: the rule is the regex's one argument.
_WRAPPED = re.compile(r'\$\{can\(regex\("(?P<rule>[^"\\]*)", var\.cors_allowed_origin\)\)\}')


def _anchored(pattern: str) -> re.Pattern[str]:
    """A ^...$ pattern as ECMAScript (no flags) and RE2 read it: searched, and $ only at the very end, which
    Python spells \\Z (Python's $ also matches before a final newline). The rest reads alike in all three."""
    assert pattern.startswith("^") and pattern.endswith("$") and pattern.count("$") == 1, pattern
    return re.compile(pattern[:-1] + r"\Z")


def _origin_rules(schema: dict[str, Any], tf_variables: dict[str, dict]) -> dict[str, str]:
    (validation,) = tf_variables["cors_allowed_origin"]["validation"]
    return {
        "renderer": policies.ORIGIN.pattern,
        "schema.yaml": schema["variables"]["cors_allowed_origin"]["pattern"],
        "variables.tf": _found(_WRAPPED.fullmatch(validation["condition"])).group("rule"),
    }


def _renderer_accepts(origin: str) -> bool:
    try:
        policies.render_gateway_spec(FUNCTION_OCID, "https://id.example/", "aud", "https://id.example/jwks", origin)
    except policies.KitError:
        return False
    return True


def test_given_the_three_places_when_read_then_they_carry_the_same_origin_rule(
    schema: dict[str, Any],
    tf_variables: dict[str, dict],
) -> None:
    # given / when
    rules = _origin_rules(schema, tf_variables)
    # then: the renderer full-matches the rule; the schema and Terraform anchor it, since both search
    assert rules["schema.yaml"] == rules["variables.tf"] == f"^{rules['renderer']}$"
    assert "\\" not in rules["renderer"], "no escapes: YAML, HCL and Python would each need their own"


@pytest.mark.parametrize(("origin", "accepted", "why"), ORIGINS, ids=[why for _, _, why in ORIGINS])
def test_given_an_origin_when_checked_by_the_renderer_the_schema_and_terraform_then_all_three_decide_alike(
    schema: dict[str, Any],
    tf_variables: dict[str, dict],
    origin: str,
    accepted: bool,
    why: str,
) -> None:
    # given
    rules = _origin_rules(schema, tf_variables)
    # when
    decisions = {
        "renderer": _renderer_accepts(origin),
        "schema.yaml": bool(_anchored(rules["schema.yaml"]).search(origin)),
        "variables.tf": bool(_anchored(rules["variables.tf"]).search(origin)),
    }
    # then
    assert decisions == dict.fromkeys(decisions, accepted), why


@pytest.mark.skipif(
    shutil.which("node") is None,
    reason="node is not installed: the Python reading of the pattern above stands in for ECMAScript",
)
def test_given_node_when_it_runs_the_schema_pattern_then_ecmascript_decides_as_the_table(
    schema: dict[str, Any],
) -> None:
    # given: the Create stack page checks `pattern` in the browser, as an ECMAScript RegExp
    script = (
        "const [p, v] = JSON.parse(require('fs').readFileSync(0, 'utf8'));"
        "console.log(JSON.stringify(v.map(s => [new RegExp(p).test(s), new RegExp(p, 'u').test(s)])))"
    )
    payload = json.dumps([schema["variables"]["cors_allowed_origin"]["pattern"], [o for o, _, _ in ORIGINS]])
    # when
    result = subprocess.run(["node", "-e", script], input=payload, capture_output=True, text=True, timeout=60)
    # then
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == [[accepted, accepted] for _, accepted, _ in ORIGINS]


@pytest.mark.skipif(
    shutil.which("terraform") is None,
    reason="terraform is not installed: the Python reading of the regex above stands in for RE2",
)
def test_given_terraform_when_it_plans_each_origin_then_the_validation_block_decides_as_the_table(
    tmp_path: Path,
) -> None:
    # given a module holding only the stack's own variable block
    text = (TF / "variables.tf").read_text(encoding="utf-8")
    block = _found(re.search(r'^variable "cors_allowed_origin" \{\n.*?^\}\n', text, re.M | re.S)).group(0)
    (tmp_path / "main.tf").write_text(block, encoding="utf-8")
    assert _terraform(tmp_path, "init", "-input=false", "-backend=false").returncode == 0
    decisions = []
    for origin, _, _ in ORIGINS:
        (tmp_path / "case.tfvars.json").write_text(json.dumps({"cors_allowed_origin": origin}))
        # when
        result = _terraform(tmp_path, "plan", "-input=false", "-lock=false", "-var-file=case.tfvars.json")
        assert result.returncode == 0 or "Invalid value for variable" in result.stderr, result.stderr
        decisions.append(result.returncode == 0)
    # then
    assert decisions == [accepted for _, accepted, _ in ORIGINS]


# --- make stack / make image ---------------------------------------------------------------------


def test_given_make_stack_when_run_then_the_zip_holds_the_schema_the_tf_and_everything_they_read(
    tmp_path: Path,
    tf_locals: dict[str, Any],
) -> None:
    # given
    reads = {
        _template_reads(tf_locals[name])[0]
        for name in ("function_statements", "gateway_statements", "compartment_rule", "function_rule", "spec")
    }
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    # when
    result = subprocess.run(
        ["make", "--no-print-directory", "stack"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120
    )
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
    function = stack.read_func_yaml()
    url = stack.image_url(region, "mytenancy", function.name, function.version)
    # then: <FN_REGISTRY>/<name>:<version>, registry <key>.ocir.io/<namespace>/genai
    assert url == f"ord.ocir.io/mytenancy/genai/{func_yaml['name']}:{func_yaml['version']}"


# func.yaml as fn reads it, in the shapes the stdlib reader must handle: quotes, comments, other blocks, CRLF.
FUNC_YAML_VARIANTS = {
    "quoted-and-commented": (
        "# a comment line\n"
        'name: "quoted"  # a trailing comment\n'
        "version: '0.2''s'\n"
        "timeout: 7 # seconds\n"
        "# timeout: 1\n"
        "memory: 128\n"
        "entrypoint: /python/bin/fdk /function/func.py handler\n"
        "config:\n"
        '  A: "x # not a comment"\n'
        "  B: a#b\n"
        "  C: 12\n"
        "  D: ''\n"
        '  E: "tab\\there \\"quoted\\" \\\\"\n'
    ),
    "other-blocks-and-crlf": (
        "schema_version: 20180708\r\nname: n\r\nversion: 1\r\n"
        "triggers:\r\n- name: t\r\n  type: http\r\n  source: /t\r\n"
        "config:\r\n    K: v w   # c\r\n    L: 'z'\r\nbuild:\r\n  - make\r\ntimeout: +5\r\n"
    ),
}
# What the stdlib reader refuses, rather than read differently from YAML.
FUNC_YAML_REFUSED = {
    "flow-mapping": "name: n\nconfig: {A: b}\n",
    "anchor": "name: &n genai\n",
    "octal": "timeout: 010\n",
    "unclosed-quote": 'name: "genai\n',
    "text-after-a-quote": "name: 'genai' x\n",
    "indented-under-a-scalar": "name: n\n  more: x\n",
    "deeper-config": "config:\n  A: x\n    B: y\n",
    "no-colon": "name genai\n",
}


def _func_yaml_as_read(data: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """What stack.FuncYaml keeps of PyYAML's reading: the top-level scalars and the config: map."""
    scalars = {key: value for key, value in data.items() if value is not None and not isinstance(value, dict | list)}
    return scalars, data.get("config") or {}


def test_given_the_repos_func_yaml_when_stack_reads_it_then_it_agrees_with_pyyaml() -> None:
    # given / when
    function = stack.read_func_yaml()
    expected = _func_yaml()
    # then
    assert (function.scalars, function.config) == _func_yaml_as_read(expected)
    assert (function.name, function.version, function.timeout_s) == (
        expected["name"],
        expected["version"],
        expected["timeout"],
    )


@pytest.mark.parametrize("text", FUNC_YAML_VARIANTS.values(), ids=FUNC_YAML_VARIANTS.keys())
def test_given_a_func_yaml_variant_when_stack_reads_it_then_it_agrees_with_pyyaml(tmp_path: Path, text: str) -> None:
    # given
    path = tmp_path / "func.yaml"
    path.write_text(text, encoding="utf-8", newline="")
    # when
    function = stack.read_func_yaml(path)
    # then
    assert (function.scalars, function.config) == _func_yaml_as_read(yaml.safe_load(text))
    assert function.name == str(yaml.safe_load(text)["name"])


@pytest.mark.parametrize("text", FUNC_YAML_REFUSED.values(), ids=FUNC_YAML_REFUSED.keys())
def test_given_yaml_the_stdlib_reader_cannot_read_faithfully_when_read_then_it_names_the_line(
    tmp_path: Path, text: str
) -> None:
    # given
    path = tmp_path / "func.yaml"
    path.write_text(text, encoding="utf-8")
    # when / then
    with pytest.raises(stack.StackError, match=r"^func\.yaml line \d+: "):
        stack.read_func_yaml(path)


def test_given_a_func_yaml_without_a_version_when_make_image_runs_then_it_says_so(tmp_path: Path) -> None:
    path = tmp_path / "func.yaml"
    path.write_text("name: genai\n", encoding="utf-8")
    with pytest.raises(stack.StackError, match=r"func\.yaml needs top-level version:"):
        _ = stack.read_func_yaml(path).version


@pytest.mark.parametrize(
    ("region", "namespace"), [("mars-north-1", "ns"), ("us-chicago-1", ""), ("us-chicago-1", "a/b")]
)
def test_given_a_bad_input_when_asked_for_the_url_then_it_is_refused(region: str, namespace: str) -> None:
    with pytest.raises(stack.StackError):
        stack.image_url(region, namespace, "genai", "0.1.0")


def test_given_no_fn_cli_when_make_image_runs_then_it_fails_in_one_line_naming_the_tool(tmp_path: Path) -> None:
    # given: a PATH with make, its shell and python3 only
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for tool in ("make", "bash"):
        found = shutil.which(tool)
        assert found is not None, tool
        (bin_dir / tool).symlink_to(found)
    (bin_dir / "python3").symlink_to(os.path.realpath(sys.executable))
    env = {"PATH": str(bin_dir), "PYTHONPATH": str(ROOT), "HOME": str(tmp_path)}
    # when
    result = subprocess.run(
        ["make", "--no-print-directory", "image", "REGION=us-chicago-1", "NAMESPACE=mytenancy"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    # then
    errors = [line for line in result.stderr.splitlines() if "error:" in line]
    assert (
        result.returncode != 0
        and result.stdout.strip()
        == 'python3 -m genai_handler.local.stack image --region "us-chicago-1" --namespace "mytenancy"'
    )
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
    function = stack.read_func_yaml()
    assert (
        capsys.readouterr().out == stack.image_url("us-chicago-1", "mytenancy", function.name, function.version) + "\n"
    )


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
    for name in (
        "application_name",
        "function_name",
        "dynamic_group_name",
        "gateway_name",
        "deployment_name",
        "path_prefix",
    ):
        assert f"`{defaults[name]}`" in page, name
    assert "Verify on first deploy" in page and "Pick one for a function" in page
