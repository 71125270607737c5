# Inputs are only what a person must decide. Defaults name every resource as docs/deploy.md's
# manual steps do, so the two paths describe one deployment (never apply both to one function).
# schema.yaml declares the same variables for Resource Manager (tests/test_stack.py checks it).

# --- Where things go (Resource Manager fills these three in) -------------------

variable "tenancy_ocid" {
  description = "Tenancy OCID: dynamic groups always live in the tenancy (Default identity domain)."
  type        = string
}

variable "region" {
  description = "OCI region of the function and the gateway, e.g. us-chicago-1."
  type        = string
}

variable "compartment_ocid" {
  description = "Compartment of the network, the repository, the application and the function."
  type        = string
}

variable "oci_config_profile" {
  description = "Profile in ~/.oci/config that a local `terraform apply` authenticates with. Empty: DEFAULT. Resource Manager ignores it."
  type        = string
  default     = ""
}

variable "gateway_compartment_ocid" {
  description = "Compartment of the API gateway. Empty: compartment_ocid."
  type        = string
  default     = ""
}

variable "genai_project_compartment_ocid" {
  description = "Compartment of the Generative AI project; the function may use generative-ai-family only there. Empty: compartment_ocid."
  type        = string
  default     = ""
}

# --- Network: create, or reuse two subnets ---------------------------------------

variable "create_network" {
  description = "true: create a VCN with a private function subnet and a public gateway subnet. false: use function_subnet_ocid and gateway_subnet_ocid."
  type        = bool
  default     = true
}

variable "vcn_cidr" {
  description = "CIDR of the VCN the stack creates; the subnets take the first two /24 blocks after the first."
  type        = string
  default     = "10.0.0.0/16"
}

variable "function_egress" {
  description = "How the function subnet reaches the Generative AI endpoint: SERVICE_GATEWAY (All <region> Services in Oracle Services Network) or NAT_GATEWAY."
  type        = string
  default     = "SERVICE_GATEWAY"

  validation {
    condition     = contains(["SERVICE_GATEWAY", "NAT_GATEWAY"], var.function_egress)
    error_message = "function_egress is SERVICE_GATEWAY or NAT_GATEWAY."
  }
}

variable "existing_vcn_ocid" {
  description = "Reused network only: the VCN of the two subnets. Resource Manager's subnet pickers list its subnets; Terraform itself does not read it."
  type        = string
  default     = ""
}

variable "function_subnet_ocid" {
  description = "Reused network only: the function's private subnet, with egress to the Generative AI endpoint (NAT or service gateway)."
  type        = string
  default     = ""
}

variable "gateway_subnet_ocid" {
  description = "Reused network only: the gateway's subnet, public with ingress on TCP 443 for a PUBLIC gateway."
  type        = string
  default     = ""
}

variable "gateway_endpoint_type" {
  description = "PUBLIC (reachable from the internet) or PRIVATE (inside the VCN only)."
  type        = string
  default     = "PUBLIC"

  validation {
    condition     = contains(["PUBLIC", "PRIVATE"], var.gateway_endpoint_type)
    error_message = "gateway_endpoint_type is PUBLIC or PRIVATE."
  }
}

# --- Generative AI project: create, or reuse ----------------------------------------

variable "create_genai_project" {
  description = "true: create a Generative AI project. false: use genai_project_ocid."
  type        = bool
  default     = true
}

variable "genai_project_name" {
  description = "Display name of the Generative AI project the stack creates."
  type        = string
  default     = "genai"
}

variable "genai_responses_retention_hours" {
  description = "Created project only: how long OCI keeps a stored response, in hours from its creation. Null: OCI's default."
  type        = number
  default     = null
}

variable "genai_conversations_retention_hours" {
  description = "Created project only: how long OCI keeps a conversation, in hours from its last update. Null: OCI's default."
  type        = number
  default     = null
}

variable "genai_project_ocid" {
  description = "Reused project only: GENAI_PROJECT_OCID, the existing Generative AI project (ocid1.generativeaiproject...)."
  type        = string
  default     = ""
}

