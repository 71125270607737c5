"""The stack's operations pieces (policies/terraform/operations.tf and the function's settings in
main.tf), proven offline with python-hcl2 like tests/test_stack.py: each is off by default, the
alarms query the metrics and dimensions OCI documents, the quota keys on the verified JWT subject,
the invocation log is the Functions `invoke` log, and the error count matches the function's real
log line. docs/operations.md shows the same alarm queries.
"""

from __future__ import annotations

import io
import json
import logging
import re
from pathlib import Path
from typing import Any

import hcl2
import pytest
from oci_lexer_parser import parse_policy_statements

from genai_handler import errors, logs

ROOT = Path(__file__).resolve().parent.parent
TF = ROOT / "policies" / "terraform"

# The metrics each alarm may use, from OCI's tables (namespace -> metric -> dimensions):
#   "API Gateway Metrics", docs.oracle.com/iaas/Content/APIGateway/Reference/apigatewaymetrics.htm:
#     HttpResponses (by httpStatusCode, httpStatusCategory 2xx..5xx), Latency; dimension deploymentId.
#   "Function Metrics", docs.oracle.com/iaas/Content/Functions/Reference/functionsmetrics.htm:
#     FunctionResponseCount (responseType Success, Error or Throttled), FunctionExecutionDuration (ms),
#     FunctionInvocationCount; dimension resourceId (the function's OCID).
DOCUMENTED = {
    "oci_apigateway": {
        "HttpResponses": {"deploymentId", "httpStatusCode", "httpStatusCategory"},
        "Latency": {"deploymentId"},
    },
    "oci_faas": {
        "FunctionResponseCount": {"resourceId", "responseType"},
        "FunctionExecutionDuration": {"resourceId"},
        "FunctionInvocationCount": {"resourceId"},
    },
}
RESPONSE_TYPES = {"Success", "Error", "Throttled"}
STATUS_CATEGORIES = {"2xx", "3xx", "4xx", "5xx"}
# OCI docs, "Reducing Initial Latency Using Provisioned Concurrency": minimum PCUs and step by memory.
PROVISIONED_CONCURRENCY_STEP = {128: 40, 256: 20, 512: 10, 1024: 10, 2048: 10, 3072: 10}
SWITCHES = {
    "usage_plan_enabled": False,
    "create_invoke_log": False,
    "create_error_metric": False,
    "create_alarms": False,
    "tracing_enabled": False,
    "provisioned_concurrency": 0,
    "detached_timeout_in_seconds": 0,
    "detached_success_destination_ocid": "",
    "detached_failure_destination_ocid": "",
}
_ALARM = re.compile(
    r'(\w+) = \{namespace = ([^,]+), target = "(\w+)", severity = "(\w+)"\s*,?\s*query = "((?:[^"\\]|\\.)*)"'
)
_MQL = re.compile(
    r"^(\w+)\[(\d+m)\]\{(.*)\}(?:\.grouping\(\))?\.(sum|max|mean|count|percentile\(0\.\d+\))\(?\)? > (.+)$"
)


# --- helpers ------------------------------------------------------------------------------


def _load(name: str) -> dict[str, list]:
    with open(TF / name, encoding="utf-8") as handle:
        return hcl2.load(handle)


def _blocks(parsed: dict[str, list], kind: str) -> dict[str, dict]:
    found: dict[str, dict] = {}
    for item in parsed.get(kind, []):
        for first, body in item.items():
            if kind in ("resource", "data"):
                for second, inner in body.items():
                    found[f"{first.strip(chr(34))}.{second.strip(chr(34))}"] = inner
            elif not first.startswith("__"):
                found[first.strip('"')] = body
    return found


def _literal(value: Any) -> Any:
    return json.loads(value) if isinstance(value, str) and value[:1] == value[-1:] == '"' else value


@pytest.fixture(scope="module")
def ops() -> dict[str, list]:
    return _load("operations.tf")


@pytest.fixture(scope="module")
def ops_resources(ops: dict[str, list]) -> dict[str, dict]:
    return _blocks(ops, "resource")


@pytest.fixture(scope="module")
def ops_locals(ops: dict[str, list]) -> dict[str, Any]:
    return {k: v for block in ops["locals"] for k, v in block.items() if not k.startswith("__")}


@pytest.fixture(scope="module")
def main_resources() -> dict[str, dict]:
    return _blocks(_load("main.tf"), "resource")


@pytest.fixture(scope="module")
def variables() -> dict[str, dict]:
    return _blocks(_load("variables.tf"), "variable")


def _alarms(ops_locals: dict[str, Any]) -> dict[str, dict[str, str]]:
    return {
        name: {"namespace": namespace, "target": target, "severity": severity, "query": query.replace('\\"', '"')}
        for name, namespace, target, severity, query in _ALARM.findall(ops_locals["alarms"])
    }


