locals {
  # The plain-text templates and the gateway specification are the single source of truth,
  # shared with `python -m genai_handler.policies`: one folder up in the repository, beside
  # the .tf files in the Resource Manager zip that `make stack` builds.
  kit     = fileexists("${path.module}/function-policy.txt") ? path.module : "${path.module}/.."
  profile = var.oci_config_profile == "" ? null : var.oci_config_profile

  region_names = { for region in data.oci_identity_regions.all.regions : region.key => region.name }
  home_region  = local.region_names[data.oci_identity_tenancy.this.home_region_key]
  # OCIR host names use the lower-case region key (OCI docs, "Preparing for Container Registry").
  region_key = lower(one([for region in data.oci_identity_regions.all.regions : region.key if region.name == var.region]))
  # What `fn build` tags with the manual path's registry: <FN_REGISTRY>/<func.yaml name>:<version>
  # (fn CLI, common/funcfile.go ImageNameV20180708), the registry being <key>.ocir.io/<namespace>/genai.
  image_repository = "${local.region_key}.ocir.io/${data.oci_objectstorage_namespace.this.namespace}/${var.repository_name}"

  gateway_compartment_ocid = coalesce(var.gateway_compartment_ocid, var.compartment_ocid)
  genai_compartment_ocid   = coalesce(var.genai_project_compartment_ocid, var.compartment_ocid)
  genai_project_ocid       = var.create_genai_project ? one(oci_generative_ai_project.this[*].id) : var.genai_project_ocid
  function_count           = var.function_image == "" ? 0 : 1
  function_ocid            = one(oci_functions_function.this[*].id)

  # ApplyGuardrails runs in GENAI_COMPARTMENT_OCID, else in the function's own compartment
  # (docs/guardrails.md), but the policy grants generative-ai-family only in the project's: with
  # guardrails on and no genai_compartment_ocid given, the function is pointed there.
  guardrails_on             = lower(coalesce(var.genai_guardrails, "off")) != "off"
  genai_compartment_setting = var.genai_compartment_ocid != null && var.genai_compartment_ocid != "" ? var.genai_compartment_ocid : (local.guardrails_on ? local.genai_compartment_ocid : null)

  policy_values = {
    DYNAMIC_GROUP             = var.dynamic_group_name
    FUNCTION_COMPARTMENT_OCID = var.compartment_ocid
    GATEWAY_COMPARTMENT_OCID  = local.gateway_compartment_ocid
    GENAI_COMPARTMENT_OCID    = local.genai_compartment_ocid
  }

  # One statement or rule per non-comment line, as the renderer reads them.
  function_statements = [for line in split("\n", templatefile("${local.kit}/function-policy.txt", local.policy_values)) : trimspace(line) if trimspace(line) != "" && !startswith(trimspace(line), "#")]
  gateway_statements  = [for line in split("\n", templatefile("${local.kit}/gateway-policy.txt", local.policy_values)) : trimspace(line) if trimspace(line) != "" && !startswith(trimspace(line), "#")]
  compartment_rule    = one([for line in split("\n", templatefile("${local.kit}/dynamic-group.txt", local.policy_values)) : trimspace(line) if trimspace(line) != "" && !startswith(trimspace(line), "#")])
  function_rule       = one([for line in split("\n", templatefile("${local.kit}/dynamic-group-one-function.txt", { FUNCTION_OCID = coalesce(local.function_ocid, "none") })) : trimspace(line) if trimspace(line) != "" && !startswith(trimspace(line), "#")])

  # Every GENAI_* setting the function reads from config; null ones are left out so the
  # function uses its default.
  genai_settings = {
    GENAI_PROJECT_OCID                   = local.genai_project_ocid
    GENAI_REGION                         = var.genai_region
    GENAI_BASE_URL                       = var.genai_base_url
    GENAI_MODEL                          = var.genai_model
    GENAI_ALLOWED_MODELS                 = var.genai_allowed_models
    GENAI_AUTH                           = var.genai_auth
    GENAI_COMPARTMENT_OCID               = local.genai_compartment_setting
    GENAI_MAX_BODY_BYTES                 = var.genai_max_body_bytes
    GENAI_MAX_INPUT_CHARS                = var.genai_max_input_chars
    GENAI_MAX_IMAGES                     = var.genai_max_images
    GENAI_MAX_OUTPUT_TOKENS              = var.genai_max_output_tokens
    GENAI_MAX_RETRIES                    = var.genai_max_retries
    GENAI_KEEPALIVE_SECONDS              = var.genai_keepalive_seconds
    GENAI_LOG_PROMPTS                    = var.genai_log_prompts
    GENAI_ALLOW_STORED_RESPONSES         = var.genai_allow_stored_responses
    GENAI_ALLOWED_HOSTED_TOOLS           = var.genai_allowed_hosted_tools
    GENAI_MCP_ALLOWED_URLS               = var.genai_mcp_allowed_urls
    GENAI_GUARDRAILS                     = var.genai_guardrails
    GENAI_GUARDRAILS_CHECKS              = var.genai_guardrails_checks
    GENAI_GUARDRAILS_ALLOW_IMAGES        = var.genai_guardrails_allow_images
    GENAI_PII_ACTION                     = var.genai_pii_action
    GENAI_PII_TYPES                      = var.genai_pii_types
    GENAI_GUARDRAILS_CONTENT_THRESHOLD   = var.genai_guardrails_content_threshold
    GENAI_GUARDRAILS_INJECTION_THRESHOLD = var.genai_guardrails_injection_threshold
    GENAI_GUARDRAILS_PII_THRESHOLD       = var.genai_guardrails_pii_threshold
  }

  # An identity domain issues tokens as https://identity.oraclecloud.com/ and publishes its keys
  # at <domain URL>/admin/v1/SigningCert/jwk (docs/deploy.md, step 7).
  domain_url     = trimsuffix(var.identity_domain_url, "/")
  token_issuer   = local.domain_url != "" ? "https://identity.oraclecloud.com/" : var.token_issuer
  token_jwks_uri = local.domain_url != "" ? "${local.domain_url}/admin/v1/SigningCert/jwk" : var.token_jwks_uri

  spec = jsondecode(templatefile("${local.kit}/apigateway-deployment.json", {
    FUNCTION_OCID       = coalesce(local.function_ocid, "none")
    ISSUER              = local.token_issuer
    AUDIENCE            = var.token_audience
    JWKS_URI            = local.token_jwks_uri
    CORS_ALLOWED_ORIGIN = var.cors_allowed_origin
  }))
  auth = local.spec.requestPolicies.authentication
  rate = local.spec.requestPolicies.rateLimiting
  cors = local.spec.requestPolicies.cors
}