# --- Image and repository -----------------------------------------------------------

variable "create_repository" {
  description = "true: create the private container repository before the first push (else OCIR creates it in the root compartment on push)."
  type        = bool
  default     = true
}

variable "repository_name" {
  description = "Container repository: genai/<function name>, as the manual path's fn context registry <region-key>.ocir.io/<namespace>/genai."
  type        = string
  default     = "genai/genai"
}

variable "function_image" {
  description = "Image URL that `make image` printed: <region-key>.ocir.io/<namespace>/genai/genai:<func.yaml version>. Empty: create everything else and push first."
  type        = string
  default     = ""
}

# --- Names, as the manual path (docs/deploy.md) ------------------------------------

variable "application_name" {
  description = "Functions application name."
  type        = string
  default     = "genai-app"
}

variable "function_name" {
  description = "Function name: func.yaml's name."
  type        = string
  default     = "genai"
}

variable "gateway_name" {
  description = "API gateway display name."
  type        = string
  default     = "genai-gateway"
}

variable "deployment_name" {
  description = "API deployment display name."
  type        = string
  default     = "genai"
}

variable "path_prefix" {
  description = "Deployment path prefix; the routes (apigateway-deployment.json) are <prefix>/chat and, for OpenAI SDKs with base URL <endpoint>/v1, <prefix>/v1/responses and <prefix>/v1/conversations with their stored objects."
  type        = string
  default     = "/genai"
}

# --- The function's IAM -------------------------------------------------------------

variable "create_iam" {
  description = "true: create the dynamic group and the two policies (needs manage dynamic-groups and manage policies). false: an administrator applies policy_statements."
  type        = bool
  default     = true
}

variable "dynamic_group_name" {
  description = "Name of the function's dynamic group. Policies refer to it by this name."
  type        = string
  default     = "genai-functions"

  validation {
    condition     = can(regex("^[A-Za-z][A-Za-z0-9_.-]{0,89}$", var.dynamic_group_name))
    error_message = "Letters, digits, '.', '_' or '-', at most 90, starting with a letter."
  }
}

variable "pin_dynamic_group_to_function" {
  description = "true: the dynamic group matches this one function (resource.id); false: every function in compartment_ocid."
  type        = bool
  default     = false
}

# --- The function ----------------------------------------------------------------

variable "function_memory_in_mbs" {
  description = "Function memory (func.yaml: memory)."
  type        = number
  default     = 256
}

variable "function_timeout_in_seconds" {
  description = "Function timeout (func.yaml: timeout). The gateway waits at most this long too."
  type        = number
  default     = 60
}

# Function settings: one variable per GENAI_* setting (GENAI_PROJECT_OCID comes from the project
# above). null leaves the setting out of the function's config, so the function applies its own
# default (docs/settings.md): Terraform and the code never disagree.

variable "genai_region" {
  description = "GENAI_REGION: region of the Generative AI endpoint. Function default: the function's own region."
  type        = string
  default     = null
}

variable "genai_base_url" {
  description = "GENAI_BASE_URL: override of the endpoint URL. Function default: derived from the region."
  type        = string
  default     = null
}

variable "genai_model" {
  description = "GENAI_MODEL: the model used when a request names none. Null: the function's default (docs/settings.md)."
  type        = string
  default     = null
}

variable "genai_allowed_models" {
  description = "GENAI_ALLOWED_MODELS: comma-separated models a caller may ask for. Function default: only GENAI_MODEL."
  type        = string
  default     = null
}

variable "genai_auth" {
  description = "GENAI_AUTH: resource_principal (function default; the right one in OCI Functions), instance_principal, user_principal, session or api_key."
  type        = string
  default     = null
}

variable "genai_compartment_ocid" {
  description = "GENAI_COMPARTMENT_OCID: sent as opc-compartment-id, and where ApplyGuardrails runs. Empty: with genai_guardrails on, the project's compartment (the one the stack grants generative-ai-family in); else not sent."
  type        = string
  default     = null
}

