# Operations (issue 13), every piece off by default: per-caller quotas, the function's invocation
# log, alarms on what OCI measures, error counts from the function's own log line, a topic for the
# alarms. docs/operations.md says what each watches and why; OCI sources are named beside each.

locals {
  # Usage plans read the client token from the JWT's subject: the gateway has already verified
  # the token, and OCI says a subscriber's client token is "for usage plan reporting purposes
  # only" and must not be what authenticates (API Gateway docs, "Creating a Subscriber").
  usage_plan_token_location = "request.auth[sub]"
  usage_plan_subjects       = toset([for subject in split(",", var.usage_plan_subjects) : trimspace(subject) if trimspace(subject) != ""])
  error_metric_types        = var.create_error_metric ? toset([for type in split(",", var.error_metric_types) : trimspace(type) if trimspace(type) != ""]) : toset([])
  deployment_ocid           = one(oci_apigateway_deployment.this[*].id)

  error_metric_statement = "Allow any-user to use metrics in compartment id ${var.compartment_ocid} where all {request.principal.type = 'serviceconnector', target.metrics.namespace = '${var.error_metric_namespace}', request.principal.compartment.id = '${var.compartment_ocid}'}"

  # Detached invocations: a destination's kind follows from its OCID (the provider's
  # success_destination/failure_destination take NOTIFICATION, QUEUE or STREAM).
  destination_kinds = { onstopic = "NOTIFICATION", queue = "QUEUE", stream = "STREAM" }
  destinations = {
    for name, ocid in { success = var.detached_success_destination_ocid, failure = var.detached_failure_destination_ocid } :
    name => { kind = ocid == "" ? "NONE" : local.destination_kinds[split(".", ocid)[1]], ocid = ocid }
  }
  # OCI docs, "Reducing Initial Latency Using Provisioned Concurrency": minimum and step by memory.
  provisioned_concurrency_step = var.function_memory_in_mbs <= 128 ? 40 : var.function_memory_in_mbs <= 256 ? 20 : 10

  log_count     = var.create_invoke_log || var.create_error_metric ? 1 : 0
  alarm_topic   = var.alarm_topic_ocid != "" ? var.alarm_topic_ocid : one(oci_ons_notification_topic.alarms[*].id)
  alarm_targets = { gateway = local.gateway_compartment_ocid, function = var.compartment_ocid }

  # Namespaces, metrics and dimensions: OCI docs, "API Gateway Metrics" (oci_apigateway:
  # HttpResponses by httpStatusCategory/httpStatusCode, Latency; dimension deploymentId) and
  # "Function Metrics" (oci_faas: FunctionResponseCount by responseType Success/Error/Throttled,
  # FunctionExecutionDuration in ms; dimension resourceId = the function). tests/test_stack.py
  # pins each against its table.
  fn_for_alarms = coalesce(local.function_ocid, "none")
  dp_for_alarms = coalesce(local.deployment_ocid, "none")
  alarms = merge(
    {
      gateway_5xx = {
        namespace = "oci_apigateway", target = "gateway", severity = "CRITICAL"
        query     = "HttpResponses[5m]{deploymentId = \"${local.dp_for_alarms}\", httpStatusCategory = \"5xx\"}.sum() > ${var.alarm_5xx_per_5_minutes}"
        body      = "The gateway answered 5xx: the function failed (502/504 from the Fn agent) or reported an upstream error. Search the invocation log by error_type."
      }
      gateway_429 = {
        namespace = "oci_apigateway", target = "gateway", severity = "WARNING"
        query     = "HttpResponses[5m]{deploymentId = \"${local.dp_for_alarms}\", httpStatusCode = \"429\"}.sum() > ${var.alarm_429_per_5_minutes}"
        body      = "Callers are throttled: the deployment's rate limit, a usage plan's quota, or Generative AI's own 429."
      }
      gateway_latency = {
        namespace = "oci_apigateway", target = "gateway", severity = "WARNING"
        query     = "Latency[5m]{deploymentId = \"${local.dp_for_alarms}\"}.percentile(0.95) > ${var.alarm_latency_p95_ms}"
        body      = "The 95th percentile of the gateway's end-to-end latency is high: slow model answers, retries or cold starts."
      }
      function_throttled = {
        namespace = "oci_faas", target = "function", severity = "CRITICAL"
        query     = "FunctionResponseCount[5m]{resourceId = \"${local.fn_for_alarms}\", responseType = \"Throttled\"}.sum() > 0"
        body      = "OCI Functions refused invocations (429): the region's concurrency limit is reached."
      }
      function_near_timeout = {
        namespace = "oci_faas", target = "function", severity = "WARNING"
        query     = "FunctionExecutionDuration[5m]{resourceId = \"${local.fn_for_alarms}\"}.max() > ${floor(var.function_timeout_in_seconds * 800)}"
        body      = "An invocation ran past 80% of the function timeout: raise the timeout, lower GENAI_MAX_OUTPUT_TOKENS, or use a faster model."
      }
    },
    var.create_error_metric ? {
      function_errors = {
        namespace = var.error_metric_namespace, target = "function", severity = "CRITICAL"
        # grouping() sums the error_type streams into one (OCI: "Aggregating Metric Streams in a Query")
        query = "errors[5m]{function = \"${var.function_name}\"}.grouping().sum() > ${var.alarm_errors_per_5_minutes}"
        body  = "The function answered errors (its log line has error_type). OCI Functions counts these as successes; the invocation log says which type."
      }
    } : {},
  )
}

# --- Per-caller quotas (API Gateway usage plans) --------------------------------------