def _dimensions(text: str) -> dict[str, str]:
    return dict(re.findall(r'(\w+) = "([^"]*)"', text))


# --- off by default ------------------------------------------------------------------------


def test_given_the_operations_variables_when_parsed_then_every_switch_is_off_by_default(
    variables: dict[str, dict],
) -> None:
    # given / when
    defaults = {name: _literal(variables[name]["default"]) for name in SWITCHES}
    # then
    assert defaults == SWITCHES


def test_given_every_operations_resource_when_parsed_then_its_count_or_for_each_waits_for_a_switch(
    ops_resources: dict[str, dict],
) -> None:
    # given
    switches = (
        "var.usage_plan_enabled",
        "local.log_count",
        "var.create_error_metric",
        "local.error_metric_types",
        "var.create_alarms",
    )
    # when
    guards = {name: body.get("count", body.get("for_each", "")) for name, body in ops_resources.items()}
    # then
    assert set(ops_resources) >= {
        "oci_apigateway_usage_plan.callers",
        "oci_apigateway_subscriber.callers",
        "oci_logging_log_group.this",
        "oci_logging_log.invoke",
        "oci_sch_service_connector.errors",
        "oci_identity_policy.error_metric",
        "oci_ons_notification_topic.alarms",
        "oci_ons_subscription.alarm_email",
        "oci_monitoring_alarm.this",
    }
    for name, guard in guards.items():
        assert any(switch in guard for switch in switches), name


# --- who may spend what: usage plans -------------------------------------------------------


def test_given_usage_plans_when_parsed_then_each_verified_subject_is_its_own_subscriber(
    ops_resources: dict[str, dict],
    ops_locals: dict[str, Any],
    main_resources: dict[str, dict],
) -> None:
    # given
    plan = ops_resources["oci_apigateway_usage_plan.callers"]
    subscriber = ops_resources["oci_apigateway_subscriber.callers"]
    (specification,) = main_resources["oci_apigateway_deployment.this"]["specification"]
    (policies,) = specification["request_policies"]
    # when
    (entitlement,) = plan["entitlements"]
    (usage_plans,) = [d['"usage_plans"'] for d in policies["dynamic"] if '"usage_plans"' in d]
    (client,) = subscriber["clients"]
    # then: the token is the JWT subject the gateway has verified, one subscriber (own quota) each
    assert _literal(ops_locals["usage_plan_token_location"]) == "request.auth[sub]"
    assert usage_plans["for_each"] == "${var.usage_plan_enabled ? [local.usage_plan_token_location] : []}"
    assert usage_plans["content"][0]["token_locations"] == ["${usage_plans.value}"]
    assert entitlement["targets"][0]["deployment_id"] == "${local.deployment_ocid}"
    assert _literal(entitlement["quota"][0]["operation_on_breach"]) == "REJECT"
    assert entitlement["quota"][0]["value"] == "${var.usage_plan_quota}"
    assert entitlement["rate_limit"][0]["value"] == "${var.usage_plan_rate_per_second}"
    assert "local.usage_plan_subjects" in subscriber["for_each"]
    assert client["token"] == client["name"] == "${each.value}"


# --- logs and the error metric ---------------------------------------------------------------


def test_given_the_invocation_log_when_parsed_then_it_is_the_functions_invoke_log_of_the_application(
    ops_resources: dict[str, dict],
) -> None:
    # given: OCI docs, Logging "Details for Functions" (category invoke) and "Functions Example"
    log = ops_resources["oci_logging_log.invoke"]
    # when
    (source,) = log["configuration"][0]["source"]
    # then
    assert _literal(log["log_type"]) == "SERVICE"
    assert {key: _literal(source[key]) for key in ("source_type", "service", "category")} == {
        "source_type": "OCISERVICE",
        "service": "functions",
        "category": "invoke",
    }
    assert source["resource"] == "${oci_functions_application.this.id}"


def _wildcard(condition: str) -> re.Pattern[str]:
    """The connector rule's `logContent = '<pattern>'`, where * matches anything."""
    match = re.fullmatch(r"logContent = '(.*)'", condition)
    assert match is not None, condition
    (pattern,) = match.groups()
    return re.compile(".*".join(re.escape(part) for part in pattern.split("*")), re.S)


def _log_line(**fields: Any) -> str:
    """The function's own JSON line, written by genai_handler.logs as in a deployed function."""
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    level = logs.logger.level
    logs.logger.addHandler(handler)
    logs.logger.setLevel(logging.INFO)
    try:
        logs.invocation(**fields)
    finally:
        logs.logger.removeHandler(handler)
        logs.logger.setLevel(level)
    return stream.getvalue().strip()