variable "genai_max_body_bytes" {
  description = "GENAI_MAX_BODY_BYTES: largest request body accepted. Function default: 1048576."
  type        = number
  default     = null
}

variable "genai_max_input_chars" {
  description = "GENAI_MAX_INPUT_CHARS: longest prompt accepted. Function default: 32000."
  type        = number
  default     = null
}

variable "genai_max_images" {
  description = "GENAI_MAX_IMAGES: cap on the images in one request (0 refuses every image). Function default: 4."
  type        = number
  default     = null
}

variable "genai_max_output_tokens" {
  description = "GENAI_MAX_OUTPUT_TOKENS: cap on max_output_tokens. Function default: 2048."
  type        = number
  default     = null
}

variable "genai_max_retries" {
  description = "GENAI_MAX_RETRIES: retries of a failed upstream call. Function default: 2."
  type        = number
  default     = null
}

variable "genai_keepalive_seconds" {
  description = "GENAI_KEEPALIVE_SECONDS: how long idle upstream connections are kept. Function default: 120."
  type        = number
  default     = null
}

variable "genai_log_prompts" {
  description = "GENAI_LOG_PROMPTS: log prompt text (keep false in production). Function default: false."
  type        = bool
  default     = null
}

variable "genai_allow_stored_responses" {
  description = "GENAI_ALLOW_STORED_RESPONSES: let callers ask the service to store responses. Function default: false."
  type        = bool
  default     = null
}

variable "genai_allowed_hosted_tools" {
  description = "GENAI_ALLOWED_HOSTED_TOOLS: comma list of the hosted tools callers may use (file_search, code_interpreter, mcp). Function default: none."
  type        = string
  default     = null
}

variable "genai_mcp_allowed_urls" {
  description = "GENAI_MCP_ALLOWED_URLS: comma list of the MCP server URLs (https, exact) an mcp tool may name. Function default: none."
  type        = string
  default     = null
}

variable "genai_guardrails" {
  description = "GENAI_GUARDRAILS: off, inform or block: screen each request with OCI Generative AI guardrails before the model. Function default: off."
  type        = string
  default     = null
}

variable "genai_guardrails_allow_images" {
  description = "GENAI_GUARDRAILS_ALLOW_IMAGES: in block mode, let images through unscreened (guardrails read text only). Function default: false."
  type        = bool
  default     = null
}

variable "genai_guardrails_checks" {
  description = "GENAI_GUARDRAILS_CHECKS: Comma list of content_moderation, prompt_injection, pii. Function default: all three."
  type        = string
  default     = null
}

variable "genai_pii_action" {
  description = "GENAI_PII_ACTION: block or redact, for PII findings. Function default: block."
  type        = string
  default     = null
}

variable "genai_pii_types" {
  description = "GENAI_PII_TYPES: Comma list of OCI PII labels to act on. Function default: EMAIL,TELEPHONE_NUMBER."
  type        = string
  default     = null
}

variable "genai_guardrails_content_threshold" {
  description = "GENAI_GUARDRAILS_CONTENT_THRESHOLD: Content moderation score at which a request counts as flagged. Function default: 0.5."
  type        = number
  default     = null
}

variable "genai_guardrails_injection_threshold" {
  description = "GENAI_GUARDRAILS_INJECTION_THRESHOLD: Prompt injection score at which a request counts as flagged. Function default: 0.5."
  type        = number
  default     = null
}

variable "genai_guardrails_pii_threshold" {
  description = "GENAI_GUARDRAILS_PII_THRESHOLD: PII score at which a finding counts. Function default: 0.5."
  type        = number
  default     = null
}

# --- The token issuer (docs/deploy.md, step 7) ------------------------------------------

variable "identity_domain_url" {
  description = "OCI IAM identity domain URL (https://idcs-<id>.identity.oraclecloud.com): sets the issuer to https://identity.oraclecloud.com/ and the JWKS to <url>/admin/v1/SigningCert/jwk. Empty: give token_issuer and token_jwks_uri."
  type        = string
  default     = ""
}