# --- Generative AI project and container repository -----------------------------------

resource "oci_generative_ai_project" "this" {
  count          = var.create_genai_project ? 1 : 0
  compartment_id = local.genai_compartment_ocid
  display_name   = var.genai_project_name
  description    = "Project of the genai function's OpenAI-compatible calls"

  # How long callers' stored responses and conversations are kept (docs/security.md, "What is stored").
  dynamic "conversation_config" {
    for_each = var.genai_responses_retention_hours == null && var.genai_conversations_retention_hours == null ? [] : [1]
    content {
      responses_retention_in_hours     = var.genai_responses_retention_hours
      conversations_retention_in_hours = var.genai_conversations_retention_hours
    }
  }
}

resource "oci_artifacts_container_repository" "this" {
  count          = var.create_repository ? 1 : 0
  compartment_id = var.compartment_ocid
  display_name   = var.repository_name
  is_public      = false
}

# --- Identity (home region) ----------------------------------------------------------

resource "oci_identity_dynamic_group" "functions" {
  count          = var.create_iam ? 1 : 0
  provider       = oci.home
  compartment_id = var.tenancy_ocid
  name           = var.dynamic_group_name
  description    = "Functions that call OCI Generative AI"
  matching_rule  = var.pin_dynamic_group_to_function ? local.function_rule : local.compartment_rule

  lifecycle {
    precondition {
      condition     = !var.pin_dynamic_group_to_function || local.function_count == 1
      error_message = "pin_dynamic_group_to_function needs the function: set function_image."
    }
  }
}