def _error_types() -> set[str]:
    def subclasses(cls: type[errors.HandlerError]) -> list[type[errors.HandlerError]]:
        return [sub for direct in cls.__subclasses__() for sub in (direct, *subclasses(direct))]

    return {cls.type for cls in subclasses(errors.HandlerError)}


def test_given_the_error_metric_when_parsed_then_every_error_type_gets_its_own_connector_by_default(
    variables: dict[str, dict],
    ops_locals: dict[str, Any],
    ops_resources: dict[str, dict],
) -> None:
    # given the default list of counted types, and the connector resource
    default = _literal(variables["error_metric_types"]["default"])
    connector = ops_resources["oci_sch_service_connector.errors"]
    # then it is every error type the function can log, one connector each, off unless switched on
    assert set(default.split(",")) == _error_types()
    assert connector["for_each"] == "${local.error_metric_types}"
    assert "var.create_error_metric ?" in ops_locals["error_metric_types"]


def test_given_a_type_s_connector_rule_when_matched_against_real_log_lines_then_only_that_type_counts(
    ops_resources: dict[str, dict],
) -> None:
    # given the connector for rate_limited (each.key filled in as Terraform does)
    connector = ops_resources["oci_sch_service_connector.errors"]
    condition = _literal(connector["tasks"][0]["condition"]).replace("${each.key}", "rate_limited")
    rule = _wildcard(condition)
    # when real lines of that type, of another type, and a success are matched
    limited = _log_line(call_id="c1", status=429, error_type="rate_limited", error="OCI Generative AI is throttling")
    other = _log_line(
        call_id="c2",
        status=502,
        error_type="upstream_error",
        error="OCI Generative AI failed (HTTP 429 rate_limited); retry later",
    )
    success = _log_line(
        call_id="c3", status=200, error_type=None, model="m", usage={"input_tokens": 3, "output_tokens": 5}
    )
    # then only the rate_limited line counts
    assert rule.fullmatch(limited) and not rule.fullmatch(other) and not rule.fullmatch(success)
    assert _literal(connector["source"][0]["kind"]) == "logging"
    assert connector["source"][0]["log_sources"][0]["log_id"] == "${one(oci_logging_log.invoke[*].id)}"
    target = connector["target"][0]
    assert (_literal(target["kind"]), target["metric_namespace"], _literal(target["metric"])) == (
        "monitoring",
        "${var.error_metric_namespace}",
        "errors",
    )
    dimensions = {_literal(d["name"]): d["dimension_value"][0]["value"] for d in target["dimensions"]}
    assert dimensions == {"function": "${var.function_name}", "error_type": "${each.key}"}


def test_given_the_connectors_grant_when_parsed_then_it_may_only_post_its_own_namespace(
    ops_locals: dict[str, Any],
) -> None:
    # given
    statement = (
        ops_locals["error_metric_statement"]
        .replace("${var.compartment_ocid}", "ocid1.compartment.oc1..aaaa")
        .replace("${var.error_metric_namespace}", "genai_function")
    )
    # when
    statements = parse_policy_statements([statement])
    assert isinstance(statements, dict)  # a tuple only with error_mode="report"
    (parsed,) = statements["statements"]
    # then
    assert parsed["resources"] == {"type": "specific", "values": ["metrics"]}
    assert "target.metrics.namespace = 'genai_function'" in statement
    assert "request.principal.type = 'serviceconnector'" in statement


# --- alarms ------------------------------------------------------------------------------------


def test_given_the_alarms_when_parsed_then_each_queries_a_documented_metric_with_documented_dimensions(
    ops_locals: dict[str, Any],
) -> None:
    # given
    alarms = _alarms(ops_locals)
    # when
    parsed = {name: _MQL.fullmatch(alarm["query"]) for name, alarm in alarms.items()}
    # then: the five OCI-measured alarms, and the custom error count
    assert set(alarms) == {
        "gateway_5xx",
        "gateway_429",
        "gateway_latency",
        "function_throttled",
        "function_near_timeout",
        "function_errors",
    }
    for name, match in parsed.items():
        assert match, (name, alarms[name]["query"])
        metric, _, dims, _, _ = match.groups()
        namespace = _literal(alarms[name]["namespace"])
        dimensions = _dimensions(dims)
        if "error_metric_namespace" in namespace:  # one stream per error_type, summed into one
            assert (metric, set(dimensions)) == ("errors", {"function"}) and ".grouping().sum()" in alarms[name][
                "query"
            ]
            continue
        assert metric in DOCUMENTED[namespace], name
        assert set(dimensions) <= DOCUMENTED[namespace][metric], name
        assert dimensions.get("httpStatusCategory", "5xx") in STATUS_CATEGORIES
        assert dimensions.get("responseType", "Throttled") in RESPONSE_TYPES
        assert alarms[name]["target"] == ("gateway" if namespace == "oci_apigateway" else "function")