variable "token_issuer" {
  description = "Other OIDC issuers only: the issuer (the `issuer` of <issuer>/.well-known/openid-configuration)."
  type        = string
  default     = ""
}

variable "token_jwks_uri" {
  description = "Other OIDC issuers only: the issuer's JWKS URL (the `jwks_uri` of its openid-configuration)."
  type        = string
  default     = ""
}

variable "token_audience" {
  description = "Audience the gateway requires. Identity domain: the resource app's primary audience exactly, with its trailing slash (https://genai-api.example.com/)."
  type        = string
}

variable "cors_allowed_origin" {
  description = "Browser origin allowed to call the API, exactly as the browser sends it: e.g. https://app.example.com, no path, no wildcard."
  type        = string

  # The renderer's rule (genai_handler/policies.py _ORIGIN) and schema.yaml's pattern: tests/test_stack.py keeps them one.
  validation {
    condition     = can(regex("^https?://[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?(?:[.][a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?)*(?::(?:6553[0-5]|655[0-2][0-9]|65[0-4][0-9]{2}|6[0-4][0-9]{3}|[1-5][0-9]{4}|[1-9][0-9]{0,3}))?$", var.cors_allowed_origin))
    error_message = "cors_allowed_origin is one origin, http(s)://host[:port] in lower case, without path, wildcard or user info (e.g. https://app.example.com)."
  }
}

# --- Operations (docs/operations.md): all off by default, none costs anything when off ---------

variable "usage_plan_enabled" {
  description = "true: per-caller quotas. Only the JWT subjects in usage_plan_subjects may call, each with its own rate and quota (the client token is request.auth[sub])."
  type        = bool
  default     = false
}

variable "usage_plan_subjects" {
  description = "Comma-separated JWT subjects (the token's sub claim) that may call, each its own subscriber."
  type        = string
  default     = ""
}

variable "usage_plan_rate_per_second" {
  description = "Requests per second each caller may send."
  type        = number
  default     = 1
}

variable "usage_plan_quota" {
  description = "Requests each caller may send per usage_plan_quota_period; past it the gateway rejects them until the period resets."
  type        = number
  default     = 1000
}

variable "usage_plan_quota_period" {
  description = "The quota's period (calendar): MINUTE, HOUR, DAY, WEEK or MONTH."
  type        = string
  default     = "DAY"

  validation {
    condition     = contains(["MINUTE", "HOUR", "DAY", "WEEK", "MONTH"], var.usage_plan_quota_period)
    error_message = "usage_plan_quota_period is MINUTE, HOUR, DAY, WEEK or MONTH."
  }
}

variable "create_invoke_log" {
  description = "true: a log group and the application's invocation log (Functions, category invoke), where the function's JSON line lands."
  type        = bool
  default     = false
}

variable "log_group_name" {
  description = "Display name of the log group the stack creates."
  type        = string
  default     = "genai-logs"
}

variable "log_retention_days" {
  description = "How long the invocation log is kept: 30 to 180 days, in steps of 30."
  type        = number
  default     = 30

  validation {
    condition     = var.log_retention_days >= 30 && var.log_retention_days <= 180 && var.log_retention_days % 30 == 0
    error_message = "log_retention_days is 30, 60, 90, 120, 150 or 180."
  }
}

variable "create_error_metric" {
  description = "true: the invocation log, and one Connector Hub connector per error type that counts the function's error lines as the custom metric <error_metric_namespace>/errors, dimensions function and error_type."
  type        = bool
  default     = false
}

variable "error_metric_types" {
  description = "Comma-separated error types to count, one connector each (every type in docs/contracts.md by default)."
  type        = string
  default     = "content_blocked,internal_error,invalid_request,method_not_allowed,misconfigured,not_found,payload_too_large,rate_limited,timeout,upstream_auth,upstream_error,upstream_rejected"

  validation {
    condition     = alltrue([for type in split(",", var.error_metric_types) : can(regex("^[a-z_]+$", trimspace(type)))])
    error_message = "error_metric_types: error types such as rate_limited,timeout, comma-separated."
  }
}