resource "oci_apigateway_usage_plan" "callers" {
  count          = var.usage_plan_enabled ? local.function_count : 0
  compartment_id = local.gateway_compartment_ocid
  display_name   = "${var.deployment_name}-callers"

  entitlements {
    name        = "per-caller"
    description = "Each subscriber (one JWT subject) gets this rate and quota on its own."

    rate_limit {
      unit  = "SECOND"
      value = var.usage_plan_rate_per_second
    }

    quota {
      unit                = var.usage_plan_quota_period
      value               = var.usage_plan_quota
      reset_policy        = "CALENDAR"
      operation_on_breach = "REJECT"
    }

    targets {
      deployment_id = local.deployment_ocid
    }
  }

  lifecycle {
    precondition {
      condition     = length(local.usage_plan_subjects) > 0
      error_message = "usage_plan_enabled refuses every caller not in usage_plan_subjects: list at least one JWT subject."
    }
  }
}

# One subscriber per subject: "If you define a subscriber and specify multiple API clients for it,
# the rate limit and quota in a usage plan's entitlement are shared between all the API clients".
resource "oci_apigateway_subscriber" "callers" {
  for_each       = var.usage_plan_enabled && local.function_count == 1 ? local.usage_plan_subjects : toset([])
  compartment_id = local.gateway_compartment_ocid
  display_name   = each.value
  usage_plans    = [one(oci_apigateway_usage_plan.callers[*].id)]

  clients {
    name  = each.value
    token = each.value
  }
}

# --- The invocation log (service functions, category invoke, resource = the application) ---
# OCI docs, Logging "Details for Functions" and "Functions Example".

resource "oci_logging_log_group" "this" {
  count          = local.log_count
  compartment_id = var.compartment_ocid
  display_name   = var.log_group_name
  description    = "Invocation logs of ${var.application_name}"
}

resource "oci_logging_log" "invoke" {
  count              = local.log_count
  display_name       = "${var.application_name}-invoke"
  log_group_id       = one(oci_logging_log_group.this[*].id)
  log_type           = "SERVICE"
  is_enabled         = true
  retention_duration = var.log_retention_days

  configuration {
    compartment_id = var.compartment_ocid

    source {
      source_type = "OCISERVICE"
      service     = "functions"
      resource    = oci_functions_application.this.id
      category    = "invoke"
    }
  }
}

# --- Error counts from the function's own log line --------------------------------------
# The function answers the Fn agent 200 even for an error, so oci_faas counts it as a success.
# Its one JSON line per invocation carries "error_type" only on errors. A connector counts log
# entries and cannot read a field out of the line, so there is one connector per error type: its
# rule keeps that type's lines, and its Monitoring target counts them as the custom metric
# `errors` with a static dimension error_type (the provider's dimension_value kind "static").

resource "oci_sch_service_connector" "errors" {
  for_each       = local.error_metric_types
  compartment_id = var.compartment_ocid
  display_name   = "${var.function_name}-errors-${replace(each.key, "_", "-")}"
  description    = "Counts the function's ${each.key} log lines as ${var.error_metric_namespace}/errors"

  source {
    kind = "logging"

    log_sources {
      compartment_id = var.compartment_ocid
      log_group_id   = one(oci_logging_log_group.this[*].id)
      log_id         = one(oci_logging_log.invoke[*].id)
    }
  }

  tasks {
    kind      = "logRule"
    condition = "logContent = '*\"error_type\": \"${each.key}\"*'"
  }

  target {
    kind             = "monitoring"
    compartment_id   = var.compartment_ocid
    metric_namespace = var.error_metric_namespace
    metric           = "errors"

    dimensions {
      name = "function"

      dimension_value {
        kind  = "static"
        value = var.function_name
      }
    }

    dimensions {
      name = "error_type"

      dimension_value {
        kind  = "static"
        value = each.key
      }
    }
  }

  depends_on = [oci_identity_policy.error_metric]
}

# Connector Hub writes to Monitoring only with a grant to the serviceconnector principal (the
# Console offers it as the connector's default policy), limited here to its own namespace and to
# connectors in this compartment.
resource "oci_identity_policy" "error_metric" {
  count          = var.create_error_metric && var.create_iam ? 1 : 0
  provider       = oci.home
  compartment_id = var.compartment_ocid
  name           = "${var.function_name}-error-metric"
  description    = "Connector Hub may post ${var.error_metric_namespace} metrics"
  statements     = [local.error_metric_statement]
}

# --- Alarms and their topic ---------------------------------------------------------

resource "oci_ons_notification_topic" "alarms" {
  count          = var.create_alarms && var.alarm_topic_ocid == "" ? 1 : 0
  compartment_id = var.compartment_ocid
  name           = var.alarm_topic_name
  description    = "Alarms of the ${var.function_name} function and its gateway"
}

resource "oci_ons_subscription" "alarm_email" {
  count          = var.create_alarms && var.alarm_topic_ocid == "" && var.alarm_email != "" ? 1 : 0
  compartment_id = var.compartment_ocid
  topic_id       = one(oci_ons_notification_topic.alarms[*].id)
  protocol       = "EMAIL"
  endpoint       = var.alarm_email
}

resource "oci_monitoring_alarm" "this" {
  for_each              = var.create_alarms && local.function_count == 1 ? local.alarms : {}
  compartment_id        = var.compartment_ocid
  metric_compartment_id = local.alarm_targets[each.value.target]
  namespace             = each.value.namespace
  query                 = each.value.query
  display_name          = "${var.function_name} ${each.key}"
  body                  = each.value.body
  severity              = each.value.severity
  destinations          = [local.alarm_topic]
  is_enabled            = true
  pending_duration      = "PT5M"
  message_format        = "ONS_OPTIMIZED"
}