def test_given_the_alarm_resource_when_parsed_then_it_notifies_the_topic_and_waits_for_the_function(
    ops_resources: dict[str, dict],
    ops_locals: dict[str, Any],
) -> None:
    # given
    alarm = ops_resources["oci_monitoring_alarm.this"]
    # when / then
    assert alarm["for_each"] == "${var.create_alarms && local.function_count == 1 ? local.alarms : {}}"
    assert alarm["destinations"] == ["${local.alarm_topic}"]
    assert (
        "var.alarm_topic_ocid" in ops_locals["alarm_topic"]
        and "oci_ons_notification_topic.alarms" in ops_locals["alarm_topic"]
    )
    assert alarm["metric_compartment_id"] == "${local.alarm_targets[each.value.target]}"


def test_given_the_operations_page_when_read_then_it_shows_every_alarm_query_the_stack_creates(
    ops_locals: dict[str, Any],
) -> None:
    # given
    page = (ROOT / "docs" / "operations.md").read_text(encoding="utf-8")
    placeholders = {
        "${local.dp_for_alarms}": "<deployment OCID>",
        "${local.fn_for_alarms}": "<function OCID>",
        "${var.function_name}": "genai",
    }
    # when
    shown = {}
    for name, alarm in _alarms(ops_locals).items():
        query = alarm["query"]
        for expression, placeholder in placeholders.items():
            query = query.replace(expression, placeholder)
        shown[name] = re.sub(r" > \$\{.*\}$", "", query).split(" > ")[0]
    # then: the page documents each query (thresholds are variables, so compared without them)
    for name, query in shown.items():
        assert query in page, (name, query)


# --- the function: traces, provisioned concurrency, detached invocations ---------------------------


def test_given_tracing_when_parsed_then_application_and_function_follow_one_switch(
    main_resources: dict[str, dict],
) -> None:
    # given
    application = main_resources["oci_functions_application.this"]["trace_config"][0]
    function = main_resources["oci_functions_function.this"]["trace_config"][0]
    # when / then
    assert application["is_enabled"] == function["is_enabled"] == "${var.tracing_enabled}"
    assert application["domain_id"] == "${var.tracing_enabled ? var.apm_domain_ocid : null}"


def test_given_provisioned_concurrency_when_parsed_then_its_step_is_oracles_table(
    ops_locals: dict[str, Any],
    main_resources: dict[str, dict],
) -> None:
    # given
    expression = ops_locals["provisioned_concurrency_step"]
    limits = [
        (int(mb), int(step)) for mb, step in re.findall(r"var\.function_memory_in_mbs <= (\d+) \? (\d+)", expression)
    ]
    last = re.search(r": (\d+)\}$", expression)
    assert last is not None, expression
    otherwise = int(last.group(1))
    config = main_resources["oci_functions_function.this"]["provisioned_concurrency_config"][0]
    # when
    step = {
        memory: next((s for limit, s in limits if memory <= limit), otherwise)
        for memory in PROVISIONED_CONCURRENCY_STEP
    }
    # then
    assert step == PROVISIONED_CONCURRENCY_STEP
    assert config["strategy"] == '${var.provisioned_concurrency > 0 ? "CONSTANT" : "NONE"}'


@pytest.mark.parametrize(
    ("ocid", "kind"),
    [
        ("", "NONE"),
        ("ocid1.onstopic.oc1.iad.aaaa", "NOTIFICATION"),
        ("ocid1.queue.oc1.iad.aaaa", "QUEUE"),
        ("ocid1.stream.oc1.iad.aaaa", "STREAM"),
    ],
)
def test_given_a_detached_destination_when_parsed_then_its_kind_follows_its_ocid(
    ops_locals: dict[str, Any],
    variables: dict[str, dict],
    ocid: str,
    kind: str,
) -> None:
    # given
    kinds = {key: _literal(value) for key, value in ops_locals["destination_kinds"].items()}
    (validation,) = variables["detached_success_destination_ocid"]["validation"]
    regex = re.search(r'regex\("(.+)", var\.', validation["condition"])
    assert regex is not None, validation["condition"]
    pattern = regex.group(1).replace("\\\\", "\\")
    # when
    found = "NONE" if ocid == "" else kinds[ocid.split(".")[1]]
    # then
    assert found == kind and re.fullmatch(pattern, ocid)
    assert not re.fullmatch(pattern, "ocid1.bucket.oc1..aaaa")