resource "oci_identity_policy" "genai" {
  count          = var.create_iam ? 1 : 0
  provider       = oci.home
  compartment_id = local.genai_compartment_ocid
  name           = "${var.dynamic_group_name}-genai"
  description    = "Functions in dynamic group ${var.dynamic_group_name} may call OCI Generative AI"
  statements     = local.function_statements
  depends_on     = [oci_identity_dynamic_group.functions]
}

resource "oci_identity_policy" "gateway" {
  count          = var.create_iam ? 1 : 0
  provider       = oci.home
  compartment_id = var.compartment_ocid
  name           = "${var.dynamic_group_name}-gateway"
  description    = "API Gateway may invoke the functions in this compartment"
  statements     = local.gateway_statements
}

# --- Function ------------------------------------------------------------------------

resource "oci_functions_application" "this" {
  compartment_id = var.compartment_ocid
  display_name   = var.application_name
  subnet_ids     = [local.function_subnet]

  # Traces to an APM domain (off: nothing is sent, the function imports nothing for it).
  trace_config {
    is_enabled = var.tracing_enabled
    domain_id  = var.tracing_enabled ? var.apm_domain_ocid : null
  }

  lifecycle {
    precondition {
      condition     = local.function_subnet != "" && local.gateway_subnet != ""
      error_message = "create_network = false needs function_subnet_ocid and gateway_subnet_ocid."
    }
    precondition {
      condition     = !var.tracing_enabled || var.apm_domain_ocid != ""
      error_message = "tracing_enabled needs apm_domain_ocid (an APM domain's OCID)."
    }
  }
}

resource "oci_functions_function" "this" {
  count              = local.function_count
  application_id     = oci_functions_application.this.id
  display_name       = var.function_name
  image              = var.function_image
  memory_in_mbs      = var.function_memory_in_mbs
  timeout_in_seconds = var.function_timeout_in_seconds
  # Resource Manager may pass a field left blank as "": that too means the default.
  config = { for key, value in local.genai_settings : key => tostring(value) if value != null && value != "" }

  detached_mode_timeout_in_seconds = var.detached_timeout_in_seconds > 0 ? var.detached_timeout_in_seconds : null

  trace_config {
    is_enabled = var.tracing_enabled
  }

  provisioned_concurrency_config {
    strategy = var.provisioned_concurrency > 0 ? "CONSTANT" : "NONE"
    count    = var.provisioned_concurrency > 0 ? var.provisioned_concurrency : null
  }

  success_destination {
    kind      = local.destinations.success.kind
    topic_id  = local.destinations.success.kind == "NOTIFICATION" ? local.destinations.success.ocid : null
    queue_id  = local.destinations.success.kind == "QUEUE" ? local.destinations.success.ocid : null
    stream_id = local.destinations.success.kind == "STREAM" ? local.destinations.success.ocid : null
  }

  failure_destination {
    kind      = local.destinations.failure.kind
    topic_id  = local.destinations.failure.kind == "NOTIFICATION" ? local.destinations.failure.ocid : null
    queue_id  = local.destinations.failure.kind == "QUEUE" ? local.destinations.failure.ocid : null
    stream_id = local.destinations.failure.kind == "STREAM" ? local.destinations.failure.ocid : null
  }

  lifecycle {
    precondition {
      condition     = local.genai_project_ocid != ""
      error_message = "create_genai_project = false needs genai_project_ocid."
    }
    precondition {
      condition     = var.provisioned_concurrency % local.provisioned_concurrency_step == 0
      error_message = "provisioned_concurrency is a multiple of 40 (128 MB), 20 (256 MB) or 10 (512 MB and more)."
    }
  }

  depends_on = [oci_artifacts_container_repository.this]
}

# The same tag scheme as the manual path; another repository works, but then the two paths
# describe different images.
check "image_is_the_manual_paths" {
  assert {
    condition     = var.function_image == "" || startswith(var.function_image, "${local.image_repository}:")
    error_message = "function_image is not in ${local.image_repository}: `make image` pushes <that>:<func.yaml version>."
  }
}