variable "error_metric_namespace" {
  description = "Custom metric namespace of the error count (lower case, not starting with oci_)."
  type        = string
  default     = "genai_function"

  validation {
    condition     = can(regex("^[a-z][a-z0-9_]{0,254}$", var.error_metric_namespace)) && !startswith(var.error_metric_namespace, "oci_")
    error_message = "error_metric_namespace: lower-case letters, digits and _, starting with a letter, not oci_."
  }
}

variable "create_alarms" {
  description = "true: alarms on gateway 5xx, 429 and latency, function throttling and near-timeout runs (and error lines with create_error_metric), sent to a Notifications topic."
  type        = bool
  default     = false
}

variable "alarm_topic_ocid" {
  description = "An existing Notifications topic for the alarms. Empty: the stack creates alarm_topic_name."
  type        = string
  default     = ""
}

variable "alarm_topic_name" {
  description = "Name of the topic the stack creates (unique in the tenancy)."
  type        = string
  default     = "genai-alarms"
}

variable "alarm_email" {
  description = "Email address subscribed to the created topic (OCI sends a confirmation mail first)."
  type        = string
  default     = ""
}

variable "alarm_5xx_per_5_minutes" {
  description = "Alarm when the gateway answers more 5xx than this in 5 minutes."
  type        = number
  default     = 5
}

variable "alarm_429_per_5_minutes" {
  description = "Alarm when the gateway answers more 429 than this in 5 minutes."
  type        = number
  default     = 20
}

variable "alarm_latency_p95_ms" {
  description = "Alarm when the gateway's 95th percentile latency over 5 minutes exceeds this (ms)."
  type        = number
  default     = 30000
}

variable "alarm_errors_per_5_minutes" {
  description = "With create_error_metric: alarm when the function logs more error lines than this in 5 minutes."
  type        = number
  default     = 5
}

variable "tracing_enabled" {
  description = "true: trace_config on the application and the function; OCI sets OCI_TRACING_ENABLED and the collector URL of apm_domain_ocid."
  type        = bool
  default     = false
}

variable "apm_domain_ocid" {
  description = "With tracing_enabled: the APM domain that receives the spans."
  type        = string
  default     = ""
}

variable "provisioned_concurrency" {
  description = "Provisioned concurrency units kept warm (0: none). A multiple of 40 at 128 MB, 20 at 256 MB, 10 at 512 MB and more; billed while provisioned."
  type        = number
  default     = 0
}

variable "detached_timeout_in_seconds" {
  description = "Timeout of detached invocations (fn-invoke-type: detached), 5 to 3600. 0: the function timeout."
  type        = number
  default     = 0

  validation {
    condition     = var.detached_timeout_in_seconds == 0 || (var.detached_timeout_in_seconds >= 5 && var.detached_timeout_in_seconds <= 3600)
    error_message = "detached_timeout_in_seconds is 0 or 5 to 3600."
  }
}

variable "detached_success_destination_ocid" {
  description = "Where a detached invocation's record goes when it succeeds: a Notifications topic, Queue or Stream OCID. Empty: none."
  type        = string
  default     = ""

  validation {
    condition     = can(regex("^(ocid1\\.(onstopic|queue|stream)\\..+)?$", var.detached_success_destination_ocid))
    error_message = "A topic (ocid1.onstopic...), queue (ocid1.queue...) or stream (ocid1.stream...) OCID, or empty."
  }
}

variable "detached_failure_destination_ocid" {
  description = "Where a detached invocation's record goes when it fails: a Notifications topic, Queue or Stream OCID. Empty: none."
  type        = string
  default     = ""

  validation {
    condition     = can(regex("^(ocid1\\.(onstopic|queue|stream)\\..+)?$", var.detached_failure_destination_ocid))
    error_message = "A topic (ocid1.onstopic...), queue (ocid1.queue...) or stream (ocid1.stream...) OCID, or empty."
  }
}