# A compartment given in genai_compartment_ocid is used as given; without a grant there (or in a
# parent, which Terraform cannot see) every ApplyGuardrails call is refused.
check "guardrails_run_where_the_grant_is" {
  assert {
    condition     = !local.guardrails_on || local.genai_compartment_setting == local.genai_compartment_ocid
    error_message = "ApplyGuardrails runs in genai_compartment_ocid, but the stack grants generative-ai-family only in ${local.genai_compartment_ocid}: grant it there too, or leave genai_compartment_ocid empty."
  }
}

# --- API Gateway ---------------------------------------------------------------------

resource "oci_apigateway_gateway" "this" {
  compartment_id = local.gateway_compartment_ocid
  display_name   = var.gateway_name
  endpoint_type  = var.gateway_endpoint_type
  subnet_id      = local.gateway_subnet
}

# The provider takes the specification as blocks, not JSON: every field below is read from
# apigateway-deployment.json (tests/test_stack.py proves none is missed or misread).
resource "oci_apigateway_deployment" "this" {
  count          = local.function_count
  compartment_id = local.gateway_compartment_ocid
  gateway_id     = oci_apigateway_gateway.this.id
  display_name   = var.deployment_name
  path_prefix    = var.path_prefix

  specification {
    request_policies {
      authentication {
        type                        = local.auth.type
        is_anonymous_access_allowed = local.auth.isAnonymousAccessAllowed
        token_header                = local.auth.tokenHeader
        token_auth_scheme           = local.auth.tokenAuthScheme
        max_clock_skew_in_seconds   = local.auth.maxClockSkewInSeconds

        validation_policy {
          type                        = local.auth.validationPolicy.type
          uri                         = local.auth.validationPolicy.uri
          is_ssl_verify_disabled      = local.auth.validationPolicy.isSslVerifyDisabled
          max_cache_duration_in_hours = local.auth.validationPolicy.maxCacheDurationInHours

          additional_validation_policy {
            issuers   = local.auth.validationPolicy.additionalValidationPolicy.issuers
            audiences = local.auth.validationPolicy.additionalValidationPolicy.audiences
          }
        }
      }

      rate_limiting {
        rate_in_requests_per_second = local.rate.rateInRequestsPerSecond
        rate_key                    = local.rate.rateKey
      }

      # Not in the spec file: with a token location, the gateway forwards only subscribers'
      # requests (usage_plan_enabled, operations.tf).
      dynamic "usage_plans" {
        for_each = var.usage_plan_enabled ? [local.usage_plan_token_location] : []
        content {
          token_locations = [usage_plans.value]
        }
      }

      cors {
        allowed_origins              = local.cors.allowedOrigins
        allowed_methods              = local.cors.allowedMethods
        allowed_headers              = local.cors.allowedHeaders
        exposed_headers              = local.cors.exposedHeaders
        is_allow_credentials_enabled = local.cors.isAllowCredentialsEnabled
        max_age_in_seconds           = local.cors.maxAgeInSeconds
      }
    }

    dynamic "routes" {
      for_each = local.spec.routes
      content {
        path    = routes.value.path
        methods = routes.value.methods

        request_policies {
          authorization {
            type = routes.value.requestPolicies.authorization.type
          }

          # X-Genai-Caller from the JWT's subject, OVERWRITE: a caller cannot forge it.
          header_transformations {
            set_headers {
              dynamic "items" {
                for_each = routes.value.requestPolicies.headerTransformations.setHeaders.items
                content {
                  name      = items.value.name
                  values    = items.value.values
                  if_exists = items.value.ifExists
                }
              }
            }
          }
        }

        backend {
          type        = routes.value.backend.type
          function_id = routes.value.backend.functionId
        }
      }
    }
  }

  lifecycle {
    precondition {
      condition     = local.token_issuer != "" && local.token_jwks_uri != ""
      error_message = "Set identity_domain_url, or token_issuer and token_jwks_uri."
    }
    precondition {
      condition     = local.domain_url == "" || endswith(var.token_audience, "/")
      error_message = "An identity domain's primary audience ends with '/' (https://genai-api.example.com/): token_audience must equal it exactly."
    }
  }

  depends_on = [oci_identity_policy.gateway]
}
